"""Generate the documentation site's registry-driven pages: one page per module, the gallery, the cost charts.

``docs/gen_site.py`` runs :func:`generate` inside ``mkdocs build --strict`` as a hook (``hooks:`` in mkdocs.yml):
the generated pages and pictures are added to the build as virtual files, so nothing generated is ever written to
docs/ or committed.  Modules: :mod:`.data` (constants, bench / deployment / provenance data, the default-input
measurement), :mod:`.pictures`, :mod:`.pages`; this one runs them for every module.

Sources, so the site cannot drift from the code:

- the registry (``attnzoo.info``): family, layout, paper, cost class, summary, capture keys; the class
  docstring (what it computes, argument descriptions) and ``inspect.signature`` (arguments and defaults);
- params and FLOPs at the default input, computed here with attnzoo's FLOP counter (``attnzoo.bench.flops``);
- latency and the FLOP sweep over resolutions: ``docs/data/bench.json``, one committed ``attnzoo bench`` run
  (see ``BENCH_COMMAND``); a registered module without rows there is an error;
- the deployment matrix ``docs/deployment.json`` when it exists, else "not measured yet";
- ``docs/provenance/<name>.md`` (an error when missing);
- pictures of the modules that record a map and fit a detector's backbone: committed in ``docs/data/gallery/``,
  made by ``docs/gallery_train.py`` from a yolo11n trained with the module on attnzoo's synthetic detection set
  (see :mod:`.trained`; a test checks that each is current with the module's code);
- other pictures: a freshly initialised torchvision resnet18 (``weights=None``) with the module inserted by
  ``attnzoo.insert``, one scikit-learn sample photograph, the maps recorded by ``attnzoo.capture_attention``
  and drawn by ``attnzoo.viz`` (a module with a map but no trained picture yet, with a warning); modules without
  a map, or that do not fit in a resnet (other layouts, resamplers), get their cost-against-resolution curve.

Any module the generator cannot document (no docstring, no provenance page, no bench rows, a declared map that
nothing records, a failing forward) raises :class:`DocsError` listing every problem: the build fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import (
    BENCH_COMMAND,
    BENCH_JSON,
    DEPLOYMENT_JSON,
    FAMILY_TITLES,
    Bench,
    DocsError,
    Measured,
    _attnzoo,
    load_bench,
    load_deployment,
    log,
    measure_default,
)
from .pages import deployment_section, gallery_page, module_page, modules_index, which_page
from .pictures import cost_curve, family_chart, has_map_picture, map_pictures, shape_card
from .trained import TRAIN_COMMAND, fits_detector, trained_picture

__all__ = [
    "BENCH_COMMAND",
    "BENCH_JSON",
    "DEPLOYMENT_JSON",
    "Bench",
    "DocsError",
    "Site",
    "deployment_section",
    "generate",
    "load_bench",
    "load_deployment",
    "log",
]


def _fork_map(fn: Any, jobs: list, workers: int) -> list:
    """``[fn(job) for job in jobs]`` in ``workers`` forked processes with one torch thread each.  Forked, so
    neither ``fn`` (a function of this hook file, which mkdocs loads by path) nor the jobs are pickled; only the
    results travel back."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child(part: list[int]) -> None:
        import torch

        torch.set_num_threads(1)
        for i in part:
            queue.put((i, fn(jobs[i])))

    procs = [ctx.Process(target=child, args=(list(range(w, len(jobs), workers)),)) for w in range(workers)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    try:
        while len(results) < len(jobs):
            if not any(p.is_alive() for p in procs) and queue.empty():
                raise DocsError(f"a generator process died (exit codes {[p.exitcode for p in procs]})")
            try:
                i, result = queue.get(timeout=1.0)
            except Exception:  # noqa: BLE001  queue.Empty: check the workers again
                continue
            results[i] = result
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return [results[i] for i in range(len(jobs))]


def _document(job: tuple) -> tuple[str, dict[str, bytes], dict | None, str | None]:
    """One module's page and pictures: (name, files, measured default input as a dict, error or None)."""
    name, pictures, bench, deployment = job
    try:
        info = _attnzoo().info(name)
        if not bench.rows.get(name):
            raise DocsError(f"{name}: no row in the bench data; rerun `{BENCH_COMMAND}`")
        m = measure_default(name)
        committed = trained_picture(name) if fits_detector(info) else None
        side = committed[2] if committed else None
        if committed is None and fits_detector(info):
            log.warning(f"gen_site: {name}: no trained-detector picture; run `{TRAIN_COMMAND}`")
        if committed is not None:
            page_png, card_png = (committed[0], committed[1]) if pictures else (b"", b"")
            kind = "trained"
        elif pictures and has_map_picture(info):
            page_png, card_png, constant = map_pictures(name)
            kind = "map-constant" if constant else "map"
        elif pictures:
            page_png = cost_curve(name, bench)
            card_png = shape_card(name, info.complexity, info.layout, m.inputs, m.output)
            kind = "cost"
        else:
            page_png = card_png = b""
            kind = "map" if has_map_picture(info) else "cost"
        files = {
            f"modules/img/{name}.png": page_png,
            f"modules/img/{name}-card.png": card_png,
            f"modules/{name}.md": module_page(name, bench, deployment, m, kind, side).encode(),
        }
        return name, files, vars(m), None
    except Exception as exc:  # noqa: BLE001  every problem is reported, not only the first
        return name, {}, None, f"{type(exc).__name__}: {exc}" if not isinstance(exc, DocsError) else str(exc)


@dataclass
class Site:
    files: dict[str, bytes] = field(default_factory=dict)  # path under docs/ -> content
    nav: list = field(default_factory=list)  # the "Modules" section for mkdocs' nav
    seconds: float = 0.0


def families() -> dict[str, list[str]]:
    attnzoo = _attnzoo()
    return {f: attnzoo.list_modules(f) for f in attnzoo.FAMILIES if attnzoo.list_modules(f)}


def generate(
    *,
    names: list[str] | None = None,
    pictures: bool = True,
    bench_path: Path = BENCH_JSON,
    deployment_path: Path = DEPLOYMENT_JSON,
    workers: int | None = None,
) -> Site:
    """Every generated file of the site; ``names`` restricts the module pages (tests); ``workers`` processes
    document the modules (default: the CPU count, at most 4)."""
    import os

    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    t0 = time.perf_counter()
    attnzoo = _attnzoo()
    bench = load_bench(bench_path)
    deployment = load_deployment(deployment_path)
    by_family = families()
    if names is not None:
        by_family = {f: [n for n in ns if n in names] for f, ns in by_family.items()}
        by_family = {f: ns for f, ns in by_family.items() if ns}
    infos = {n: attnzoo.info(n) for ns in by_family.values() for n in ns}
    site = Site()
    problems: list[str] = []
    measured: dict[str, Measured] = {}
    jobs = [(n, pictures, bench, deployment) for n in infos]
    if workers > 1 and len(jobs) > 2:
        # fork before this process runs any torch op (OpenMP and fork do not mix); 1 torch thread per worker
        results = _fork_map(_document, jobs, workers)
    else:
        results = [_document(job) for job in jobs]
    for name, files, m, error in results:
        if error is not None:
            problems.append(error if error.startswith(name) else f"{name}: {error}")
            continue
        site.files.update(files)
        measured[name] = Measured(**m)
    if problems:
        raise DocsError("cannot document these modules:\n  " + "\n  ".join(problems))
    site.files["modules/index.md"] = modules_index(by_family, infos).encode()
    site.files["gallery.md"] = gallery_page(by_family, infos).encode()
    site.files["which-module.md"] = which_page(by_family, infos, bench, measured).encode()
    if pictures:
        for family, ns in by_family.items():
            site.files[f"which/{family}.png"] = family_chart(family, ns, bench)
    site.nav = ["modules/index.md"] + [
        {FAMILY_TITLES[f]: [{n: f"modules/{n}.md"} for n in ns]} for f, ns in by_family.items()
    ]
    site.seconds = time.perf_counter() - t0
    return site
