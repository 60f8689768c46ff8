"""``attnzoo compare``: train one network with each attention module and compare accuracy against cost.

attnzoo compare --modules none,se,eca,cbam,coord --model resnet18 --dataset digits --epochs 15 --seeds 3 --output runs/digits
torchrun --standalone --nproc_per_node 2 -m attnzoo compare ...      # the same, with DistributedDataParallel
attnzoo compare --task detect --model yolo11n.yaml --data synthetic --modules none,cbam,ema   # Ultralytics YOLO
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows the default of options that take a value, unless it is None or their help already says it ("(default: 32,
    imagefolder 224) (default: None)"); a flag's own help says what it does (argparse's "(default: True)" after
    ``--no-download`` reads as "does not download by default")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .config import CompareConfig, default_modules
    from .detect import DetectConfig

    d, dd = CompareConfig(), DetectConfig()
    p = sub.add_parser(
        "compare",
        help="train a model with each attention module and compare accuracy, params, FLOPs and speed",
        description=(
            "For each module (and 'none', the baseline) insert it into every residual block of the model with "
            "attnzoo.insert, train with each seed, evaluate, and report top-1 mean ± std, params, FLOPs, training "
            "throughput and time (terminal table, CSV/JSON/Markdown, accuracy-vs-FLOPs plot). An interrupted "
            "comparison resumes when run again with the same --output. Under torchrun it uses DistributedDataParallel. "
            "--task detect: the same for an Ultralytics YOLO model YAML on a YOLO dataset, trained and validated by "
            "Ultralytics (mAP50-95, mAP50, precision, recall, params, FLOPs, CPU latency; see docs/compare.md)."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--task",
        choices=("classify", "detect"),
        default="classify",
        help="classify: torchvision/timm classifiers (default); detect: an Ultralytics YOLO detector",
    )
    p.add_argument(
        "--modules",
        default=None,
        help=f"comma-separated registry names; 'none' = baseline (default: classify {','.join(default_modules(2))}, "
        f"video models {','.join(default_modules(3))}; detect {','.join(dd.modules)})",
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"classify: resnet18/34/50 (torchvision), cifar_resnet{{8,14,20,32,44,56,110}}, r3d_18, mc3_18, r2plus1d_18 "
        f"(torchvision video ResNets, on clips), or a timm name (default "
        f"{d.model}); detect: an Ultralytics model YAML name or path (default {dd.model})",
    )
    p.add_argument(
        "--dataset",
        "--data",
        dest="dataset",
        default=None,
        help="classify: digits | cifar10 | cifar100 | imagefolder:PATH | synthetic | video_shapes (default digits; "
        "video_shapes for the video models r3d_18, mc3_18, r2plus1d_18); detect: a "
        "YOLO dataset YAML or 'synthetic' (generated shapes, default)",
    )
    p.add_argument("--data-root", default=d.data_root, help="where cifar10/cifar100 are (or get downloaded)")
    p.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="never download datasets (by default a missing cifar10 / cifar100 is downloaded into --data-root)",
    )
    p.add_argument(
        "--image-size",
        "--imgsz",
        dest="image_size",
        type=int,
        default=None,
        help=f"input size (default: 32, imagefolder 224; detect {dd.imgsz})",
    )
    p.add_argument("--epochs", type=int, default=None, help=f"(default: {d.epochs}; detect {dd.epochs})")
    p.add_argument("--seeds", default="3", help="number of seeds (0..N-1) or a comma-separated list")
    p.add_argument(
        "--batch-size",
        "--batch",
        dest="batch_size",
        type=int,
        default=None,
        help=f"global batch size, split over torchrun processes (default: {d.batch_size}; detect {dd.batch})",
    )
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default=d.optimizer)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default, scaled with the batch: sgd 0.1 per 128 images, adamw 1e-3 per 256); "
        "linear warm-up then cosine decay",
    )
    p.add_argument(
        "--weight-decay", type=float, default=None, help="default: sgd 5e-4, adamw 0.05 (not on biases/norms)"
    )
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD (Nesterov) momentum")
    p.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="linear warm-up before the cosine decay, in epochs (fractions allowed; default: min(1, epochs/5))",
    )
    p.add_argument(
        "--zero-init-residual",
        choices=("auto", "on", "off"),
        default="auto",
        help="zero the last BatchNorm of each residual block, so that each block starts as the identity "
        "(torchvision's zero_init_residual); auto: on for networks with more than 16 residual blocks "
        "(ResNet-101/152, CIFAR ResNet-56/110: they blow up at the start otherwise)",
    )
    p.add_argument(
        "--clip-grad-norm",
        type=float,
        default=d.clip_grad_norm,
        help="clip the gradient norm to this value (0: no clipping)",
    )
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument(
        "--amp", dest="amp", action="store_true", default=None, help="mixed precision (default: on with CUDA)"
    )
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision")
    p.add_argument(
        "--device",
        default=None,
        help="classify: auto | cpu | cuda (default auto); detect: Ultralytics' device, cpu (default), 0, 0,1 (DDP) or auto",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers (default: 0 for in-memory data, else 4)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: torch's choice)")
    p.add_argument("--pretrained", default=None, metavar="PATH", help="local checkpoint loaded into the base model")
    p.add_argument(
        "--stem",
        choices=("auto", "imagenet", "cifar"),
        default=d.stem,
        help="torchvision ResNets: 'auto' uses a 3x3 stride-1 stem without max-pool below 64x64 inputs",
    )
    p.add_argument(
        "--where",
        default=None,
        help="classify: comma-separated module names or patterns (e.g. 'layer3.0,layer3.1') for "
        "attnzoo.insert(where=...), default every residual block; detect: YAML row indices or row types (e.g. 6,8 or "
        "C3k2) to put the module after, default the last two backbone stage blocks (rows 6, 8 of yolo11n)",
    )
    p.add_argument(
        "--inside",
        default=None,
        help="detect: host rows (C2PSA, A2C2f, PSA, AIFI) whose attention the module replaces (attn=)",
    )
    p.add_argument(
        "--output",
        default=None,
        help=f"output folder, rerun with the same folder to resume (default: {d.output}; detect {dd.output})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=run)


#: The options whose value is the CompareConfig field of the same name as parsed.
_PASSED_AS_IS = (
    "model", "dataset", "data_root", "image_size", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
    "momentum", "warmup_epochs", "label_smoothing", "amp", "device", "workers", "threads", "pretrained", "stem",
    "output", "download", "quiet",
)  # fmt: skip
#: Options shared by both tasks whose default depends on the task (None on the command line: the task's default).
_TASK_DEFAULTS = ("model", "dataset", "image_size", "epochs", "batch_size", "device", "output")
#: classification-only options, refused with --task detect when given
_CLASSIFY_ONLY = (
    "data_root", "optimizer", "lr", "weight_decay", "momentum", "warmup_epochs", "label_smoothing", "clip_grad_norm",
    "amp", "threads", "pretrained", "stem", "download",
)  # fmt: skip


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def detect_config_from_args(args: argparse.Namespace):
    from .config import CompareConfig, parse_modules, parse_seeds
    from .detect import DetectConfig

    d = CompareConfig()
    given = [f"--{n.replace('_', '-')}" for n in _CLASSIFY_ONLY if getattr(args, n) != getattr(d, n)]
    if given:
        raise ValueError(
            f"compare: {', '.join(given)} only apply to --task classify (Ultralytics' recipe trains detectors; pass "
            f"its arguments through the Python API's DetectConfig(extra=...))"
        )
    names = {"dataset": "data", "image_size": "imgsz", "batch_size": "batch"}
    kw: dict[str, Any] = {names.get(k, k): v for k, v in _given(args, _TASK_DEFAULTS).items()}
    if args.modules:
        kw["modules"] = parse_modules(args.modules)
    split = lambda text: [w.strip() for w in text.split(",") if w.strip()] if text else None  # noqa: E731
    return DetectConfig(
        **kw,
        seeds=parse_seeds(args.seeds),
        where=split(args.where),
        inside=split(args.inside),
        workers=args.workers if args.workers is not None else 0,
        quiet=args.quiet,
    )


def config_from_args(args: argparse.Namespace):
    from .config import CompareConfig, parse_modules, parse_seeds

    if args.inside:
        raise ValueError("compare: --inside only applies to --task detect")
    d = CompareConfig()
    task = {n: getattr(d, n) for n in _TASK_DEFAULTS} | _given(args, _TASK_DEFAULTS)
    return CompareConfig(
        **{name: getattr(args, name) for name in _PASSED_AS_IS if name not in task},
        **task,
        modules=parse_modules(args.modules or ""),  # none named: the defaults for the model
        seeds=parse_seeds(args.seeds),
        zero_init_residual={"auto": None, "on": True, "off": False}[args.zero_init_residual],
        clip_grad_norm=args.clip_grad_norm or None,
        where=[w.strip() for w in args.where.split(",") if w.strip()] if args.where else None,
    )


def run(args: argparse.Namespace) -> int:
    import os

    from .runner import run_compare

    try:
        if args.task == "detect":
            from .detect import run_detect_compare

            run_detect_compare(detect_config_from_args(args))
        else:
            run_compare(config_from_args(args))
    except ValueError as e:  # a user error: one clear line, no traceback (printed once under torchrun)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"attnzoo compare: error: {str(e).removeprefix('compare: ')}", file=sys.stderr)
        return 2
    return 0
