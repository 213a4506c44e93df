"""Command-line interface: each subcommand parses arguments and calls one library function."""
