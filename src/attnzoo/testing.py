"""Utilities for testing modules and their exports: perturbed weights and flat tensor lists.

``randomize`` matters for any equivalence check (export, runtime, reference): many attnzoo blocks are the
identity at initialisation (zero-init gamma, BN or GN), and an identity block matches any broken export.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

__all__ = ["randomize", "flatten", "tensors_of", "FlatIO", "slice_to"]


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


@torch.no_grad()
def slice_to(module: nn.Module, dims: int) -> nn.Module:
    """The lower-rank twin of an N-d module: the same class and arguments with ``dims=dims``, holding ``module``'s
    weights sliced at the centre of the dropped leading spatial axes (D of a 3-D module, H of a 2-D one).

    The rank-reduction oracle: a ``dims=3`` module on a depth-1 input equals ``slice_to(m, 2)`` on the 2-D map
    (with zero padding only the centre slice of a kernel sees data), and ``dims=2`` on a 1×L map equals
    ``slice_to(m, 1)`` on the L signal.  Per-axis arguments (a tuple of one entry per axis, as
    ``kernel_size=(3, 7, 7)``) keep their trailing entries; a weight whose shape differs between the two ranks
    must have the dropped axes just before the kept trailing spatial ones (conv kernels, per-axis tables).
    """
    source = int(getattr(module, "dims", 2))
    args = getattr(module, "_init_args", None)
    if args is None or not isinstance(dims, int) or not 1 <= dims <= source:
        raise ValueError(
            f"slice_to: expected a module built with dims= (it records its arguments) and a rank 1 ≤ dims ≤ "
            f"{source}, got {type(module).__name__} and dims={dims!r}"
        )
    drop = source - dims
    kwargs = {
        k: (v[drop:] if isinstance(v, tuple) and len(v) == source and k != "channels" else v) for k, v in args.items()
    }
    kwargs["dims"] = dims
    twin = type(module)(kwargs.pop("channels"), **kwargs)
    weights = module.state_dict()
    dtype = next((t.dtype for t in weights.values() if t.is_floating_point()), None)
    if dtype is not None:  # load_state_dict copies into the twin's own dtype
        twin.to(dtype)
    sliced = {}
    for key, target in twin.state_dict().items():
        w = weights[key]
        if w.shape != target.shape:
            lead = w.dim() - source  # the axes before the spatial ones (out, in channels; heads)
            if lead < 0 or w.dim() - target.dim() != drop:
                raise ValueError(f"slice_to: cannot slice {key} of shape {tuple(w.shape)} to {tuple(target.shape)}")
            w = w[(slice(None),) * lead + tuple(n // 2 for n in w.shape[lead : lead + drop])]
        if w.shape != target.shape:
            raise ValueError(
                f"slice_to: {key} of shape {tuple(weights[key].shape)} does not slice to {tuple(target.shape)}"
            )
        sliced[key] = w
    twin.load_state_dict(sliced)
    return twin.train(module.training)
