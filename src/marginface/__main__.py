"""``python -m marginface``: the command line (:mod:`marginface.cli.main`)."""

from marginface.cli.main import main

__all__: list[str] = []

raise SystemExit(main())
