"""Command-line interface: each subcommand parses arguments and calls one library function."""

__all__: list[str] = []
