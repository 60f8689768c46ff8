"""``attnzoo compare --task detect``: does module X help an Ultralytics YOLO detector, and at what cost?

For each module (and ``none``, the baseline) the model YAML gets the module after chosen rows (``--where``) and/or
inside the host blocks' attention (``--inside C2PSA,A2C2f``, through attnzoo's host blocks and ``attn=``); each
network is trained once per seed by Ultralytics' own trainer and validated by its own validator (mAP50,
mAP50-95, precision, recall: Ultralytics' numbers, never recomputed).  attnzoo adds the costs (params, forward
FLOPs at ``imgsz`` with the counter of ``attnzoo bench``, CPU latency with its timer), the health flags, mean ±
std over seeds, the Pareto front and the reports, with the classification harness's own code
(:mod:`attnzoo.compare.report`, :mod:`attnzoo.compare.health`).

Layout of ``--output``::

    compare.json                    the configuration shared by all runs (checked when resuming)
    data/synthetic/                 the synthetic set (``--data synthetic``)
    models/<stem>-<module>.yaml     the model YAML of each module
    runs/<module>/seed<k>/          Ultralytics' run folder (weights/, results.csv, args.yaml) + attnzoo_health.json,
                                    and result.json once finished (finished runs are skipped when rerun)
    results.csv results.json results.md map50-95_vs_flops.png

ultralytics is AGPL-3.0: this file only calls it at run time and contains none of its code.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import check_module_names
from .engine import read_json, write_json
from .report import DETECT, rich_table, summarise, verdict, write_reports

__all__ = ["DetectConfig", "run_detect_compare", "plan_rows", "module_config", "DETECT_TRAINING_KEYS"]

#: the host blocks whose attention ``--inside`` can replace (Ultralytics' YAML names)
HOSTS = ("C2PSA", "A2C2f", "PSA", "AIFI")
#: fields of :class:`DetectConfig` that change what a run computes (a run folder written with others is refused)
DETECT_TRAINING_KEYS = ("model", "data", "where", "inside", "epochs", "imgsz", "batch", "extra")


@dataclass
class DetectConfig:
    """Everything ``attnzoo compare --task detect`` needs (see the module docstring)."""

    modules: list[str] = field(default_factory=lambda: ["none", "cbam", "ema"])
    model: str = "yolo11n.yaml"
    data: str = "synthetic"
    where: list[str] | None = None  # row indices or row module types; None: the backbone's last two CSP stages
    inside: list[str] | None = None  # host types (C2PSA, A2C2f, ...) whose attention the module replaces
    epochs: int = 10
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    imgsz: int = 128
    batch: int = 16
    device: str = "cpu"  # Ultralytics' device string: cpu, 0, 0,1 (DDP), or auto (Ultralytics chooses)
    workers: int = 0
    output: str = "runs/compare-detect"
    latency_time: float = 1.0  # seconds of timing per module (torch.utils.benchmark, 1 thread, batch 1)
    extra: dict[str, Any] = field(default_factory=dict)  # more Ultralytics train arguments (lr0=..., mosaic=...)
    quiet: bool = False

    def resolved(self) -> "DetectConfig":
        c = dataclasses.replace(self, modules=list(self.modules), seeds=list(self.seeds), extra=dict(self.extra))
        checks = [
            ("epochs", c.epochs, isinstance(c.epochs, int) and c.epochs >= 1, "an integer >= 1"),
            ("imgsz", c.imgsz, isinstance(c.imgsz, int) and c.imgsz >= 32 and c.imgsz % 32 == 0, "a multiple of 32"),
            ("batch", c.batch, isinstance(c.batch, int) and c.batch >= 1, "an integer >= 1"),
            ("workers", c.workers, isinstance(c.workers, int) and c.workers >= 0, "an integer >= 0"),
            ("latency_time", c.latency_time, c.latency_time > 0, "> 0 seconds"),
            ("seeds", c.seeds, len(c.seeds) >= 1 and len(set(c.seeds)) == len(c.seeds), "distinct ints"),
            ("modules", c.modules, len(c.modules) >= 1 and len(set(c.modules)) == len(c.modules), "distinct names"),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"compare --task detect: {name} must be {expected}, got {value!r}")
        owned = {"data", "epochs", "imgsz", "batch", "device", "workers", "seed", "project", "name", "resume"}
        if owned & set(c.extra):
            raise ValueError(
                f"compare --task detect: extra= must not set {sorted(owned & set(c.extra))}; use the options"
            )
        if c.inside:
            bad = [h for h in c.inside if h not in HOSTS]
            if bad:
                raise ValueError(f"compare --task detect: --inside takes host rows {', '.join(HOSTS)}, got {bad}")
        if c.data != "synthetic":
            c.data = str(Path(c.data).expanduser().resolve())
        return c

    def training_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in DETECT_TRAINING_KEYS}


# ------------------------------------------------------------------------------------------------ the model YAMLs
def _load(model: str) -> dict:
    from ultralytics.nn.tasks import yaml_model_load

    try:
        return yaml_model_load(model)
    except FileNotFoundError:
        raise ValueError(
            f"compare --task detect: --model must be an Ultralytics model YAML (e.g. yolo11n.yaml, yolov8n.yaml) or a "
            f"path to one, got {model!r}: not found"
        ) from None


def plan_rows(cfg: dict, where: list[str] | None, inside: list[str] | None) -> tuple[list[int], list[int]]:
    """``(rows the module goes after, host rows whose attention it replaces)`` in a model config.

    ``where``: row indices or module types (every row of that type); ``None``: the last two backbone stage blocks
    (rows with repeats > 1 other than SPPF / C2PSA / PSA / AIFI: the C3k2 / C2f / C3 / A2C2f blocks of the P4 and P5
    stages, rows 6 and 8 of yolo11n, yolov8n, yolo12n), unless ``inside`` is given (then nothing goes after rows)."""
    rows = list(cfg["backbone"]) + list(cfg.get("head", []))
    types = {str(r[2]) for r in rows}
    after: list[int] = []
    if where is None and not inside:
        blocks = [
            i
            for i, r in enumerate(cfg["backbone"])
            if isinstance(r[1], int) and r[1] > 1 and str(r[2]) not in ("C2PSA", "PSA", "AIFI", "SPPF", "SPP")
        ]
        if not blocks:
            raise ValueError("compare --task detect: no backbone row with repeats > 1 to follow; pass --where")
        after = blocks[-2:]
    for w in where or []:
        if w.lstrip("-").isdigit():
            i = int(w)
            if not 0 <= i < len(rows) or str(rows[i][2]) in ("Detect", "Segment", "Pose", "OBB", "v10Detect"):
                raise ValueError(f"compare --task detect: --where row {i} must be a row index in [0, {len(rows) - 2}]")
            after.append(i)
        elif w in types:
            after += [i for i, r in enumerate(rows) if str(r[2]) == w]
        else:
            raise ValueError(
                f"compare --task detect: --where {w!r} is neither a row index nor a row type of this model "
                f"({', '.join(sorted(types))})"
            )
    hosts = [i for i, r in enumerate(rows) if str(r[2]) in (inside or [])]
    for h in inside or []:
        if not any(str(r[2]) == h for r in rows):
            raise ValueError(f"compare --task detect: --inside {h}: the model has no {h} row")
    return sorted(set(after)), hosts


def module_config(base: dict, module: str, after: list[int], hosts: list[int]) -> dict:
    """The model config with ``module`` after the rows ``after`` and inside the host rows ``hosts``."""
    import attnzoo

    from ..integrations.ultralytics import insert_layers

    cfg = copy.deepcopy(base)
    if module == "none":
        return cfg
    name = "Az" + attnzoo.info(module).cls.__name__
    n_backbone = len(cfg["backbone"])
    for i in hosts:
        part, j = ("backbone", i) if i < n_backbone else ("head", i - n_backbone)
        row = list(cfg[part][j])
        row[2], row[3] = "Az" + str(row[2]), [*row[3], {"attn": module}]
        cfg[part][j] = row
    return insert_layers(cfg, [(i, name, ["c2"]) for i in after]) if after else cfg


def _check_modules(modules: list[str], after: list[int]) -> None:
    check_module_names(modules)
    if after:
        from ..integrations.ultralytics import row_kind
        from ..registry import info

        for m in modules:
            if m != "none" and row_kind(info(m)) != "nchw":
                raise ValueError(f"compare --task detect: {m!r} is not a same-shape nchw module for a YAML row")


# -------------------------------------------------------------------------------------------------- costs
def _costs(yaml_path: Path, nc: int, imgsz: int, latency_time: float) -> dict:
    """Params, forward FLOPs at imgsz (attnzoo bench's counter: unlike Ultralytics' thop figure it counts the
    attention's matrix products) and CPU latency (batch 1, 1 thread, fused, torch.utils.benchmark median)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from ..bench.measure import time_call
    from .engine import count_flops

    model = DetectionModel(str(yaml_path), nc=nc, verbose=False).float().eval()
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, imgsz)
    model.fuse(verbose=False)
    x = torch.zeros(1, 3, imgsz, imgsz)
    with torch.inference_mode():
        model(x)  # warm-up
        t = time_call(lambda: model(x), threads=1, min_time=latency_time, max_time=3 * latency_time)
    return {"params": params, "flops": flops, "latency_ms": t["ms"], "latency_iqr_ms": t["ms_iqr"]}


# ---------------------------------------------------------------------------------------------- the comparison
def run_detect_compare(config: DetectConfig, console: Any = None) -> dict:
    """Run a detection comparison (module docstring); returns ``{"summary": rows, "runs": results, "files": ...}``.

    Every check that can fail (arguments, module names, model YAML, placement, dataset, a model that does not
    build, an output folder written with another configuration) runs before the first training step."""
    from rich.console import Console

    from .detect_data import check_detection_data, make_synthetic_detection
    from .runner import _check_config

    cfg = config.resolved()
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        raise ValueError(
            'compare --task detect needs ultralytics (AGPL-3.0): pip install -e ".[integrations]"'
        ) from None
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 200))
    say = (lambda *a, **k: None) if cfg.quiet else console.print
    out = Path(cfg.output).resolve()
    _check_config(out / "compare.json", cfg.training_dict(), "output folder")
    base = _load(cfg.model)
    after, hosts = plan_rows(base, cfg.where, cfg.inside)
    _check_modules(cfg.modules, after)
    data_yaml = make_synthetic_detection(out / "data" / "synthetic") if cfg.data == "synthetic" else Path(cfg.data)
    data = check_detection_data(data_yaml)
    synthetic = (data_yaml.parent / "synthetic.json").exists()  # made by make_synthetic_detection: label it so
    stem = Path(str(base.get("yaml_file", cfg.model))).stem

    import attnzoo.compare.detect_train  # noqa: F401  (registers the Az* YAML names)

    (out / "models").mkdir(parents=True, exist_ok=True)
    yamls, static = {}, {}
    with _ultralytics_log(quiet=True):  # building each network once: errors before any training
        for module in cfg.modules:
            yamls[module], static[module] = _prepare(cfg, base, module, after, hosts, stem, out, len(data["names"]))
    if not (out / "compare.json").exists():
        write_json(out / "compare.json", cfg.training_dict())

    where_text = ", ".join(
        [f"after rows {after}"] * bool(after) + [f"inside the attention of rows {hosts} (attn=)"] * bool(hosts)
    )
    what = "SYNTHETIC shapes" if synthetic else Path(data["yaml"]).name
    title = (
        f"{stem} on {what}: {cfg.epochs} epochs × {len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}, "
        f"imgsz {cfg.imgsz}"
    )
    say(
        f"[bold]attnzoo compare --task detect[/bold] {title}; modules {where_text}; data {data['train']} train / "
        f"{data['val']} val images, {len(data['names'])} classes; {len(cfg.modules) * len(cfg.seeds)} runs → {out}"
    )
    train_args = {
        "epochs": cfg.epochs,
        "imgsz": cfg.imgsz,
        "batch": cfg.batch,
        "device": None if cfg.device == "auto" else cfg.device,
        "workers": cfg.workers,
        "val": False,  # validate once, after the last epoch: no best-epoch picking on the validation split
        "plots": False,
        "verbose": not cfg.quiet,
        **cfg.extra,
    }
    results: list[dict] = []
    t_start = time.perf_counter()
    files: dict = {}
    with _ultralytics_log(quiet=cfg.quiet):
        for seed in cfg.seeds:
            for module in cfg.modules:
                results.append(_one_run(cfg, out, module, seed, yamls[module], data, train_args, static[module], say))
                if not results[-1].pop("_was_finished"):
                    files = _write(out, cfg, data, synthetic, results, title, where_text)
    rows = summarise(results, cfg.modules, DETECT)
    files = _write(out, cfg, data, synthetic, results, title, where_text)
    console.print(rich_table(rows, title, DETECT))
    for line in verdict(rows, DETECT):
        console.print(("[bold red]" + line + "[/bold red]") if line.startswith("⚠") else line, highlight=False)
    say(
        f"this invocation {(time.perf_counter() - t_start) / 60:.1f} min; * = Pareto front; "
        f"files: {', '.join(str(p) for p in files.values())}"
    )
    return {"summary": rows, "runs": results, "files": files}


def _prepare(
    cfg: DetectConfig, base: dict, module: str, after: list[int], hosts: list[int], stem: str, out: Path, nc: int
) -> tuple[Path, dict]:
    """Write the module's model YAML and measure the network's costs (which also checks that it builds)."""
    from ..integrations.ultralytics import save_yaml

    path = save_yaml(module_config(base, module, after, hosts), out / "models" / f"{stem}-{module}.yaml")
    try:
        costs = _costs(path, nc, cfg.imgsz, cfg.latency_time)
    except ValueError as e:
        raise ValueError(f"compare --task detect: {module!r} in {cfg.model}: {e}") from e
    except Exception as e:
        raise ValueError(f"compare --task detect: {module!r} in {cfg.model} fails: {type(e).__name__}: {e}") from e
    inserted = len(after) + len(hosts) if module != "none" else 0
    return path, {**costs, "module": module, "inserted": inserted, "model_yaml": str(path)}


@contextlib.contextmanager
def _ultralytics_log(quiet: bool):
    """Ultralytics' own log (its progress bars, its validation table) unless ``quiet``: then warnings only."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    if quiet:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _one_run(
    cfg: DetectConfig,
    out: Path,
    module: str,
    seed: int,
    yaml: Path,
    data: dict,
    train_args: dict,
    static: dict,
    say: Any,
) -> dict:
    from .detect_train import train_detect_run
    from .runner import _check_config

    run_dir = out / "runs" / module / f"seed{seed}"
    finished = (run_dir / "result.json").exists()
    run_cfg = {**cfg.training_dict(), "module": module, "seed": seed}
    _check_config(run_dir / "attnzoo_config.json", run_cfg, "run folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "attnzoo_config.json", run_cfg)
    say(f"  {module} seed {seed}: {'already finished (kept)' if finished else 'training'}")
    result = train_detect_run(run_dir, yaml, data["yaml"], seed, train_args, static)
    if result["flags"]:
        error = f" ({result['error']})" if result.get("error") else ""
        say(
            f"  [bold red]⚠ {module} seed {seed}: {', '.join(result['flags'])}{error} — excluded from the Pareto front[/bold red]"
        )
    else:
        say(f"  {module} seed {seed}: mAP50-95 {result['map50_95']:.3f}, mAP50 {result['map50']:.3f}")
    return {**result, "_was_finished": finished}


def _write(
    out: Path, cfg: DetectConfig, data: dict, synthetic: bool, results: list[dict], title: str, where: str
) -> dict:
    import platform

    import torch
    import ultralytics

    rows = summarise(results, cfg.modules, DETECT)
    total = sum(r["wall_time_s"] for r in results)
    label = (
        "SYNTHETIC data (attnzoo's generated shapes on textured backgrounds, not real images): "
        if synthetic
        else f"data {data['yaml']}: "
    )
    meta = {
        "title": title,
        "synthetic": synthetic,
        "description": (
            f"{label}{data['train']} train / {data['val']} val images, {len(data['names'])} classes. {cfg.model} with "
            f"each module {where}; trained by Ultralytics {ultralytics.__version__} (its default recipe; "
            f"{cfg.epochs} epochs, imgsz {cfg.imgsz}, batch {cfg.batch}, device {cfg.device}"
            f"{', ' + ', '.join(f'{k}={v}' for k, v in cfg.extra.items()) if cfg.extra else ''}), validated once "
            f"after the last epoch by Ultralytics' validator (mAP50-95, mAP50, P, R in [0, 1]); mean ± std over seeds "
            f"{', '.join(map(str, sorted({r['seed'] for r in results})))}. CPU ms: batch 1, 1 thread, fused, median "
            f"(torch.utils.benchmark) on {platform.processor() or platform.machine()} ({os.cpu_count()} cores). "
            f"{len(results)} runs, {total / 60:.1f} min of training."
        ),
        "config": dataclasses.asdict(cfg),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "total_training_time_s": total,
    }
    return write_reports(out, rows, results, meta, DETECT)


def read_results(output: str | Path) -> dict:
    """The ``results.json`` of a finished comparison."""
    return read_json(Path(output) / "results.json")
