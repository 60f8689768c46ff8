"""Utilities for testing modules and their exports: perturbed weights and flat tensor lists.

``randomize`` matters for any equivalence check (export, runtime, reference): many attnzoo blocks are the
identity at initialisation (zero-init gamma, BN or GN), and an identity block matches any broken export.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

__all__ = ["randomize", "flatten", "tensors_of", "FlatIO"]


@torch.no_grad()
def randomize(module: nn.Module, seed: int = 1, scale: float = 0.1) -> nn.Module:
    """Perturb every parameter and BN statistic, so zero-initialised (identity) blocks exercise their whole path."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            assert m.running_var is not None
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g).to(m.running_mean.dtype))
            m.running_var.copy_((1 + 0.5 * torch.rand(m.running_var.shape, generator=g)).to(m.running_var.dtype))
    return module


def flatten(out: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) output, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flatten(o)]
    raise TypeError(f"unexpected output type {type(out)}")


def tensors_of(args: tuple) -> tuple[list[torch.Tensor], Callable[[list[torch.Tensor]], tuple]]:
    """Split positional args into their tensors and a function that rebuilds the args from new tensors."""
    flat = flatten(list(args))

    def rebuild(new: list[torch.Tensor]) -> tuple:
        it = iter(new)

        def sub(a: Any) -> Any:
            if isinstance(a, torch.Tensor):
                return next(it)
            if isinstance(a, list):
                return [sub(x) for x in a]
            if isinstance(a, tuple):
                return tuple(sub(x) for x in a)
            return a

        return tuple(sub(a) for a in args)

    return flat, rebuild


class FlatIO(nn.Module):
    """``module`` with flat tensor inputs and outputs, for exporters that take no lists (pyramids, ``multi``).

    ``FlatIO(m, args)(*flat)`` equals ``flatten(m(*args))`` where ``flat`` are the tensors of ``args`` in order.
    """

    def __init__(self, module: nn.Module, args: tuple) -> None:
        super().__init__()
        self.module = module
        self._rebuild = tensors_of(args)[1]

    def forward(self, *tensors: torch.Tensor) -> Any:
        outs = flatten(self.module(*self._rebuild(list(tensors))))
        return outs[0] if len(outs) == 1 else tuple(outs)
