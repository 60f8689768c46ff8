"""Pluggable insides of host blocks (C2PSA, A2C2f, AIFI, HS-FPN): ``attn=`` / ``gate=`` arguments.

A host keeps its residuals, norms and feed-forward layers and takes its token mixer (or gate) from the user:
``None`` (the paper's), a registered module name (built at the host's inner width), an ``nn.Module`` (copied
per block, so repeated blocks never share weights), or a factory ``channels -> nn.Module``.
"""

from __future__ import annotations

import copy
from typing import Callable, Union

import torch
import torch.nn as nn

from ..tracing import fx_leaf, is_tracing

__all__ = ["Inner", "build_inner", "check_inner_output"]

#: What an ``attn=`` / ``gate=`` argument accepts.
Inner = Union[str, nn.Module, Callable[[int], nn.Module], None]


def build_inner(spec: Inner, channels: int, host: str, role: str, default: Callable[[], nn.Module]) -> nn.Module:
    """The inner module of a host block: ``default()`` for ``None``, else what ``spec`` names (see module doc).

    A registry name must be a module that maps B×C×H×W to the same shape (``ValueError`` naming the host and the
    reason otherwise); errors of the inner module's own constructor are re-raised with the host's inner width.
    """
    if spec is None:
        return default()
    if isinstance(spec, str):
        from ..registry import create, info

        entry = info(spec)  # ValueError with close matches for an unknown name
        entry.require_same_shape_nchw(f"{host}: {role}={spec!r}", channels)
        try:
            return create(spec, channels)
        except ValueError as err:
            raise ValueError(f"{host}: {role}={spec!r} at the block's inner width {channels}: {err}") from None
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    if callable(spec):
        module = spec(channels)
        if not isinstance(module, nn.Module):
            raise ValueError(f"{host}: {role} factory must return an nn.Module for {channels} channels, got {module!r}")
        return module
    raise ValueError(f"{host}: {role} must be None, a registered module name, an nn.Module or a factory, got {spec!r}")


@fx_leaf
def check_inner_output(y: torch.Tensor, x: torch.Tensor, host: str, role: str) -> torch.Tensor:
    """``y`` (the inner module's output) must have the shape of its input ``x``."""
    if is_tracing():
        return y
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{host}: the {role} module must return its input's shape {tuple(x.shape)}, got {got}")
    return y
