"""Input layouts: one :class:`Layout` object per layout, the only place that knows what each layout's inputs
look like (example inputs, bad inputs, channel axis).  Tests, ``attnzoo bench`` and the integrations ask the
layout instead of branching on its name, so a new layout is one new class here.  What a module does to the shape
of its map is not a layout question: the registry's :class:`attnzoo.ShapeRule` answers it
(``attnzoo.info(name).output_size(...)``, ``.same_shape_nchw(...)``).

    nchw      ``forward(x)``, x: B×C×H×W
    pair      ``forward(query_map, context)``: query B×C×H×W, context B×C×⌈H/2⌉×⌈W/2⌉ (another resolution)
    pair_same ``forward(x, y)``: two maps of one shape B×C×H×W fused into one
    pyramid   ``forward([x_0, ..., x_{L-1}])``, x_i: B×C_i×⌈H/2^i⌉×⌈W/2^i⌉, finest first
    multi     ``forward([x_0, ..., x_{n-1}])``, n maps of one shape B×C×H×W fused into one
    tokens    ``forward(x)``, x: B×N×C with N = H·W
    temporal  ``forward(x)``, x: B×C×N×T (N series, T steps; ``size`` = (N, T))

The 1-D and 3-D forms of ``nchw`` modules (``dims=1`` / ``dims=3``; the registry keeps the 2-D layout name and
:func:`layout_for` gives the layout of a rank):

    ncl       ``forward(x)``, x: B×C×L (signals, sequences; ``size`` = (L,))
    ncdhw     ``forward(x)``, x: B×C×D×H×W (clips, volumes; ``size`` = (D, H, W))

Their default sizes keep N = 3136 = 56² positions, so that costs compare across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .registry import LAYOUTS, info

__all__ = [
    "Layout",
    "LAYOUT_OBJECTS",
    "layout_of",
    "layout_for",
    "RANK_LAYOUTS",
    "DEFAULT_SIZE",
    "DEFAULT_CHANNELS",
    "PYRAMID_LEVELS",
    "example_channels",
    "example_inputs",
    "pyramid_sizes",
]

PYRAMID_LEVELS = 4
Rand = Callable[..., torch.Tensor]
Case = tuple[str, tuple]


def pyramid_sizes(size: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """Sizes of a stride-2 pyramid: level i is ⌈H/2^i⌉ × ⌈W/2^i⌉ (what stride-2 convs with padding give)."""
    out, (h, w) = [], size
    for _ in range(levels):
        out.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


def _more_channels(t: torch.Tensor, dim: int) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] += 1
    return torch.randn(shape)


@dataclass(frozen=True)
class Layout:
    """What the inputs of one layout look like.

    Attributes:
        name: the layout's name in :data:`attnzoo.LAYOUTS`.
        text: what the inputs are, in words (for messages and docs).
        default_size: (H, W) of the default input (tokens: N = H·W; temporal: (N series, T steps)).
        default_channels: channel count of the default input (pyramid: of the finest level).
        channel_dim: axis of the channels in each input tensor.
        spatial_rank: the inputs are B×C×(spatial) maps of this rank (2: B×C×H×W, where memory-format, insertion
            and YOLO integrations apply; 1: B×C×L; 3: B×C×D×H×W), or ``None`` (tokens, temporal series).
    """

    name: str
    text: str
    default_size: tuple[int, ...]
    default_channels: int
    channel_dim: int = 1
    spatial_rank: int | None = 2

    @property
    def spatial_4d(self) -> bool:
        """The inputs are B×C×H×W maps (``spatial_rank == 2``)."""
        return self.spatial_rank == 2

    def channels(self, c: int) -> Any:
        """The ``channels`` argument a module of this layout is built with, from a base count."""
        return c

    def example_inputs(self, channels: Any, batch: int, size: tuple[int, ...], rand: Rand) -> tuple:
        h, w = size
        return (rand(batch, channels, h, w),)

    def bad_inputs(self, good: tuple) -> list[Case]:
        """Inputs with a wrong rank or channel count (each must raise a ``ValueError``)."""
        x = good[0]
        return [
            ("wrong rank", (x[0],) + good[1:]),
            ("wrong channels", (_more_channels(x, self.channel_dim),) + good[1:]),
        ]

    def describe(self, channels: Any) -> str:
        return f"B×{channels}×H×W"


class _Pair(Layout):
    #: the context has the query's size (``pair_same``) rather than half of it (``pair``)
    same_size: bool = False

    def example_inputs(self, channels: Any, batch: int, size: tuple[int, ...], rand: Rand) -> tuple:
        h, w = size
        ch, cw = (h, w) if self.same_size else ((h + 1) // 2, (w + 1) // 2)
        return (rand(batch, channels, h, w), rand(batch, channels, ch, cw))

    def bad_inputs(self, good: tuple) -> list[Case]:
        x, ctx = good
        return super().bad_inputs(good) + [
            ("context with wrong channels", (x, _more_channels(ctx, 1))),
            ("3-D context", (x, ctx[0])),
        ]


class _PairSame(_Pair):
    same_size = True

    def bad_inputs(self, good: tuple) -> list[Case]:
        x, y = good
        taller = torch.randn(y.shape[0], y.shape[1], y.shape[2] + 1, y.shape[3])
        return super().bad_inputs(good) + [("maps of different sizes", (x, taller))]


class _Pyramid(Layout):
    def channels(self, c: int) -> Any:
        return [c * 2**i for i in range(PYRAMID_LEVELS)]

    def example_inputs(self, channels: Any, batch: int, size: tuple[int, ...], rand: Rand) -> tuple:
        sizes = pyramid_sizes((size[0], size[1]), len(channels))
        return ([rand(batch, c, sh, sw) for c, (sh, sw) in zip(channels, sizes)],)

    def bad_inputs(self, good: tuple) -> list[Case]:
        levels = good[0]
        wrong_c = [levels[0], _more_channels(levels[1], 1)] + levels[2:]
        return [
            ("one level missing", (levels[:-1],)),
            ("wrong channels at level 1", (wrong_c,)),
            ("levels coarse to fine", (levels[::-1],)),
            ("3-D level", ([lv[0] for lv in levels],)),
        ]

    def describe(self, channels: Any) -> str:
        return "[" + ", ".join(f"B×{c}×H_{i}×W_{i}" for i, c in enumerate(channels)) + "]"


class _Multi(Layout):
    count: int = 2

    def example_inputs(self, channels: Any, batch: int, size: tuple[int, ...], rand: Rand) -> tuple:
        h, w = size
        return ([rand(batch, channels, h, w) for _ in range(self.count)],)

    def bad_inputs(self, good: tuple) -> list[Case]:
        xs = good[0]
        other = torch.randn(xs[0].shape[0], xs[0].shape[1], xs[0].shape[2] + 1, xs[0].shape[3])
        return [
            ("one input missing", (xs[:-1],)),
            ("wrong channels", ([_more_channels(xs[0], 1)] + xs[1:],)),
            ("different shapes", ([xs[0], other] + xs[2:],)),
            ("3-D input", ([t[0] for t in xs],)),
        ]

    def describe(self, channels: Any) -> str:
        return f"[B×{channels}×H×W, ...]"


class _MapNd(Layout):
    """One B×C×L (``ncl``) or B×C×D×H×W (``ncdhw``) map: the 1-D and 3-D forms of ``nchw``."""

    def example_inputs(self, channels: Any, batch: int, size: tuple[int, ...], rand: Rand) -> tuple:
        if len(size) != self.spatial_rank:
            raise ValueError(f"layout {self.name}: size must have {self.spatial_rank} sides, got {tuple(size)}")
        return (rand(batch, channels, *size),)

    def bad_inputs(self, good: tuple) -> list[Case]:
        """Wrong ranks (a map of the next lower and higher rank: never broadcast) and a wrong channel count."""
        x = good[0]
        return [
            ("wrong rank", (x[0],)),
            ("wrong channels", (_more_channels(x, self.channel_dim),)),
            ("a map of one rank less", (x[:, :, 0],)),
            ("a map of one rank more", (x.unsqueeze(2),)),
        ]

    def describe(self, channels: Any) -> str:
        return f"B×{channels}×" + {1: "L", 3: "D×H×W"}[self.spatial_rank or 2]


class _Tokens(Layout):
    def example_inputs(self, channels: Any, batch: int, size: tuple[int, ...], rand: Rand) -> tuple:
        h, w = size
        return (rand(batch, h * w, channels),)

    def describe(self, channels: Any) -> str:
        return f"B×N×{channels}"


class _Temporal(Layout):
    def describe(self, channels: Any) -> str:
        return f"B×{channels}×N×T"


LAYOUT_OBJECTS: dict[str, Layout] = {
    "nchw": Layout("nchw", "one B×C×H×W map", (56, 56), 64),
    "pair": _Pair("pair", "two maps, forward(query_map, context), the context at another resolution", (28, 28), 64),
    "pair_same": _PairSame("pair_same", "two B×C×H×W maps of one shape, forward(x, y)", (28, 28), 64),
    "pyramid": _Pyramid("pyramid", "a feature pyramid, a list of maps finest first", (56, 56), 64),
    "multi": _Multi("multi", "a list of B×C×H×W maps of one shape", (28, 28), 64),
    "tokens": _Tokens("tokens", "B×N×C tokens", (14, 14), 64, channel_dim=-1, spatial_rank=None),
    "temporal": _Temporal("temporal", "a B×C×N×T map of N series over T steps", (8, 24), 32, spatial_rank=None),
    "ncl": _MapNd("ncl", "one B×C×L map (dims=1)", (3136,), 64, spatial_rank=1),
    "ncdhw": _MapNd("ncdhw", "one B×C×D×H×W map (dims=3)", (4, 28, 28), 64, spatial_rank=3),
}
assert set(LAYOUTS) <= set(LAYOUT_OBJECTS), "every registry layout needs a Layout object"

#: The layout of each spatial rank of a registry layout (``nchw`` modules with ``dims=1`` take ``ncl`` maps).
RANK_LAYOUTS: dict[str, dict[int, str]] = {"nchw": {1: "ncl", 2: "nchw", 3: "ncdhw"}}

#: Default (H, W) per layout (tokens: N = H·W = 196; temporal: (N series, T steps); ncl: (L,); ncdhw: (D, H, W)).
DEFAULT_SIZE = {k: v.default_size for k, v in LAYOUT_OBJECTS.items()}
#: Default channel count per layout (pyramid: of the finest level, doubling per level).
DEFAULT_CHANNELS = {k: v.default_channels for k, v in LAYOUT_OBJECTS.items()}


def layout_of(name: str) -> Layout:
    """The :class:`Layout` of the registered module ``name`` (its 2-D layout; :func:`layout_for` for a rank)."""
    return LAYOUT_OBJECTS[info(name).layout]


def layout_for(name: str, dims: int = 2) -> Layout:
    """The :class:`Layout` of the registered module ``name`` built with ``dims=dims``: ``nchw`` becomes ``ncl``
    (1) or ``ncdhw`` (3).  ``ValueError`` for a rank the module does not support."""
    entry = info(name)
    if dims not in entry.dims:
        raise ValueError(f"{entry.name} ({entry.cls.__name__}) supports dims {entry.dims}, got {dims!r}")
    if dims == 2:
        return LAYOUT_OBJECTS[entry.layout]
    ranks = RANK_LAYOUTS.get(entry.layout, {})
    if dims not in ranks:
        raise ValueError(f"layout_for: layout {entry.layout!r} has no {dims}-D form (module {entry.name!r})")
    return LAYOUT_OBJECTS[ranks[dims]]


def example_channels(name: str, channels: int | None = None, dims: int = 2) -> Any:
    """The ``channels`` argument to build ``name`` with: an int, or for pyramids ``[c, 2c, 4c, ...]``."""
    layout = layout_for(name, dims)
    return layout.channels(layout.default_channels if channels is None else channels)


def example_inputs(
    name: str,
    batch: int = 2,
    channels: int | Sequence[int] | None = None,
    size: tuple[int, ...] | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
    dims: int = 2,
) -> tuple:
    """Positional arguments for ``module(*args)`` of the registered module ``name`` (built with ``dims=dims``).

    ``channels`` is what the module was built with (an int, or a list for pyramids); ``size`` is (H, W), or
    (N, T) for the temporal layout, (L,) for ``dims=1`` and (D, H, W) for ``dims=3``.
    """
    layout = layout_for(name, dims)
    if channels is None:
        channels = example_channels(name, dims=dims)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=dtype, device=device, generator=generator)

    return layout.example_inputs(channels, batch, layout.default_size if size is None else size, rand)
