"""``attnzoo deploy``: the module × runtime deployment matrix (ONNX Runtime, OpenVINO, ncnn)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..cli import add_module_command

EPILOG = """\
examples:
  attnzoo deploy                                   # every module, every installed runtime
  attnzoo deploy --modules cbam,eca --runtimes ncnn
  attnzoo deploy --model resnet18 --insert cbam    # a whole network with CBAM in every block
  attnzoo deploy --format json --output deploy.json
  attnzoo deploy --size 32 --update-doc docs/deployment.md --output docs/deployment.json
  attnzoo deploy --modules my_gate --size 13x11 --merge --output docs/deployment.json --update-doc docs/deployment.md
  attnzoo deploy --modules cbam --save deployed/                  # keep the .onnx, OpenVINO IR, ncnn files
  attnzoo deploy --variants --update-doc docs/deployment.md --output docs/deployment-variants.json
  attnzoo deploy --variants --modules multipole --runtimes ncnn   # every configuration of one module
  attnzoo deploy --variants --runtimes onnxruntime --sizes 13x11 --merge --output docs/deployment-variants.json
  attnzoo deploy --dims 3                          # the 3-D matrix: every module taking dims=3, B×C×D×H×W
  attnzoo deploy --dims 1,3 --update-doc docs/deployment.md --output docs/deployment-ranks.json
  attnzoo deploy --dims 3 --modules cbam --sizes 4x8x8 --runtimes ncnn

Every (module, runtime) case runs in a forked process: build with default arguments and perturbed weights, eval
mode, batch 1; export; run; compare with eager PyTorch (atol = rtol = 1e-4; ncnn 1e-3); time the median.
Status: ok, mismatch (ran, outputs differ), failed (did not convert or run), declared (failed, and the module
declares the runtime unsupported with a reason), missing (runtime not installed: pip install 'attnzoo[deploy]').
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = add_module_command(
        sub,
        "deploy",
        help="export modules to ONNX Runtime, OpenVINO and ncnn; compare with eager and time them",
        description="Export registered modules (or a network with modules inserted) to ONNX Runtime, OpenVINO "
        "(f32) and ncnn (via pnnx), run them, and report max |difference| to eager PyTorch and latency.",
        epilog=EPILOG,
    )
    p.add_argument("--runtimes", default=None, help="comma-separated: onnxruntime,openvino,ncnn (default: all three)")
    p.add_argument("--model", default=None, help="a torchvision or timm network (e.g. resnet18) instead of modules")
    p.add_argument("--insert", default=None, help="with --model: the registered module to insert (attnzoo.insert)")
    p.add_argument("--size", default=None, help="S or HxW (default: the layout's default size; 224 for --model)")
    p.add_argument("--threads", type=int, default=1, help="threads for eager PyTorch and every runtime (default 1)")
    p.add_argument("--min-time", type=float, default=0.1, help="seconds timed per latency figure at least (0.1)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per case before it is killed (600)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default=None, help="default: table")
    p.add_argument(
        "--output", default=None, metavar="FILE", help="write the output there (.json / .md pick the format)"
    )
    p.add_argument("--update-doc", default=None, metavar="FILE.md", help="rewrite the matrix between the markers")
    p.add_argument(
        "--merge",
        action="store_true",
        help="with --output FILE.json: keep FILE's rows of the modules not measured now (add a module to a matrix); "
        "with --variants, FILE's cells (module, configuration, runtime, size) not measured now (add a column)",
    )
    p.add_argument("--load", default=None, metavar="FILE.json", help="render a saved JSON run instead of running")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit with status 1 unless every row is ok or declared")
    p.add_argument(
        "--variants", action="store_true", help="the variants table: every configuration of every module (see below)"
    )
    p.add_argument("--sizes", default=None, help="with --variants: comma-separated S or HxW (default 16,13x11); "
                   "with --dims: L or DxHxW (default 16,13 in 1-D; 4x8x8,3x7x5 in 3-D)")  # fmt: skip
    p.add_argument("--dims", default=None, help="1, 3 or 1,3: the matrix per spatial rank of the modules taking "
                   "dims= (B×C×L maps, B×C×D×H×W volumes), each at two sizes")  # fmt: skip
    p.add_argument(
        "--rotate",
        action="store_true",
        help="with --variants: each configuration once, runtimes and sizes taken in turn (CI's bounded subset)",
    )
    p.add_argument("--save", default=None, metavar="DIR", help="keep the exported artefacts and a manifest in DIR")
    p.set_defaults(func=run)
    return p


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        nums = [int(v) for v in parts]
    except ValueError:
        raise SystemExit(f"attnzoo deploy: --size must be S or HxW, got {text!r}") from None
    if len(nums) not in (1, 2) or min(nums) < 1:
        raise SystemExit(f"attnzoo deploy: --size must be S or HxW with positive sizes, got {text!r}")
    return (nums[0], nums[-1])


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def run(args: argparse.Namespace) -> int:
    from . import ranks, report
    from .core import deploy

    size = _size(args.size)
    if args.variants and (args.model or args.size):
        raise SystemExit("attnzoo deploy: --variants takes --sizes, not --size or --model")
    if args.dims and (args.model or args.size or args.variants):
        raise SystemExit("attnzoo deploy: --dims takes --sizes, not --size, --model or --variants")
    if args.load:
        results, meta = report.from_json(Path(args.load).read_text())
    elif args.dims:
        results, meta = _ranks(args)
    elif args.variants:
        results, meta = _variants(args)
    else:
        import attnzoo

        if args.insert and not args.model:
            raise SystemExit("attnzoo deploy: --insert needs --model")
        modules = _split(args.modules)
        if args.family:
            modules = [m for m in (modules or attnzoo.list_modules()) if attnzoo.info(m).family == args.family]
        runtimes = _split(args.runtimes)
        total = (1 if args.model else len(modules if modules is not None else attnzoo.list_modules())) * len(
            runtimes or report.RUNTIMES
        )
        with _progress(total, args.quiet) as advance:
            results = deploy(modules, runtimes, model=args.model, insert=args.insert, size=size,
                             threads=args.threads, min_time=args.min_time, timeout=args.timeout,
                             progress=advance, save=args.save)  # fmt: skip
        meta = report.metadata(size, args.threads)
    if args.merge:
        results, meta = _merged(args, results, meta)
    fmt = args.format or {".json": "json", ".md": "markdown"}.get(Path(args.output or "").suffix, "table")
    variants, by_rank = meta.get("variants", False), meta.get("ranks", False)
    if by_rank:  # the declarations in force now (a saved run loaded after a rank's exception was declared)
        results = ranks.redeclare_ranks(results)
    markdown = ranks.ranks_markdown if by_rank else report.variants_markdown if variants else report.to_markdown
    text = report.to_json(results, meta) if fmt == "json" else markdown(results, meta)
    if args.output:
        Path(args.output).write_text(report.to_json(results, meta) if args.output.endswith(".json") else text)
    if args.update_doc:
        update = ranks.update_ranks_doc if by_rank else report.update_variants_doc if variants else report.update_doc
        update(args.update_doc, results, meta)
    if fmt == "table" and (variants or by_rank):
        sys.stdout.write(text)
    elif fmt == "table":
        _print_table(report.to_rich(results, meta), results)
    elif not args.output:
        sys.stdout.write(text)
    print(report.summary_line(report.redeclare(results) if variants else results), file=sys.stderr)
    bad = [r for r in results if not r.ok]
    return 1 if args.strict and bad else 0


def _variants(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    import attnzoo

    from . import report
    from .core import deploy_variants
    from .variants import VARIANT_SIZES, configurations

    modules = _split(args.modules) or attnzoo.list_modules()
    if args.family:
        modules = [m for m in modules if attnzoo.info(m).family == args.family]
    sizes = [_size(s) for s in _split(args.sizes) or []] or list(VARIANT_SIZES)
    runtimes = _split(args.runtimes)
    n_configs = sum(len(configurations(m)) for m in modules)
    total = n_configs if args.rotate else n_configs * len(sizes) * len(runtimes or report.RUNTIMES)
    with _progress(total, args.quiet) as advance:
        results = deploy_variants(modules, runtimes, sizes=[s for s in sizes if s], rotate=args.rotate,
                                  threads=args.threads, min_time=args.min_time, timeout=args.timeout,
                                  progress=advance, save=args.save)  # fmt: skip
    meta = report.metadata(None, args.threads)
    meta.update(variants=True, rotate=args.rotate, sizes=["x".join(map(str, s)) for s in sizes if s])
    return results, meta


def _ranks(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    import attnzoo

    from . import report
    from .ranks import RANK_SIZES, deploy_ranks, parse_size, size_text

    try:
        dims = [int(d) for d in _split(args.dims) or []]
        sizes = {d: [parse_size(s, d) for s in _split(args.sizes) or []] or list(RANK_SIZES[d]) for d in dims}
    except (ValueError, KeyError):
        raise SystemExit(f"attnzoo deploy: --dims must be 1, 3 or 1,3 (sizes L or DxHxW), got --dims {args.dims!r}"
                         f" --sizes {args.sizes!r}") from None  # fmt: skip
    modules, runtimes = _split(args.modules), _split(args.runtimes)
    if args.family:
        modules = [m for m in (modules or attnzoo.list_modules()) if attnzoo.info(m).family == args.family]
    count = {d: len([m for m in modules if d in attnzoo.info(m).dims]) if modules else len(attnzoo.list_modules(dims=d))
             for d in dims}  # fmt: skip
    total = sum(count[d] * len(sizes[d]) for d in dims) * len(runtimes or report.RUNTIMES)
    with _progress(total, args.quiet) as advance:
        try:
            results = deploy_ranks(modules, runtimes, dims=dims, sizes=sizes, threads=args.threads,
                                   min_time=args.min_time, timeout=args.timeout, progress=advance)  # fmt: skip
        except ValueError as err:
            raise SystemExit(f"attnzoo deploy: {err}") from None
    meta = report.metadata(None, args.threads)
    meta.update(ranks=True, sizes={str(d): [size_text(s) for s in sizes[d]] for d in dims})
    return results, meta


def _merged(args: argparse.Namespace, results: Any, meta: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from . import ranks, report

    if not (args.output or "").endswith(".json") or not Path(args.output).exists():
        raise SystemExit("attnzoo deploy: --merge needs --output naming an existing JSON matrix")
    old, old_meta = report.from_json(Path(args.output).read_text())
    kind = {"variants": "a variants table (--variants)", "ranks": "a per-rank matrix (--dims)", "": "a matrix"}
    old_kind, new_kind = (next((k for k in ("variants", "ranks") if m.get(k)), "") for m in (old_meta, meta))
    if old_kind != new_kind:
        raise SystemExit(f"attnzoo deploy --merge: {args.output} is {kind[old_kind]}, this run is {kind[new_kind]}")
    if new_kind == "ranks":
        if old_meta.get("threads") != meta.get("threads"):
            raise SystemExit(f"attnzoo deploy --merge: {args.output} was measured with --threads "
                             f"{old_meta.get('threads')}; run with the same (got {meta.get('threads')})")  # fmt: skip
        return ranks.merge_ranks(old, results), ranks.merge_ranks_meta(old_meta, meta, results)
    if old_meta.get("size") != meta.get("size") or old_meta.get("threads") != meta.get("threads"):
        raise SystemExit(
            f"attnzoo deploy --merge: {args.output} was measured with --size {old_meta.get('size')} --threads "
            f"{old_meta.get('threads')}; run with the same settings (got {meta.get('size')}, {meta.get('threads')})"
        )
    if meta.get("variants"):
        return report.merge_variants(old, results), report.merge_variants_meta(old_meta, meta, results)
    return report.merge(old, results), report.merge_meta(old_meta, meta, [r.module for r in results])


def _print_table(table: Any, results: Any) -> None:
    try:
        from rich.console import Console
    except ImportError:  # rich is in the deploy extra; fall back to Markdown
        from . import report

        sys.stdout.write(report.to_markdown(results))
        return
    Console(width=max(160, Console().width)).print(table)


class _progress:
    """A rich progress bar (stderr) advanced once per finished case; silent without rich or with --quiet."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if not self.quiet and sys.stderr.isatty():
            try:
                from rich.progress import Progress
            except ImportError:
                return self.advance
            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("deploy", total=self.total)
        return self.advance

    def advance(self, result: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{result.module} · {result.runtime}: {result.status}")
        elif not self.quiet:
            print(f"{result.module:28s} {result.runtime:12s} {result.status}", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
