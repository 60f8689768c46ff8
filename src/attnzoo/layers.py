"""Shared primitives: channel arithmetic, activation lookup and input checks.

Input checks are plain functions registered with ``torch.fx.wrap`` so that a module that calls them stays
traceable by ``torch.fx.symbolic_trace`` (the check becomes a graph node that still runs and still raises),
while ``torch.jit.trace``, ``torch.compile`` and ``torch.export`` evaluate them on the concrete shapes.
Modules call them through the module object (``layers.check_nchw``): FX patches this module's globals.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.fx
import torch.nn as nn

__all__ = [
    "make_divisible",
    "get_act",
    "ActLayer",
    "HardSigmoid",
    "HardSwish",
    "check_nchw",
    "check_arg",
]

ActLayer = Union[str, Callable[[], nn.Module], None]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_value`` (default ``divisor``).

    As timm / the MobileNet reference: if rounding would shrink the value by more than ``1 - round_limit``
    the result is bumped by one divisor.  With ``divisor=1`` this is ``max(min_value, round(value))``.
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return int(new_value)


class HardSigmoid(nn.Module):
    """``ReLU6(x + 3) / 6`` as written in the Coordinate Attention / MobileNetV3 code (equals ``F.hardsigmoid``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.hardsigmoid(x)


class HardSwish(nn.Module):
    """``x * ReLU6(x + 3) / 6`` (equals ``F.hardswish``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.hardswish(x)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "hard_sigmoid": HardSigmoid,
    "hard_swish": HardSwish,
    "identity": nn.Identity,
}


def get_act(act: ActLayer, owner: str = "attnzoo") -> nn.Module:
    """Build an activation from a name (``"relu"``, ``"gelu"``, ``"hard_swish"``, ...), a class/factory or ``None``."""
    if act is None:
        return nn.Identity()
    if isinstance(act, str):
        key = act.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"{owner}: unknown activation {act!r}; expected one of {sorted(_ACTIVATIONS)}")
        return _ACTIVATIONS[key]()
    if isinstance(act, nn.Module):
        raise ValueError(f"{owner}: pass an activation name or class, not an instance ({act!r}); it would be shared")
    if callable(act):
        return act()
    raise ValueError(f"{owner}: activation must be a name, a class or None, got {act!r}")


def check_arg(ok: bool, owner: str, what: str, expected: str, got: object) -> None:
    """Raise a ``ValueError`` naming the module, the argument, what was expected and what was received."""
    if not ok:
        raise ValueError(f"{owner}: {what} must be {expected}, got {got!r}")


def odd_kernel(k: int, owner: str, what: str = "kernel_size") -> int:
    check_arg(isinstance(k, int) and k >= 1 and k % 2 == 1, owner, what, "a positive odd integer", k)
    return k


def positive_int(v: int, owner: str, what: str) -> int:
    check_arg(isinstance(v, int) and not isinstance(v, bool) and v >= 1, owner, what, "a positive integer", v)
    return v


def inplace_ok() -> bool:
    """True when a module may overwrite its own intermediate in place: no autograd and no ``torch.jit.trace``
    (a trace must record the same graph whatever the grad mode of its sanity re-run)."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing()


def max_over(x: torch.Tensor, dims: int | tuple[int, ...]) -> torch.Tensor:
    """Maximum over ``dims`` (dropped).  Without autograd ``amax`` (the fastest forward); with autograd a
    max with indices, whose backward scatters through the indices where ``amax``'s builds full-size equality
    masks (CBAM fwd+bwd 0.42 – 0.76× timm's in benchmarks/results/peers.md).  Same values either way."""
    if inplace_ok():
        return x.amax(dims)
    if isinstance(dims, int):
        return x.max(dims).values
    if dims != (2, 3):
        raise ValueError(f"max_over: dims must be one dimension or (2, 3) (the spatial dims of B×C×H×W), got {dims}")
    return nn.functional.adaptive_max_pool2d(x, 1).flatten(1)


@torch.fx.wrap
def check_nchw(x: torch.Tensor, channels: int, owner: str) -> torch.Tensor:
    """Check that ``x`` is a B×C×H×W tensor with ``channels`` channels; return it unchanged."""
    if torch.jit.is_tracing():  # shapes are baked into a trace; the check ran when the trace was recorded
        return x
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner}: expected a tensor of shape B×{channels}×H×W, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{owner}: expected a 4-D input B×{channels}×H×W, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{owner}: expected {channels} input channels (B×{channels}×H×W), got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{owner}: expected non-empty batch and spatial sizes, got shape {tuple(x.shape)}")
    return x


@torch.fx.wrap
def check_dims(x: torch.Tensor, ndim: int, channel_dim: int, channels: int, owner: str, layout: str) -> torch.Tensor:
    """Generic rank + channel check for the token (B×N×C) and temporal (B×C×N×T) layouts."""
    if torch.jit.is_tracing():
        return x
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner}: expected a tensor of layout {layout}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{owner}: expected a {ndim}-D input {layout}, got shape {tuple(x.shape)}")
    if x.shape[channel_dim] != channels:
        raise ValueError(
            f"{owner}: expected {channels} channels at dim {channel_dim} ({layout}), got {x.shape[channel_dim]} (shape {tuple(x.shape)})"
        )
    if x.numel() == 0:
        raise ValueError(f"{owner}: expected a non-empty input, got shape {tuple(x.shape)}")
    return x


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair of ints, got {v!r}")
    return (int(v[0]), int(v[1]))



@torch.fx.wrap
def fused_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float | None, dropout_p: float
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` arranged so PyTorch picks its fused kernel (one FX leaf).

    The CPU flash kernel needs stride-1 last dimensions and one head width for q, k and v; otherwise SDPA
    silently takes the math path that builds the Nq×Nk matrix.  Narrower sides are zero-padded: zero
    columns in q and k add nothing to q·k, zero columns in v give output columns that are cut off.
    """
    d, dv = q.shape[-1], v.shape[-1]
    if scale is None:
        scale = d**-0.5
    if d < dv:
        q, k = nn.functional.pad(q, (0, dv - d)), nn.functional.pad(k, (0, dv - d))
    elif dv < d:
        v = nn.functional.pad(v, (0, d - dv))
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return out[..., :dv] if dv < d else out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    module: nn.Module | None = None,
    key: str = "attn",
) -> torch.Tensor:
    """``softmax(q kᵀ · scale + mask) v`` for q: B×h×Nq×d, k: B×h×Nk×d, v: B×h×Nk×dv (scale defaults to d^-0.5).

    Runs :func:`fused_attention` (SDPA's fused kernel, memory linear in N).  ``mask`` is additive (float) or
    boolean with True = keep, as SDPA.  When ``module`` is inside ``attnzoo.capture_attention``, the
    probabilities are computed explicitly and recorded under ``key`` (the only case that builds the N×N
    matrix; half precision is upcast to float32 for the softmax).
    """
    from .capture import check_map_size, is_capturing, record

    if module is None or not is_capturing(module):
        return fused_attention(q, k, v, mask, scale, dropout_p)
    check_map_size(module, (*q.shape[:-1], k.shape[-2]), key)
    s = scale if scale is not None else q.shape[-1] ** -0.5
    logits = q @ k.transpose(-2, -1)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logits = logits * s
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    probs = logits.softmax(-1).to(v.dtype)
    record(module, key, probs)
    probs = nn.functional.dropout(probs, dropout_p, training=dropout_p > 0)
    return probs @ v
