"""The ``attnzoo`` command line: one subcommand per tool (``bench``, ``viz``, ``compare``, ...), each added by its module."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

#: Modules that each provide ``add_parser(subparsers)`` for one subcommand (skipped while absent).
SUBCOMMANDS = ("attnzoo.bench.cli", "attnzoo.viz", "attnzoo.compare.cli", "attnzoo.deploy.cli")


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
