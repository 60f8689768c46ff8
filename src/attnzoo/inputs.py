"""Example inputs for every layout: one place used by the contract tests and by ``attnzoo bench``.

Layouts (SPEC section 2):
    nchw      ``forward(x)``, x: B×C×H×W
    pair      ``forward(query_map, context)``: query B×C×H×W, context B×C×⌈H/2⌉×⌈W/2⌉ (another resolution)
    pyramid   ``forward([x_0, ..., x_{L-1}])``, x_i: B×C_i×⌈H/2^i⌉×⌈W/2^i⌉, finest first
    tokens    ``forward(x)``, x: B×N×C with N = H·W
    temporal  ``forward(x)``, x: B×C×N×T (N series, T steps; ``size`` = (N, T))
"""

from __future__ import annotations

from typing import Sequence

import torch

from .registry import info

__all__ = ["DEFAULT_SIZE", "DEFAULT_CHANNELS", "example_channels", "example_inputs", "pyramid_sizes"]

#: Default (H, W) per layout (tokens: N = H·W = 196; temporal: (N series, T steps)).
DEFAULT_SIZE = {"nchw": (56, 56), "pair": (28, 28), "pyramid": (56, 56), "tokens": (14, 14), "temporal": (8, 24)}
#: Default channel count per layout (pyramid: of the finest level, doubling per level).
DEFAULT_CHANNELS = {"nchw": 64, "pair": 64, "pyramid": 64, "tokens": 64, "temporal": 32}
PYRAMID_LEVELS = 4


def pyramid_sizes(size: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """Sizes of a stride-2 pyramid: level i is ⌈H/2^i⌉ × ⌈W/2^i⌉ (what stride-2 convs with padding give)."""
    out, (h, w) = [], size
    for _ in range(levels):
        out.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


def example_channels(name: str, channels: int | None = None, levels: int = PYRAMID_LEVELS) -> int | list[int]:
    """The ``channels`` argument to build ``name`` with: an int, or for pyramids ``[c, 2c, 4c, ...]``."""
    layout = info(name).layout
    c = DEFAULT_CHANNELS[layout] if channels is None else channels
    return [c * 2**i for i in range(levels)] if layout == "pyramid" else c


def example_inputs(
    name: str,
    batch: int = 2,
    channels: int | Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple:
    """Positional arguments for ``module(*args)`` of the registered module ``name``.

    ``channels`` is what the module was built with (an int, or a list for pyramids); ``size`` is (H, W), or
    (N, T) for the temporal layout.
    """
    layout = info(name).layout
    if channels is None:
        channels = example_channels(name)
    h, w = DEFAULT_SIZE[layout] if size is None else size

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=dtype, device=device, generator=generator)

    if layout == "nchw":
        return (rand(batch, channels, h, w),)
    if layout == "pair":
        return (rand(batch, channels, h, w), rand(batch, channels, (h + 1) // 2, (w + 1) // 2))
    if layout == "pyramid":
        sizes = pyramid_sizes((h, w), len(channels))
        return ([rand(batch, c, sh, sw) for c, (sh, sw) in zip(channels, sizes)],)
    if layout == "tokens":
        return (rand(batch, h * w, channels),)
    if layout == "temporal":
        return (rand(batch, channels, h, w),)
    raise ValueError(f"example_inputs: unknown layout {layout!r}")
