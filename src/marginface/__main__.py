from marginface.cli.main import main

raise SystemExit(main())
