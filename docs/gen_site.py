"""mkdocs hook (``hooks:`` in mkdocs.yml) that generates the registry-driven part of the site with
``docs/sitegen``: the module pages, the gallery, "which module?", the pictures, and the "Modules" navigation.

Inside ``mkdocs build --strict`` the generated files are added as virtual files (nothing is written to docs/).
Standalone, ``python docs/gen_site.py OUTDIR`` writes them to OUTDIR for inspection.  Environment:
``ATTNZOO_DOCS_ONLY=cbam,se`` builds a partial site quickly while writing (the strict build then fails on purpose).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # mkdocs loads this file by path: make sitegen importable

from sitegen import BENCH_JSON, Site, generate, log  # noqa: E402

_site: Site | None = None


def on_config(config: Any) -> Any:
    """Generate once per build and expand the nav's "Modules" entry into one page per module."""
    global _site
    only = os.environ.get("ATTNZOO_DOCS_ONLY")  # a quick partial build while writing: ATTNZOO_DOCS_ONLY=cbam,se
    bench = os.environ.get("ATTNZOO_DOCS_BENCH")  # another bench JSON (tests)
    _site = generate(names=only.split(",") if only else None, bench_path=Path(bench) if bench else BENCH_JSON)
    if only:
        log.warning(f"gen_site: ATTNZOO_DOCS_ONLY={only}: a partial site (strict builds fail on purpose)")
    log.info(f"gen_site: {len(_site.files)} generated files in {_site.seconds:.1f} s")
    nav = config.get("nav") or []
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and entry.get("Modules") == "modules/index.md":
            nav[i] = {"Modules": _site.nav}
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    assert _site is not None
    for path, content in _site.files.items():
        old = files.get_file_from_path(path)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, path, content=content))
    return files


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="write the generated files under this directory")
    p.add_argument("--modules", default=None, help="comma-separated names (default: every module)")
    p.add_argument("--no-pictures", action="store_true")
    args = p.parse_args(argv)
    names = args.modules.split(",") if args.modules else None
    site = generate(names=names, pictures=not args.no_pictures)
    for path, content in site.files.items():
        dest = args.out / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
    print(f"{len(site.files)} files in {site.seconds:.1f} s under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
