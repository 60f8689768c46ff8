"""The ``attnzoo`` command line: one subcommand per tool (``bench``, ``viz``, ``compare``, ...), each added by its module."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

#: Modules that each provide ``add_parser(subparsers)`` for one subcommand (skipped while absent).
SUBCOMMANDS = ("attnzoo.bench.cli", "attnzoo.viz_cli", "attnzoo.compare.cli", "attnzoo.deploy.cli")


def add_module_command(
    sub: argparse._SubParsersAction, name: str, *, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """The parser of a subcommand that runs over registered modules, with their selection: ``--modules`` and
    ``--family`` (``bench``, ``deploy``)."""
    p = sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--modules", default=None, help="comma-separated registry names (default: every module)")
    p.add_argument("--family", default=None, help="only modules of this family")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnzoo", description="attnzoo: attention modules for vision")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in SUBCOMMANDS:
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
