"""The layers of attnzoo's YOLO YAML rows: what kind of row a registered module is (:func:`row_kind`), and the
``Select`` and ``PairInputs`` rows and the hidden channel recorder used by the ``parse_model`` wrapper of
:mod:`attnzoo.integrations.yolo_rows`.

ultralytics is AGPL-3.0: this file contains none of its code.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from .yolo_hosts import _HOSTS

__all__ = ["row_kind", "Select", "PairInputs"]


def row_kind(entry: Any) -> str:
    """How the registered module ``entry`` (a :class:`attnzoo.ModuleInfo`, or a name) is used in a YOLO YAML.

    ``"nchw"`` (one map in, a map of the same shape out for every argument: args passed through unchanged,
    ``c2`` token), ``"multi"`` or ``"pair"`` (list ``from``, one map out; layouts ``pair`` and ``pair_same``),
    ``"resample"`` (one map in, out a map whose channels or size the module's :class:`attnzoo.ShapeRule` may
    change: upsamplers, ``spd_conv``, ``sk``, ``dcnv2``, modules with ``out_channels``; channels filled in),
    ``"pyramid"`` (list ``from``, finest first; outputs a list picked by :class:`Select`, or one map),
    ``"host"`` (a host block written like Ultralytics' own row: PSA, C2PSA, A2C2f, AIFI), or
    ``""`` (not usable in a YAML: ``tokens`` / ``temporal`` layouts).
    """
    if isinstance(entry, str):
        from ..registry import info

        entry = info(entry)
    if entry.name in _HOSTS:
        return "host"
    # the layout says what the row's inputs are; the shape rule what the module does to them
    kind = {"multi": "multi", "pair": "pair", "pair_same": "pair", "pyramid": "pyramid", "nchw": "nchw"}
    if kind.get(entry.layout) == "nchw" and entry.shape.changes:
        return "resample"
    return kind.get(entry.layout, "")


class Select(nn.Module):
    """YAML helper ``[row, 1, Select, [i]]``: passes on element ``i`` of that row's list / tuple output.

    Used after a ``pyramid`` neck (``[[4, 6, 10], 1, PathAggregationNetwork, [256]]`` outputs the list of its
    levels, finest first) to feed one level to later rows and to ``Detect``; the row gets level ``i``'s
    channels.  Negative ``i`` counts from the coarsest level.
    """

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"{type(self).__name__}: index must be an int (the level to pick), got {index!r}")
        self.index = index

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(x, (list, tuple)):
            owner = type(self).__name__
            raise ValueError(f"{owner}: expected the list output of a pyramid row, got {type(x).__name__}")
        return x[self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class PairInputs(nn.Module):
    """Runs a ``pair`` module (``forward(x, context)``) on the list a YAML row with a list ``from`` receives:
    ``module(x0, x1)`` for two inputs, ``module(x0, [x1, x2, ...])`` for more."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Sequence[torch.Tensor]) -> Any:
        return self.module(x[0], x[1]) if len(x) == 2 else self.module(x[0], list(x[1:]))


class _ChannelRecorder(nn.Module):
    """The hidden last row ``[-1, 1, AttnzooChannelRecorder, [ch]]``: parse_model hands it its channel list."""

    def __init__(self, ch: Any = None) -> None:
        super().__init__()
        self.ch = ch

    def forward(self, x: Any) -> Any:
        return x
