"""Attention-map capture: ``with attnzoo.capture_attention(model) as maps: model(x)``.

Modules record maps through :func:`record`; it costs nothing when no capture is active (one attribute
lookup), and attention modules only build an explicit N×N probability matrix when :func:`is_capturing`
says so — otherwise they stay on the fused ``scaled_dot_product_attention`` path.

What each module records (B batch, C channels, H×W the module's input size, N = H·W):

- channel gates (``se``, ``eca``, ``cbam_channel``, CBAM's ``channel``): ``gate`` B×C×1×1;
- spatial gates (``cbam_spatial``, CBAM's ``spatial``): B×1×H×W; ``triplet``'s ``gate``: B×C×H×W;
- ``coord``: ``gate_h`` B×C×H×1 and ``gate_w`` B×C×1×W; ``sk``: ``branch_weights`` B×M×C×1×1 (M branches);
- dot-product attention (through ``layers.attention``): probabilities B'×heads×N_q×N_k (B' = B, or B times the
  number of windows for windowed attention), rows summing to 1.  Other modules document their keys.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

__all__ = [
    "capture_attention",
    "record",
    "is_capturing",
    "capture_target",
    "check_map_size",
    "CapturedMaps",
    "DEFAULT_MAX_ELEMENTS",
]

_ATTR = "_attnzoo_maps"
_LIMIT = "_attnzoo_max_elements"
#: Largest explicit attention map a capture may build by default: 2**28 elements (1 GiB in float32), e.g.
#: 2 images × 8 heads × 64² positions attending to 64² positions.
DEFAULT_MAX_ELEMENTS = 1 << 28


def is_capturing(module: nn.Module) -> bool:
    """True while ``module`` is inside an active :func:`capture_attention`."""
    return getattr(module, _ATTR, None) is not None


def capture_target(module: nn.Module) -> nn.Module | None:
    """``module`` while it is capturing, else ``None``: what stateless kernels take to record maps."""
    return module if is_capturing(module) else None


def record(module: nn.Module | None, key: str, value: torch.Tensor) -> None:
    """Store ``value`` (detached) as map ``key`` of ``module`` if a capture is active; otherwise do nothing."""
    maps = getattr(module, _ATTR, None)
    if maps is not None:
        maps[key] = value.detach()


def check_map_size(module: nn.Module, shape: tuple[int, ...], key: str) -> None:
    """Raise ``ValueError`` before a capturing ``module`` builds an explicit map of ``shape`` that exceeds the
    capture's ``max_elements`` (capturing is the only time N×N maps are materialised)."""
    limit = getattr(module, _LIMIT, None)
    numel = 1
    for n in shape:
        numel *= int(n)
    if limit is not None and numel > limit:
        dims = "×".join(str(int(n)) for n in shape)
        raise ValueError(
            f"capture_attention: map {key!r} of {type(module).__name__} would have {dims} = {numel:,} elements "
            f"({numel * 4 / 2**30:.1f} GiB in float32), above max_elements={limit:,}; capture on a smaller input "
            f"or pass capture_attention(model, max_elements=...) explicitly"
        )


class CapturedMaps(dict):
    """``{qualified module name: {key: map}}`` (a plain dict) plus ``input_sizes``: ``{name: (H, W)}`` (the spatial sizes, ``(L,)`` or ``(D, H, W)`` for 1-D and 3-D modules) of the
    first input each module saw in the last forward, which :func:`attnzoo.viz.overlay` uses to place maps on
    the image."""

    def __init__(self) -> None:
        super().__init__()
        self.input_sizes: dict[str, tuple[int, ...]] = {}


@contextmanager
def capture_attention(model: nn.Module, max_elements: int | None = DEFAULT_MAX_ELEMENTS) -> Iterator[CapturedMaps]:
    """Record the attention / gate maps of every attnzoo module inside ``model`` during the forwards in the block.

    Yields a dict from each module's qualified name (``""`` for ``model`` itself) to its maps, e.g.
    ``{"layer1.0.se": {"gate": B×C×1×1}}`` (see this module's docstring for the shapes).  Outputs are
    unchanged (up to float rounding where attention switches from the fused kernel to explicit
    probabilities).  Only the last forward's maps are kept.  Modules with nothing recorded are dropped when
    the block exits.

    Capturing makes dot-product attention build its full probability matrix (B×heads×N_q×N_k), so a map
    larger than ``max_elements`` (default 2**28, 1 GiB in float32) raises a ``ValueError`` naming the module
    and the size before anything is allocated; ``max_elements=None`` removes the limit.
    """
    if max_elements is not None and (
        not isinstance(max_elements, int) or isinstance(max_elements, bool) or max_elements < 1
    ):
        raise ValueError(f"capture_attention: max_elements must be a positive integer or None, got {max_elements!r}")
    from .layers.base import AttnModule
    from .registry import classes as registered_classes

    # registered modules, and attnzoo's inner blocks (e.g. the default attention inside a host block)
    classes = tuple(set(registered_classes().values()) | {AttnModule})
    found = CapturedMaps()
    modules: list[tuple[str, nn.Module]] = [(n, m) for n, m in model.named_modules() if isinstance(m, classes)]  # type: ignore[misc]
    handles = []
    for name, m in modules:
        found[name] = {}
        object.__setattr__(m, _ATTR, found[name])
        object.__setattr__(m, _LIMIT, max_elements)
        handles.append(m.register_forward_pre_hook(_size_hook(found.input_sizes, name)))
    try:
        yield found
    finally:
        for h in handles:
            h.remove()
        for name, m in modules:
            for attr in (_ATTR, _LIMIT):
                if attr in m.__dict__:
                    object.__delattr__(m, attr)
            if not found.get(name):
                found.pop(name, None)


def _size_hook(sizes: dict[str, tuple[int, ...]], name: str):
    def hook(module: nn.Module, args: tuple) -> None:
        # a map of the module's spatial rank (B×C×L, B×C×H×W, B×C×D×H×W): its spatial sizes shape[2:]
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == getattr(module, "dims", 2) + 2:
            sizes[name] = tuple(int(s) for s in args[0].shape[2:])

    return hook
