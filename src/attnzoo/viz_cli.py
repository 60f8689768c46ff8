"""``attnzoo viz``: insert a module into a small network, run one image through it and draw its maps with
:func:`attnzoo.viz.overlay`.  ``--dims 3`` runs the module's 3-D form on a clip made from the image (a slice
montage per map), ``--dims 1`` its 1-D form on a signal (a strip per map)."""

from __future__ import annotations

import argparse
import ast
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from .viz import SCALES, load_image, overlay


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "viz",
        help="draw the attention maps of a module inserted into a small network, over an image",
        description=(
            "Insert a registered same-shape nchw module into every residual block of a network (torchvision resnet18 by "
            "default, freshly initialised), run one image through it and write its attention maps over the "
            "image as a PNG.  With --checkpoint, use a saved model instead.  --dims 3 / --dims 1: the module's 3-D / "
            "1-D form after a small untrained convolution stem, on a clip made from the image (drawn as slice "
            "montages) or on a signal (drawn as strips)."
        ),
    )
    p.add_argument(
        "--module", required=True, help="registered module that keeps the shape of its B×C×H×W map, e.g. cbam"
    )
    p.add_argument("--image", help="input image (PNG, JPEG, ...); with --dims 3 the middle frame of the clip")
    p.add_argument(
        "--dims",
        type=int,
        choices=(1, 2, 3),
        default=2,
        help="spatial rank: 2 = the image in --model (default); 3 = a clip of --frames frames (the image panning "
        "sideways) through a stem and the module's dims=3 form; 1 = the --signal through a stem and its dims=1 form",
    )
    p.add_argument("--frames", type=int, default=8, help="frames of the clip with --dims 3 (default 8)")
    p.add_argument(
        "--signal", default=None, help="with --dims 1: a file of numbers (text: whitespace or comma separated; or .npy)"
    )
    p.add_argument(
        "--slices", type=int, default=0, help="3-D maps: evenly spaced slices drawn after the middle one and the max"
    )
    p.add_argument("--output", default=None, help="output PNG (default: <image stem>-<module>-maps.png)")
    p.add_argument(
        "--model",
        default="resnet18",
        help="host network: a torchvision model name (resnet18, resnet50, ...) or timm:<name>",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a state_dict of --model with --module inserted (e.g. model.pt of attnzoo compare), loaded "
        "as data with torch.load(weights_only=True); a whole pickled model needs --unsafe-load-pickle",
    )
    p.add_argument(
        "--unsafe-load-pickle",
        action="store_true",
        help="allow --checkpoint to be a whole torch.save'd model: unpickling EXECUTES CODE from the file, "
        "use it only for files you made yourself or fully trust",
    )
    p.add_argument(
        "--size",
        type=int,
        default=224,
        help="resize the image so that its shorter side is SIZE for the network, keeping its aspect ratio "
        "(sides rounded to multiples of 8)",
    )
    p.add_argument(
        "--scale",
        choices=SCALES,
        default="auto",
        help="colour scale: auto = gates (values in [0, 1]) on a fixed [0, 1] scale, other maps on their own range; "
        "data = every map on its own range (default auto)",
    )
    p.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="module argument (Python literal), repeatable, e.g. --arg kernel_size=3",
    )
    p.add_argument("--columns", type=int, default=4, help="panels per row")
    p.add_argument("--panel", type=int, default=256, help="panel size in pixels")
    p.set_defaults(func=run)


def _module_kwargs(items: Sequence[str]) -> dict[str, Any]:
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"attnzoo viz: --arg must be KEY=VALUE, got {item!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def _host(model: str) -> torch.nn.Module:
    if model.startswith("timm:"):
        import timm

        return timm.create_model(model[5:], pretrained=False)
    try:
        import torchvision
    except ImportError:
        raise SystemExit(
            "attnzoo viz: the default host network needs torchvision (from a clone: pip install -e '.[integrations]')"
        )
    try:
        return torchvision.models.get_model(model, weights=None)
    except ValueError as e:
        raise SystemExit(f"attnzoo viz: unknown --model {model!r}: {e}")


def load_checkpoint(path: str | Path, unsafe_load_pickle: bool = False) -> Any:
    """``torch.load`` a checkpoint as data (``weights_only=True``: tensors and plain containers, no code runs).

    With ``unsafe_load_pickle=True`` any pickle is accepted, e.g. a whole ``torch.save``'d model: unpickling
    executes code from the file, so only for trusted files.  A file that needs it raises ``SystemExit`` saying so.
    """
    if unsafe_load_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(
            f"attnzoo viz: refusing to unpickle {str(path)!r}: it is not plain tensor data ({first}). Loading it would "
            "execute code from the file; pass --unsafe-load-pickle only if you made it yourself or fully trust it, "
            "or save a state_dict instead (torch.save(model.state_dict(), path))."
        ) from None


def network_size(image_hw: tuple[int, int], size: int, multiple: int = 8) -> tuple[int, int]:
    """(H, W) of the network input: the shorter side ``size``, the image's aspect kept, sides rounded to ``multiple``."""
    h, w = image_hw
    k = size / max(min(h, w), 1)
    return tuple(max(multiple, int(round(n * k / multiple)) * multiple) for n in (h, w))  # type: ignore[return-value]


def load_signal(path: str | Path) -> torch.Tensor:
    """A 1-D signal from a ``.npy`` file or a text file of numbers (whitespace or comma separated)."""
    import numpy as np

    path = Path(path)
    try:
        values = np.load(path) if path.suffix == ".npy" else np.array(path.read_text().replace(",", " ").split(), float)
    except (OSError, ValueError) as e:
        raise SystemExit(f"attnzoo viz: cannot read --signal {str(path)!r}: {e}") from None
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size < 2:
        raise SystemExit(f"attnzoo viz: --signal {str(path)!r} must hold at least 2 numbers, got {values.size}")
    return torch.from_numpy(values.copy())


def _stem_model(name: str, dims: int, in_channels: int, kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """A small untrained host for the module's 1-D / 3-D form: a stride-2 convolution to 32 channels, batch norm
    and ReLU, then the module (``dims=dims``)."""
    import attnzoo

    from .layers import batch_norm_nd, conv_nd

    info = attnzoo.info(name)
    if dims not in info.dims:
        raise SystemExit(f"attnzoo viz: {name} supports dims {info.dims}, not --dims {dims} (see docs/nd.md)")
    layers = {
        "conv": conv_nd(dims)(in_channels, 32, 3, stride=2, padding=1, bias=False),
        "bn": batch_norm_nd(dims)(32),
        "act": torch.nn.ReLU(),
        name: attnzoo.create(name, 32, dims=dims, **kwargs),  # its maps are titled "<name>:<key>"
    }
    return torch.nn.Sequential(OrderedDict(layers))


def _run_nd(args: argparse.Namespace) -> int:
    """``--dims 1`` / ``--dims 3``: the module after a stem, on a signal or on a clip made from the image."""
    import attnzoo

    name, dims = args.module, args.dims
    attnzoo.info(name)  # ValueError with close matches for an unknown module
    torch.manual_seed(0)
    if dims == 1:
        if args.signal is None:
            raise SystemExit("attnzoo viz: --dims 1 needs --signal FILE (numbers, one signal)")
        base: Any = load_signal(args.signal)
        x = ((base - base.mean()) / base.std().clamp_min(1e-12))[None, None]
        stem = Path(args.signal).stem
    else:
        if args.image is None or args.frames < 1:
            raise SystemExit("attnzoo viz: --dims 3 needs --image and --frames >= 1")
        base = load_image(args.image)
        frame = F.interpolate(
            base.permute(2, 0, 1)[None],
            size=network_size((int(base.shape[0]), int(base.shape[1])), args.size),
            mode="bilinear",
            align_corners=False,
        )[0]
        step = max(1, frame.shape[-1] // 64)  # a sideways pan: frame t is the image shifted by (t − D//2)·step
        clip = torch.stack([frame.roll((t - args.frames // 2) * step, -1) for t in range(args.frames)], 1)
        x = ((clip - clip.mean()) / clip.std().clamp_min(1e-12))[None]
        stem = Path(args.image).stem
    model = _stem_model(name, dims, x.shape[1], _module_kwargs(args.arg)).eval()
    with torch.no_grad(), attnzoo.capture_attention(model) as maps:
        model(x)
    if not maps:
        raise SystemExit(f"attnzoo viz: {name} recorded no attention maps")
    output = args.output or f"{stem}-{name}-{dims}d-maps.png"
    path = overlay(base, maps, output, columns=args.columns, panel=args.panel, scale=args.scale, slices=args.slices)
    print(f"wrote {path} ({sum(len(v) for v in maps.values())} maps of {name} dims={dims}, input {tuple(x.shape)})")
    return 0


def run(args: argparse.Namespace) -> int:
    import attnzoo

    from .integrations import insert

    if getattr(args, "dims", 2) != 2:
        return _run_nd(args)
    if args.image is None:
        raise SystemExit("attnzoo viz: --image is required")
    name = args.module
    obj = (
        None
        if args.checkpoint is None
        else load_checkpoint(args.checkpoint, getattr(args, "unsafe_load_pickle", False))
    )
    if isinstance(obj, torch.nn.Module):
        model = obj
    else:
        attnzoo.info(name)  # ValueError with close matches for an unknown module
        model = _host(args.model)
        model, report = insert(model, name, **_module_kwargs(args.arg))
        if isinstance(obj, Mapping):
            state = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj
            result = model.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                print(f"checkpoint: {len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys")
        elif obj is not None:
            raise SystemExit(
                f"attnzoo viz: {args.checkpoint} holds a {type(obj).__name__}, not a model or a state_dict"
            )
        print(f"{args.model}: inserted {len(report)} × {name}")
    model.eval()

    img = load_image(args.image)  # H×W×3 in [0, 1]
    x = img.permute(2, 0, 1)[None]
    x = F.interpolate(
        x, size=network_size((int(img.shape[0]), int(img.shape[1])), args.size), mode="bilinear", align_corners=False
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad(), attnzoo.capture_attention(model) as maps:
        model((x - mean) / std)
    if not maps:
        raise SystemExit("attnzoo viz: the model recorded no attention maps (no attnzoo module with a map ran)")
    output = args.output or f"{Path(args.image).stem}-{name}-maps.png"
    path = overlay(img, maps, output, columns=args.columns, panel=args.panel, scale=getattr(args, "scale", "auto"))
    print(f"wrote {path} ({sum(len(v) for v in maps.values())} maps from {len(maps)} modules)")
    return 0
