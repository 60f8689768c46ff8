"""Shape rules: what a registered module does to the shape of its main map (:class:`ShapeRule`, the ready-made
rules :data:`SAME_SHAPE` and :data:`OUT_CHANNELS`, the size rules :func:`upsampled` and :func:`strided`).

Public through :mod:`attnzoo.registry` (``attnzoo.registry.ShapeRule``, ``attnzoo.ShapeRule``), which declares
them in its ``__all__``; this module only holds them so that the registry stays one subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Args", "SizeRule", "ShapeRule", "SAME_SHAPE", "OUT_CHANNELS", "upsampled", "strided"]

Args = Mapping[str, Any]
SizeRule = Callable[[int, int, Args], tuple[int, int]]


@dataclass(frozen=True)
class ShapeRule:
    """What a module does to the shape of its main map, evaluated for given constructor arguments.

    The main map is the input of the ``nchw``, ``tokens`` and ``temporal`` layouts, the query map of ``pair``,
    the first map of ``pair_same`` and every map of ``multi`` (pyramids declare per-level shapes with
    ``output_shape`` instead).  The rules take ``args``: every constructor argument by name with the defaults
    applied, ``args["channels"]`` being the input channels (see :meth:`attnzoo.registry.ModuleInfo.arguments`).

    Attributes:
        channels: output channels: the name of the argument that gives them (its value ``None`` means the input
            channels, e.g. ``"out_channels"``), or a function ``f(args) -> int``; ``None``: the input channels.
        size: output (H, W) — (N, T) for the temporal layout —: ``f(h, w, args) -> (h', w')``; ``None``: the
            input size.
        text: how the shape changes, in words, for messages and docs ("upsamples H×W by `scale`").
    """

    channels: str | Callable[[Args], int] | None = None
    size: SizeRule | None = None
    text: str = ""

    @property
    def changes(self) -> bool:
        """Whether some arguments change the shape (``False`` for :data:`SAME_SHAPE`)."""
        return self.channels is not None or self.size is not None

    def out_channels(self, args: Args) -> int:
        if self.channels is None:
            return int(args["channels"])
        if isinstance(self.channels, str):
            value = args[self.channels]
            return int(args["channels"] if value is None else value)
        return int(self.channels(args))

    def out_size(self, h: int, w: int, args: Args) -> tuple[int, int]:
        if self.size is None:
            return (h, w)
        oh, ow = self.size(h, w, args)
        return (int(oh), int(ow))


#: The rule of a module that keeps the shape of its main map whatever its arguments (the default).
SAME_SHAPE = ShapeRule()
#: The rule of a module that keeps H×W and outputs its argument ``out_channels`` (``None``: the input channels).
OUT_CHANNELS = ShapeRule("out_channels", text="C → `out_channels`")


def upsampled(factor: str) -> SizeRule:
    """Size rule ``(s·H, s·W)`` with ``s`` the argument ``factor``."""
    return lambda h, w, a: (h * a[factor], w * a[factor])


def strided(factor: str) -> SizeRule:
    """Size rule ``(⌈H/s⌉, ⌈W/s⌉)`` with ``s`` the argument ``factor`` (a stride-``s`` layer with "same" padding)."""
    return lambda h, w, a: (-(-h // a[factor]), -(-w // a[factor]))
