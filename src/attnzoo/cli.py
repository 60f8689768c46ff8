"""``attnzoo`` command line: ``attnzoo bench`` (cost profiler)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnzoo", description="attnzoo: attention modules for vision")
    sub = parser.add_subparsers(dest="command", required=True)
    from .bench.cli import add_parser as add_bench

    add_bench(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
