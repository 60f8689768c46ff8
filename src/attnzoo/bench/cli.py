"""``attnzoo bench``: the cost profiler (params, FLOPs/MACs, latency and peak memory of every module).

The parent (this module, :mod:`.runner`, :mod:`.report`) imports neither torch nor ``rich``/``matplotlib`` at
import time; every case (module × size) is measured in a fresh process forked by the worker server
(:mod:`.worker`, :mod:`.measure`), one at a time.  See ``docs/bench-json.md`` for the JSON output.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import time
from typing import Any

from ..cli import add_module_command
from . import checks, report

FORMATS = ("table", "csv", "json", "markdown")
_EXT_FORMAT = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".txt": "table"}

EPILOG = """\
examples:
  attnzoo bench                                   # every module, default input per layout
  attnzoo bench --modules se,cbam --sizes 14,28,56,112 --plot sweep.png
  attnzoo bench --family self_attention --format markdown --output costs.md
  attnzoo bench --load costs.json --format csv    # re-render a saved JSON run without measuring

Default inputs: nchw 2×64×56×56; pair 2×64×28×28 with a 14×14 context; pyramid 4 levels 64…512 channels,
56×56…7×7; tokens 2×196×64; temporal 2×32×8×24 (B×C×series×steps).  --sizes S means S×S (tokens: N = S·S;
temporal: S steps of 8 series); HxW is taken literally (temporal: series x steps).
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = add_module_command(
        sub,
        "bench",
        help="profile registered modules: params, FLOPs, latency, peak memory",
        description="Profile registered attnzoo modules: parameters, FLOPs and MACs, forward and forward+backward "
        "latency (median and IQR) and peak memory, each case in a fresh process.",
        epilog=EPILOG,
    )
    p.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    p.add_argument("--channels", type=int, default=None, help="channels (pyramid: of the finest level, doubling)")
    p.add_argument("--sizes", default=None, help="comma-separated sizes, S or HxW (default: the layout's default)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="bfloat16 runs the module under torch.autocast (weights and inputs stay float32)",
    )
    p.add_argument(
        "--threads",
        default=None,
        metavar="N|auto",
        help="torch threads per case (default 1, so a busy or small machine is not oversubscribed; "
        "auto = the cores the load average leaves free)",
    )
    p.add_argument(
        "--kwargs",
        default=None,
        metavar="JSON",
        help='constructor arguments per module, e.g. \'{"nonlocal": {"mode": "gaussian"}}\'',
    )
    p.add_argument("--min-time", type=float, default=0.25, help="seconds timed per latency figure at least (0.25)")
    p.add_argument("--max-time", type=float, default=2.0, help="seconds timed per latency figure at most (2.0)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per case before it is killed (600)")
    p.add_argument("--forward-only", action="store_true", help="skip forward+backward figures")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory figures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (dotted name or .py file) that registers extra modules; repeatable",
    )
    p.add_argument("--format", choices=FORMATS, default=None, help="output format (default: table, or from --output)")
    p.add_argument("--output", default=None, metavar="FILE", help="write the output there (the table still prints)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="latency and memory against resolution (log-log)")
    p.add_argument("--load", default=None, metavar="FILE.json", help="render a saved JSON run instead of measuring")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any case failed")
    p.set_defaults(func=run)
    return p


def parse_sizes(text: str | None) -> list[Any]:
    """``"14,28,32x48"`` → ``[14, 28, [32, 48]]``; ``None`` → ``[None]`` (the layout default)."""
    if not text:
        return [None]
    out: list[Any] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            if "x" in part:
                h, w = part.split("x")
                size: Any = [int(h), int(w)]
                ok = size[0] > 0 and size[1] > 0
            else:
                size = int(part)
                ok = size > 0
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(f"--sizes: each size must be a positive S or HxW, got {part!r}")
        out.append(size)
    return out or [None]


class _Progress:
    """A rich progress bar on a terminal; otherwise one plain line per case on stderr."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.done = total, quiet, 0
        self.bar = None
        if quiet:
            return
        try:
            if not sys.stderr.isatty():
                raise ImportError
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]bench[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=total)
        except ImportError:
            self.bar = None

    def start(self, label: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=label)

    def finish(self, label: str, row: dict) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        elif not self.quiet:
            status = "ERROR " + row["error"] if row.get("error") else f"ok {row.get('seconds') or 0:.1f}s"
            print(f"[{self.done}/{self.total}] {label}: {status}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _format_for(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output:
        return _EXT_FORMAT.get(os.path.splitext(args.output)[1].lower(), "table")
    return "table"


def _announce(args: argparse.Namespace, threads: int, why: str, env: dict, infos: list, sizes: list) -> None:
    """Before measuring: the thread count (and whether it oversubscribes the machine), and a long-run warning."""
    load = env.get("load_average")
    cpus = env.get("cpu_count")
    busy = f", load average {load:.1f} on {cpus} cores" if load is not None else ""
    print(f"attnzoo bench: {threads} torch thread(s) per case ({why}{busy})", file=sys.stderr)
    if load is not None and cpus and load > cpus:
        print(
            f"attnzoo bench: warning: the machine is busy (load average {load:.1f} on {cpus} cores): latencies will "
            "be inflated by waiting for other work; rows that look implausible are marked",
            file=sys.stderr,
        )
    elif load is not None and checks.oversubscribed(threads, cpus, load):
        print(
            f"attnzoo bench: warning: {threads} threads oversubscribe this machine ({checks.free_cores(cpus, load)} "
            "core(s) free by the load average): latencies will include waiting for other work",
            file=sys.stderr,
        )
    settings = {
        "batch": args.batch,
        "channels": args.channels,
        "threads": threads,
        "min_time": args.min_time,
        "max_time": args.max_time,
        "backward": not args.forward_only,
        "memory": not args.no_memory,
    }
    note = checks.long_run_warning(*checks.estimate_run(infos, sizes, settings))
    if note:
        print(f"attnzoo bench: {note}", file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> dict:
    """Run every case and return the JSON document."""
    from .runner import WorkerClient, WorkerError

    try:
        sizes = parse_sizes(args.sizes)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"attnzoo bench: {exc}")
    kwargs_by_module = json.loads(args.kwargs) if args.kwargs else {}
    if not isinstance(kwargs_by_module, dict):
        raise SystemExit("attnzoo bench: --kwargs must be a JSON object {module: {argument: value}}")
    names = [n.strip() for n in args.modules.split(",") if n.strip()] if args.modules else None
    started = time.perf_counter()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rows: list[dict] = []
    with WorkerClient(args.imports) as worker:
        try:
            infos = worker.list_modules(names, args.family)
        except WorkerError as exc:
            raise SystemExit(f"attnzoo bench: {exc}")
        if not infos:
            raise SystemExit("attnzoo bench: no module matches --modules/--family")
        env = worker.probe(args.device)
        if args.device == "cuda" and not env.get("cuda_available"):
            raise SystemExit("attnzoo bench: --device cuda but torch.cuda.is_available() is False")
        try:
            threads, why = checks.resolve_threads(args.threads, env.get("cpu_count"), env.get("load_average"))
        except ValueError as exc:
            raise SystemExit(f"attnzoo bench: {exc}")
        unknown_kw = sorted(set(kwargs_by_module) - {i["name"] for i in infos})
        if unknown_kw:
            raise SystemExit(f"attnzoo bench: --kwargs names modules that are not benchmarked: {unknown_kw}")
        cases = [(info, size) for info in infos for size in sizes]
        if not args.quiet:
            _announce(args, threads, why, env, infos, sizes)
        progress = _Progress(len(cases), args.quiet)
        try:
            for info, size in cases:
                job = {
                    "name": info["name"],
                    "kwargs": kwargs_by_module.get(info["name"], {}),
                    "batch": args.batch,
                    "channels": args.channels,
                    "size": size,
                    "device": args.device,
                    "dtype": args.dtype,
                    "threads": threads,
                    "min_time": args.min_time,
                    "max_time": args.max_time,
                    "memory": not args.no_memory,
                    "backward": not args.forward_only,
                    "seed": args.seed,
                }
                label = (
                    info["name"]
                    if size is None
                    else f"{info['name']} @ {size if isinstance(size, int) else 'x'.join(map(str, size))}"
                )
                progress.start(label)
                try:
                    measured = worker.run(job, args.timeout)
                except WorkerError as exc:
                    measured = {"error": f"worker: {exc}", "error_stage": "worker"}
                rows.append(report.make_row(info, job, measured))
                progress.finish(label, rows[-1])
        finally:
            progress.close()
    settings = {
        "modules": [i["name"] for i in infos],
        "family": args.family,
        "batch": args.batch,
        "channels": args.channels,
        "sizes": sizes,
        "device": args.device,
        "dtype": args.dtype,
        "threads": threads,
        "kwargs": kwargs_by_module,
        "min_time": args.min_time,
        "max_time": args.max_time,
        "timeout": args.timeout,
        "memory": not args.no_memory,
        "backward": not args.forward_only,
        "seed": args.seed,
        "imports": args.imports,
    }
    command = "attnzoo bench" + "".join(" " + shlex.quote(a) for a in getattr(args, "argv", []) or [])
    return report.document(rows, settings, env, created, command, time.perf_counter() - started)


def run(args: argparse.Namespace) -> int:
    args.argv = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "bench" else getattr(args, "argv", [])
    fmt = _format_for(args)
    if args.load:
        with open(args.load) as f:
            doc = json.load(f)
        if doc.get("schema") != report.SCHEMA:
            raise SystemExit(f"attnzoo bench: {args.load} is not an attnzoo bench JSON file")
    else:
        doc = measure(args)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report.render(doc, fmt))
        report.print_table(doc)
    elif fmt == "table":
        report.print_table(doc)
    else:
        sys.stdout.write(report.render(doc, fmt))
    if args.plot:
        try:
            report.plot(doc, args.plot)
        except ImportError:
            print("attnzoo bench: --plot needs matplotlib (from a clone: pip install -e '.[cli]')", file=sys.stderr)
            return 1
    failed = sum(1 for r in doc["results"] if r.get("error"))
    warning = checks.implausible_warning(doc["results"])
    if warning and not args.quiet:
        print(f"attnzoo bench: {warning}", file=sys.stderr)
    if failed and not args.quiet:
        print(
            f"attnzoo bench: {failed} of {len(doc['results'])} cases reported an error (see the error column)",
            file=sys.stderr,
        )
    if not args.load and not args.quiet:
        print(f"attnzoo bench: {len(doc['results'])} cases in {doc['duration_seconds']:.1f} s", file=sys.stderr)
    return 1 if (failed and args.strict) else 0
