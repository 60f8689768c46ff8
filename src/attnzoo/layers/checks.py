"""Argument and input checks with messages users can act on: ``Owner: what must be expected, got value``.

Input checks are :func:`fx_leaf` functions: under ``torch.fx.symbolic_trace`` they become one graph node (that
still runs and still raises), however they were imported; ``torch.jit.trace`` records them as no-ops (the
shapes are baked into the trace), and ``torch.compile`` / ``torch.export`` evaluate them on the real shapes.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from ..tracing import fx_leaf, is_tracing

__all__ = [
    "fx_leaf",
    "check_arg",
    "check_choice",
    "positive_int",
    "non_negative_int",
    "positive_number",
    "odd_kernel",
    "check_heads",
    "resolve_dim_head",
    "check_dropout",
    "output_width",
    "AttentionArgs",
    "check_attention_args",
    "check_nchw",
    "check_spatial",
    "check_rank",
    "check_dims",
    "check_same_shape",
    "check_context",
    "check_window_args",
    "SizeBound",
    "KERNEL_BOUND",
    "TABLE_BOUND",
    "DEPTH_BOUND",
    "RATIO_BOUND",
    "check_size_bounds",
    "describe_size_bounds",
]


def check_arg(ok: bool, owner: str, what: str, expected: str, got: object) -> None:
    """Raise a ``ValueError`` naming the module, the argument, what was expected and what was received."""
    if not ok:
        raise ValueError(f"{owner}: {what} must be {expected}, got {got!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_choice(value: object, choices: Sequence[object], owner: str, what: str, expected: str = "") -> Any:
    """``value`` if it is one of ``choices`` (a ``ValueError`` listing them otherwise, or saying ``expected``
    when given).  A bool is not taken for the integer 1 or 0."""
    ok = isinstance(value, (str, int, type(None))) and value in choices
    if isinstance(value, bool):
        ok = any(c is value for c in choices)
    check_arg(ok, owner, what, expected or "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def positive_int(v: object, owner: str, what: str) -> int:
    check_arg(_is_int(v) and v >= 1, owner, what, "a positive integer", v)  # type: ignore[operator]
    return int(v)  # type: ignore[call-overload]


def width_or(v: object, default: int, owner: str, what: str) -> int:
    """``default`` when ``v`` is None, else ``v`` checked as a positive integer (``context_channels``,
    ``out_channels`` and other optional widths)."""
    return default if v is None else positive_int(v, owner, what)


def non_negative_int(v: object, owner: str, what: str) -> int:
    check_arg(_is_int(v) and v >= 0, owner, what, "a non-negative integer", v)  # type: ignore[operator]
    return int(v)  # type: ignore[call-overload]


def positive_number(v: object, owner: str, what: str) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and v != float("inf")
    check_arg(ok, owner, what, "a positive finite number", v)
    return v  # type: ignore[return-value]


def odd_kernel(k: object, owner: str, what: str = "kernel_size") -> int:
    check_arg(_is_int(k) and k >= 1 and k % 2 == 1, owner, what, "a positive odd integer", k)  # type: ignore[operator]
    return int(k)  # type: ignore[call-overload]


def check_heads(
    heads: object, width: int, owner: str, what: str = "channels", note: str = "", *, paren: bool = False
) -> int:
    """``heads`` must be a positive integer dividing ``width`` (the argument or expression ``what``, shown as
    ``what=width``, or ``what (width)`` with ``paren``; a width below 1 has no divisor)."""
    positive_int(heads, owner, "heads")
    shown = f"{what} ({width})" if paren else f"{what}={width}"
    ok = width >= 1 and width % heads == 0  # type: ignore[operator]
    check_arg(ok, owner, "heads", f"a divisor of {shown}{note}", heads)
    return int(heads)  # type: ignore[call-overload]


def resolve_dim_head(channels: int, heads: int, dim_head: int | None, owner: str) -> int:
    """The per-head width: ``dim_head`` when given (a positive int), else ``channels // heads`` (heads must divide)."""
    if dim_head is None:
        dim_head = channels // check_heads(heads, channels, owner, note=" when dim_head is None")
    else:
        positive_int(heads, owner, "heads")
    return positive_int(dim_head, owner, "dim_head")


def check_dropout(p: object, owner: str, what: str = "dropout") -> float:
    ok = isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p < 1.0
    check_arg(ok, owner, what, "a probability in [0, 1)", p)
    return float(p)  # type: ignore[arg-type]


def output_width(channels: object, out_channels: object, owner: str) -> int:
    """``channels`` a positive integer; the output width: ``out_channels`` when given (a positive integer), else ``channels``."""
    positive_int(channels, owner, "channels")
    return int(channels) if out_channels is None else positive_int(out_channels, owner, "out_channels")  # type: ignore[call-overload]


class AttentionArgs(NamedTuple):
    """What :func:`check_attention_args` checked: the per-head width and the two dropout probabilities."""

    dim_head: int
    attn_drop: float
    proj_drop: float


_UNSET: Any = object()


def check_attention_args(
    owner: str,
    channels: object,
    heads: object,
    *,
    dim_head: object = _UNSET,
    qkv_bias: object = _UNSET,
    attn_drop: object = 0.0,
    proj_drop: object = 0.0,
    channels_what: str = "channels",
) -> AttentionArgs:
    """The constructor prologue shared by the attention modules, in this order: ``channels`` a positive integer
    (named ``channels_what``); ``heads`` a positive integer that divides ``channels`` -- or, when the module takes a
    ``dim_head`` (pass it, ``None`` included), :func:`resolve_dim_head`; ``qkv_bias`` a bool (when passed);
    ``attn_drop`` and ``proj_drop`` probabilities in [0, 1).  Each failure is the helper's usual ``ValueError``."""
    positive_int(channels, owner, channels_what)
    if dim_head is _UNSET:
        width = channels // check_heads(heads, channels, owner)  # type: ignore[arg-type, operator]
    else:
        width = resolve_dim_head(channels, heads, dim_head, owner)  # type: ignore[arg-type]
    if qkv_bias is not _UNSET:
        check_arg(isinstance(qkv_bias, bool), owner, "qkv_bias", "a bool", qkv_bias)
    return AttentionArgs(
        width, check_dropout(attn_drop, owner, "attn_drop"), check_dropout(proj_drop, owner, "proj_drop")
    )


@fx_leaf
def check_nchw(x: torch.Tensor, channels: int, owner: str) -> torch.Tensor:
    """Check that ``x`` is a non-empty B×C×H×W tensor with ``channels`` channels; return it unchanged."""
    if is_tracing():  # shapes are baked into a trace; the check ran when the trace was recorded
        return x
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner}: expected a tensor of shape B×{channels}×H×W, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{owner}: expected a 4-D input B×{channels}×H×W, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{owner}: expected {channels} input channels (B×{channels}×H×W), got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{owner}: expected non-empty batch and spatial sizes, got shape {tuple(x.shape)}")
    return x


#: How :func:`check_spatial` names the axes of a map of each spatial rank.
_MAP_AXES = {1: "L", 2: "H×W", 3: "D×H×W"}


@fx_leaf
def check_spatial(x: torch.Tensor, channels: int, dims: int, owner: str) -> torch.Tensor:
    """Check that ``x`` is a non-empty map of spatial rank ``dims`` (B×C×L, B×C×H×W or B×C×D×H×W) with ``channels``
    channels; return it unchanged.  An input of another rank raises (a 4-D map given to a 3-D module never
    broadcasts silently).  ``dims=2`` is :func:`check_nchw`."""
    if dims == 2:
        return check_nchw(x, channels, owner)
    if is_tracing():  # shapes are baked into a trace; the check ran when the trace was recorded
        return x
    shape = f"B×{channels}×{_MAP_AXES[dims]}"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner}: expected a tensor of shape {shape}, got {type(x).__name__}")
    if x.dim() != dims + 2:
        raise ValueError(f"{owner}: expected a {dims + 2}-D input {shape}, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{owner}: expected {channels} input channels ({shape}), got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if x.numel() == 0:
        raise ValueError(f"{owner}: expected non-empty batch and spatial sizes, got shape {tuple(x.shape)}")
    return x


@fx_leaf
def check_rank(x: torch.Tensor, ndim: int, channel_dim: int, channels: int, owner: str, layout: str) -> torch.Tensor:
    """Rank + channel check for the token (B×N×C) and temporal (B×C×N×T) layouts (formerly ``check_dims``: maps
    of a spatial rank ``dims`` are checked by :func:`check_spatial`)."""
    if is_tracing():
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


#: The former name of :func:`check_rank` (kept for third-party modules; ``dims`` now means the spatial rank).
check_dims = check_rank


@fx_leaf
def check_same_shape(xs: Sequence[torch.Tensor], count: int, channels: int, owner: str) -> Sequence[torch.Tensor]:
    """A list of ``count`` B×C×H×W maps that all share one shape (the ``multi`` layout)."""
    if is_tracing():
        return xs
    if not isinstance(xs, (list, tuple)):
        raise ValueError(f"{owner}: expected a list of {count} maps B×{channels}×H×W, got {type(xs).__name__}")
    if len(xs) != count:
        raise ValueError(f"{owner}: expected {count} inputs (a list of maps B×{channels}×H×W), got {len(xs)}")
    for i, t in enumerate(xs):
        check_nchw(t, channels, f"{owner} (input {i})")
    shapes = [tuple(t.shape) for t in xs]
    if len(set(shapes)) != 1:
        raise ValueError(f"{owner}: expected inputs of one shape, got shapes {shapes}")
    return xs


@fx_leaf
def check_context(ctx: torch.Tensor, query: torch.Tensor, channels: int, owner: str) -> torch.Tensor:
    """A context map must be B×channels×H'×W' with the query's batch size."""
    if is_tracing():
        return ctx
    check_nchw(ctx, channels, owner)
    if ctx.shape[0] != query.shape[0]:
        raise ValueError(
            f"{owner}: expected a context map with the query's batch size {query.shape[0]}, got {ctx.shape[0]} (shape {tuple(ctx.shape)})"
        )
    return ctx


def check_window_args(
    owner: str, channels: int, kernel_size: int, stride: int | None, heads: int, dim_head: int | None, dropout: float
) -> tuple[int, int, int]:
    """The window-attention prologue (``local_window``, ``multipole``): positive ``channels``, ``kernel_size`` and
    ``heads``, ``stride`` in [1, kernel_size] (``None`` = kernel_size), ``dim_head`` resolved, ``dropout`` in
    [0, 1).  Returns ``(stride, heads, dim_head)``."""
    positive_int(channels, owner, "channels")
    positive_int(kernel_size, owner, "kernel_size")
    stride = kernel_size if stride is None else stride
    check_arg(
        isinstance(stride, int) and not isinstance(stride, bool) and 1 <= stride <= kernel_size,
        owner,
        "stride",
        f"an integer in [1, kernel_size={kernel_size}] (larger strides leave pixels uncovered)",
        stride,
    )
    positive_int(heads, owner, "heads")
    dim_head = resolve_dim_head(channels, heads, dim_head, owner)
    check_arg(
        isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0, owner, "dropout", "a float in [0, 1)", dropout
    )
    return stride, heads, dim_head


# ------------------------------------------------------------------------------------------------------------
# Upper bounds of the constructor's size arguments
# ------------------------------------------------------------------------------------------------------------

#: Kernel and window sides: twice the widest published kernel (SLaK 51, LSKA 53) rounded to 2⁷ − 1.
KERNEL_BOUND = 127
#: Position tables indexed by pixel offsets or positions (relative-logit tables, ``max_size``, ``table_size``).
TABLE_BOUND = 1024
#: Repeated blocks and layers of one module (``num_repeats``, ``num_layers``, ``num_blocks``): ViT-H's 32.
DEPTH_BOUND = 32
#: Expansion and MLP ratios.
RATIO_BOUND = 16


class SizeBound(NamedTuple):
    """The largest value of one size argument: ``limit`` (a number, or a function of ``channels`` giving one)
    and why (shown in the error and the docstring).  A sequence argument (``kernels=(3, 5, 7)``) is bounded
    element by element."""

    limit: Any
    why: str
    text: str = ""  # how the limit reads in the docstring ("2·C − 1"); default: the number

    def value(self, channels: object) -> float | None:
        """The limit for these channels (None when ``channels`` is not one the constructor accepts)."""
        if not callable(self.limit):
            return self.limit  # type: ignore[no-any-return]
        widths = list(channels) if isinstance(channels, (list, tuple)) else [channels]
        if not widths or not all(_is_int(c) and c >= 1 for c in widths):  # type: ignore[operator]
            return None
        return self.limit(channels)  # type: ignore[no-any-return]


def _numbers(v: object) -> list[float]:
    def number(x: object) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if number(v):
        return [v]  # type: ignore[list-item]
    if isinstance(v, (list, tuple)):
        return [x for x in v if number(x)]  # type: ignore[misc]
    return []


def check_size_bounds(bounds: dict[str, SizeBound], args: dict[str, Any], channels: object, owner: str) -> None:
    """Raise a ``ValueError`` (module, argument, bound, received value) for a size argument above its bound,
    before anything is allocated.  Values of other types are left to the constructor's own checks."""
    for name, bound in bounds.items():
        limit = bound.value(channels)
        if limit is None or name not in args:
            continue
        expected = f"at most {bound.text} = {limit}" if bound.text else f"at most {limit}"
        for v in _numbers(args[name]):
            check_arg(not v > limit, owner, name, f"{expected} ({bound.why})", args[name])


def describe_size_bounds(bounds: dict[str, SizeBound]) -> str:
    """The docstring paragraph listing the bounds."""
    items = [f"``{name}`` ≤ {b.text or b.limit} ({b.why})" for name, b in bounds.items()]
    return "Size bounds (a larger value raises ``ValueError`` before anything is allocated): " + "; ".join(items) + "."
