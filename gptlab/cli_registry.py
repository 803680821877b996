"""The `gptlab` command's table: the registry `@command` / `@runs` fill, and the flags several commands share.

cli.py and cli_results.py register their subcommands here; cli.py's `build_parser` turns the table into
argparse subparsers, in registration order (the order `gptlab --help` lists them). Light to import.

    gptlab --help
    python -m pytest tests/test_cli_demo.py
"""

from __future__ import annotations

from gptlab.errors import GptlabError

COMMANDS = {}  # name -> (help, add_arguments(parser), run(args) -> int | None)
# flags several commands share, defined once
DB = dict(default="results.sqlite", help="results store (default: results.sqlite)")
DEVICE = dict(help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")


def command(name, help):
    """Register `add_arguments` under `name`; its `.run` attribute is set by `@runs(name)`."""
    def wrap(add_arguments):
        COMMANDS[name] = [help, add_arguments, None]
        return add_arguments
    return wrap


def runs(name):
    def wrap(fn):
        COMMANDS[name][2] = fn
        return fn
    return wrap


def parse_numbers(text: str, kind, flag: str) -> tuple:
    """'80,200' -> (80, 200); a one-line error naming the flag otherwise."""
    try:
        return tuple(kind(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise GptlabError(f"{flag} {text!r}: expected comma-separated {'integers' if kind is int else 'numbers'}") \
            from None
