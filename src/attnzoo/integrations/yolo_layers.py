"""The layers of attnzoo's YOLO YAML rows: what kind of row a registered module is (:func:`row_kind`), the
``Select``, ``ModuleRow`` and ``PairInputs`` rows and the hidden channel recorder used by the ``parse_model`` wrapper
of :mod:`attnzoo.integrations.yolo_rows`, and :func:`yaml_class` (what a YAML name builds).

ultralytics is AGPL-3.0: this file contains none of its code.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
import torch.nn as nn

from .yolo_hosts import _HOSTS

__all__ = ["row_kind", "Select", "ModuleRow", "PairInputs", "ROW_ATTRIBUTES", "row_attribute_clashes", "yaml_class"]

#: the attributes Ultralytics' ``parse_model`` (and attnzoo's row builder) set on every row module: its index,
#: its ``from``, its type name and its parameter count (``BaseModel``'s forward reads ``f`` and ``i``)
ROW_ATTRIBUTES = ("i", "f", "type", "np")


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


def row_attribute_clashes(module: nn.Module) -> list[str]:
    """The :data:`ROW_ATTRIBUTES` that ``module`` already uses for itself: a child module, parameter or buffer
    (assigning the row's int raises ``TypeError``), an instance attribute (it would be overwritten) or a class
    attribute other than ``nn.Module``'s (``type`` is ``nn.Module.type``, which every row shadows)."""
    own = (module._modules, module._parameters, module._buffers, module.__dict__)
    return [
        a
        for a in ROW_ATTRIBUTES
        if any(a in d for d in own) or getattr(type(module), a, None) is not getattr(nn.Module, a, None)
    ]


class ModuleRow(nn.Module):
    """A YAML row holding ``module`` (its forward is the module's): the row attributes ``i``, ``f``, ``type``,
    ``np`` go on this holder, so a module that uses one of those names itself (focal_modulation's child ``f``,
    FocalNet's name) is usable as a row with its own state-dict keys under ``module.``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def hold(module: nn.Module) -> nn.Module:
    """``module`` itself, or a :class:`ModuleRow` holding it when it uses a row attribute's name."""
    return ModuleRow(module) if row_attribute_clashes(module) else module


@functools.cache
def _clashes(cls: type) -> bool:
    """Whether ``cls`` built with 64 channels and its defaults uses a row attribute's name (False if it cannot be
    built so: :func:`hold` still guards the rows attnzoo builds itself)."""
    try:
        module = cls(64)
    except Exception:
        return False
    return bool(row_attribute_clashes(module))


def yaml_class(entry: Any) -> type:
    """What :func:`attnzoo.integrations.ultralytics.register` puts under the YAML name of the registered module
    ``entry``: its class, or, when the class's instances use a row attribute's name (:data:`ROW_ATTRIBUTES`), a
    stand-in class that ``parse_model`` calls like the module's (same arguments, same ``module.qualname`` in the
    layer table) and that returns a :class:`ModuleRow` holding the module."""
    cls = entry.cls
    return _held_class(cls) if _clashes(cls) else cls


@functools.cache
def _held_class(cls: type) -> type:
    def __new__(_: type, *args: Any, **kwargs: Any) -> nn.Module:  # not a ModuleRow subclass instance: no __init__
        return hold(cls(*args, **kwargs))

    doc = f"``{cls.__name__}(...)`` held in a :class:`ModuleRow` (its instances use a row attribute's name)."
    namespace = {"__new__": __new__, "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": doc}
    return type(cls.__name__, (ModuleRow,), namespace)


class PairInputs(ModuleRow):
    """Runs a ``pair`` module (``forward(x, context)``) on the list a YAML row with a list ``from`` receives:
    ``module(x0, x1)`` for two inputs, ``module(x0, [x1, x2, ...])`` for more."""

    def forward(self, x: Sequence[torch.Tensor]) -> Any:
        return self.module(x[0], x[1]) if len(x) == 2 else self.module(x[0], list(x[1:]))


class _ChannelRecorder(nn.Module):
    """The hidden last row ``[-1, 1, AttnzooChannelRecorder, [ch]]``: parse_model hands it its channel list."""

    def __init__(self, ch: Any = None) -> None:
        super().__init__()
        self.ch = ch

    def forward(self, x: Any) -> Any:
        return x
