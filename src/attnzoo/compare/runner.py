"""``attnzoo compare`` orchestration: check everything, then train every (module, seed) run and summarise.

Layout of ``--output``::

    compare.json                  the training configuration shared by all runs (checked when resuming)
    runs/<module>/seed<k>/        one folder per run (see attnzoo.compare.engine)
    results.csv results.json results.md accuracy_vs_flops.png

Runs go seed by seed (every module with seed 0, then seed 1, ...), so an interrupted comparison already holds
a complete one-seed comparison.  The summary files are rewritten after every finished run from the runs'
``result.json`` files; run folders are never overwritten.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .config import CompareConfig, check_module_names
from .data import check_dataset_spec, dataset_rank, load_dataset
from .distributed import DistContext, setup_distributed
from .engine import (
    RunHooks,
    RunSpec,
    count_flops,
    read_json,
    train_run,
    write_json,
)
from .health import describe_flags
from .models import build_model, check_model_input, check_model_name
from .report import rich_table, summarise, verdict, write_reports

__all__ = ["run_compare", "insert_module"]


def insert_module(model: nn.Module, module: str, where: list[str] | None = None) -> tuple[nn.Module, list[str]]:
    """``attnzoo.insert`` the module (``none``: leave the model as is); returns ``(model, names of the new modules)``."""
    if module == "none":
        return model, []
    import attnzoo

    model, report = attnzoo.insert(model, module, where=where)
    return model, [r.name for r in report]


def _build(cfg: CompareConfig, module: str, num_classes: int, image_size: int) -> tuple[nn.Module, list[str], dict]:
    model, notes = build_model(
        cfg.model, num_classes, image_size, stem=cfg.stem, pretrained=cfg.pretrained, zero_init=cfg.zero_init_residual
    )
    model, inserted = insert_module(model, module, cfg.where)
    return model, inserted, notes


def _builder(cfg: CompareConfig, module: str, num_classes: int, image_size: int):
    return lambda: _build(cfg, module, num_classes, image_size)[0]


def _check_config(path: Path, expected: dict, what: str) -> None:
    """An existing config file must hold ``expected``; otherwise say which keys differ (never overwrite)."""
    if not path.exists():
        return
    old = read_json(path)
    diff = {k: (old.get(k), v) for k, v in expected.items() if old.get(k) != v}
    if diff:
        parts = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        raise ValueError(
            f"compare: {what} {str(path.parent)!r} was written with a different configuration ({parts}); "
            f"pass another --output (results already there are kept)"
        )


def run_compare(config: CompareConfig, console: Any = None) -> dict:
    """Run a comparison (see module docstring); returns ``{"summary": rows, "runs": results, "files": paths}``.

    Every check that can fail (arguments, module names, model name, dataset, insertion into the model, an output
    folder written with another configuration) runs before the first training step.
    """
    cfg = config.resolved()
    check_module_names(cfg.modules)
    check_model_name(cfg.model)
    check_dataset_spec(cfg.dataset, cfg.data_root)
    check_model_input(cfg.model, cfg.dataset, dataset_rank(cfg.dataset))
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = setup_distributed(cfg.device)
    try:
        return _run(cfg, ctx, console)
    finally:
        ctx.close()
        torch.set_num_threads(threads)


def _run(cfg: CompareConfig, ctx: DistContext, console: Any) -> dict:
    from rich.console import Console

    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and pipes: do not squeeze the table into 80 columns
            console = Console(width=max(console.width, 160))
    show = ctx.is_main and not cfg.quiet
    if cfg.batch_size % ctx.world:
        raise ValueError(
            f"compare: batch size must be divisible by the number of processes ({ctx.world}), got {cfg.batch_size}"
        )
    bundle = ctx.main_first(lambda: load_dataset(cfg.dataset, cfg.image_size, cfg.data_root, cfg.download))
    cfg.image_size = bundle.image_size
    if len(bundle.train) < cfg.batch_size:
        raise ValueError(
            f"compare: batch size must be at most the training set size ({len(bundle.train)}), got {cfg.batch_size}"
        )
    amp = cfg.amp if cfg.amp is not None else ctx.device.type == "cuda"
    workers = cfg.workers if cfg.workers is not None else (0 if bundle.in_memory else 4)

    # Build every network once: a module that cannot go into this model fails here, before any training.
    costs: dict[str, tuple[int, int, list[str]]] = {}
    for module in cfg.modules:
        torch.manual_seed(0)
        try:
            model, inserted, notes = _build(cfg, module, bundle.num_classes, bundle.image_size)
            if module != "none" and not inserted:
                raise ValueError(f"compare: attnzoo.insert found no place for {module!r} in {cfg.model}; pass --where")
            flops = count_flops(model, bundle.sample_shape)  # also a first forward pass of every network
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(f"compare: {module!r} in {cfg.model} fails: {type(e).__name__}: {e}") from e
        costs[module] = (sum(p.numel() for p in model.parameters()), flops, inserted)
        del model
    if show and "pretrained" in notes:
        pre = notes["pretrained"]
        console.print(
            f"pretrained {pre['path']}: loaded {pre['loaded']} tensors; skipped (shape or name mismatch): "
            f"{', '.join(pre['skipped']) or 'none'}"
        )

    out = Path(cfg.output)
    training = cfg.training_dict()
    _check_config(out / "compare.json", training, "output folder")
    specs: list[RunSpec] = []
    for seed in cfg.seeds:
        for module in cfg.modules:
            run_dir = out / "runs" / module / f"seed{seed}"
            run_cfg = {**training, "module": module, "seed": seed}
            _check_config(run_dir / "config.json", run_cfg, "run folder")
            params, flops, inserted = costs[module]
            specs.append(
                RunSpec(
                    module,
                    seed,
                    run_dir,
                    run_cfg,
                    _builder(cfg, module, bundle.num_classes, bundle.image_size),
                    params,
                    flops,
                    inserted,
                    num_classes=bundle.num_classes,
                )
            )
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "compare.json").exists():
            write_json(out / "compare.json", training)
    ctx.barrier()

    title = (
        f"{cfg.model} on {bundle.name}: {cfg.epochs} epochs × {len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}"
    )
    if show:
        console.print(
            f"[bold]attnzoo compare[/bold] {title}; {bundle.describe()}; {cfg.optimizer} lr {cfg.lr:g} "
            f"(warm-up {cfg.warmup_epochs:g} epochs, cosine) wd {cfg.weight_decay}, "
            f"batch {cfg.batch_size}{f' ({ctx.world} processes)' if ctx.distributed else ''}, device {ctx.device}, "
            f"{len(specs)} run{'s' if len(specs) > 1 else ''} → {out}"
        )
    results: list[dict] = []
    t_start = time.perf_counter()
    with _progress(console, show) as progress:
        overall = progress.add_task("[bold]all runs", total=len(specs) * cfg.epochs)
        current = progress.add_task("", total=1, visible=False)

        def start(spec: RunSpec, start_epoch: int, steps: int) -> None:
            progress.update(overall, advance=start_epoch)
            what = f"resumed at epoch {start_epoch + 1}" if start_epoch else "training"
            progress.reset(
                current,
                total=(cfg.epochs - start_epoch) * steps,
                visible=True,
                description=f"{spec.module} seed {spec.seed} ({what})",
            )

        first_loss: list[float] = []

        def epoch(row: dict) -> None:
            progress.update(overall, advance=1)
            if row["epoch"] == 1 or not first_loss:
                first_loss[:] = [row["train_loss"]]
            if show:
                loss = row["train_loss"]
                warn = ""
                if not math.isfinite(loss):
                    warn = "  [bold red]⚠ diverged (non-finite loss): stopping this run[/bold red]"
                elif loss > first_loss[0] or loss > 1.5 * math.log(max(2, bundle.num_classes)):
                    warn = "  [bold red]⚠ loss rising / above chance level[/bold red]"
                progress.console.print(
                    f"  {current_spec[0].module:<10} seed {current_spec[0].seed} epoch {row['epoch']:>3}/{cfg.epochs}  "
                    f"loss {loss:.3f}  train {row['train_acc']:6.2f}%  test {row['test_acc']:6.2f}%  "
                    f"{row['train_img_per_s']:.0f} img/s{warn}"
                )

        hooks = RunHooks(start=start, step=lambda: progress.update(current, advance=1), epoch=epoch)
        current_spec: list[RunSpec] = []
        for spec in specs:
            current_spec[:] = [spec]
            finished = (spec.run_dir / "result.json").exists()
            result = train_run(spec, bundle.train, bundle.test, ctx, amp=amp, workers=workers, hooks=hooks)
            if finished:
                progress.update(overall, advance=cfg.epochs)
                if show:
                    progress.console.print(
                        f"  {spec.module:<10} seed {spec.seed} already finished: test {result['test_acc']:.2f}% (kept)"
                    )
            results.append(result)
            if show and result.get("flags"):
                progress.console.print(
                    f"  [bold red]⚠ {spec.module} seed {spec.seed}: "
                    f"{describe_flags(result['flags'], result.get('test_acc'), bundle.num_classes)} — not a meaningful "
                    f"comparison for this run (excluded from the Pareto front)[/bold red]"
                )
            if ctx.is_main and not finished:  # a partial summary after every newly finished run
                _write(out, cfg, bundle, results, title, ctx)
        progress.update(current, visible=False)

    rows = summarise(results, cfg.modules)
    files = _write(out, cfg, bundle, results, title, ctx) if ctx.is_main else {}
    if ctx.is_main:
        console.print(rich_table(rows, title))
        for line in verdict(rows):
            console.print(("[bold red]" + line + "[/bold red]") if line.startswith("⚠") else line, highlight=False)
        if show:
            total = sum(r["wall_time_s"] for r in results)
            console.print(
                f"training time of all runs {total / 60:.1f} min (this invocation {(time.perf_counter() - t_start) / 60:.1f} min); "
                f"* = Pareto front; files: {', '.join(str(p) for p in files.values())}"
            )
    ctx.barrier()
    return {"summary": rows, "runs": results, "files": files}


def _write(out: Path, cfg: CompareConfig, bundle, results: list[dict], title: str, ctx: DistContext) -> dict:
    rows = summarise(results, cfg.modules)
    total = sum(r["wall_time_s"] for r in results)
    meta = {
        "title": title,
        "description": (
            f"{bundle.describe()}. {cfg.optimizer.upper()} lr {cfg.lr:g} ({cfg.warmup_epochs:g} epochs linear warm-up, "
            f"then cosine), weight decay {cfg.weight_decay}, batch {cfg.batch_size}, label smoothing {cfg.label_smoothing}, "
            f"gradient norm clipped at {cfg.clip_grad_norm}, residual blocks zero-initialised: {cfg.zero_init_residual}; top-1 on the test split after the last "
            f"epoch, mean ± std over seeds {', '.join(map(str, sorted({r['seed'] for r in results})))}; "
            f"{len(results)} runs, {total / 60:.1f} min of training on {ctx.device.type}"
            f"{f' ({ctx.world} processes)' if ctx.distributed else ''}."
        ),
        "config": cfg.to_dict(),
        "world_size": ctx.world,
        "device": str(ctx.device),
        "torch": torch.__version__,
        "total_training_time_s": total,
    }
    return write_reports(out, rows, results, meta)


class _NoProgress:
    """Stand-in for rich's Progress when nothing should be displayed."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, *a, **k) -> int:
        return 0

    def update(self, *a, **k) -> None:
        return None

    def reset(self, *a, **k) -> None:
        return None


def _progress(console: Any, show: bool):
    if not show:
        return _NoProgress(console)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
