"""MTGNN's temporal blocks (Wu et al.; KDD 2020): dilated inception and the gated temporal convolution.

Paper: https://arxiv.org/abs/2005.11650
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Mapping, cast

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .. import tracing
from ..capture import record
from ..layers import (
    TABLE_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_rank,
    fx_leaf,
    positive_int,
)
from ..layers.checks import check_choice, output_width
from ..registry import ShapeRule, register

__all__ = ["DilatedInception", "GatedTemporalConv"]


KERNEL_SET = (2, 3, 6, 7)
_LAYOUT = "B×C×N×T"
_PAPER = "Connecting the Dots: Multivariate Time Series Forecasting with Graph Neural Networks (Wu et al.; KDD 2020)"
_URL = "https://arxiv.org/abs/2005.11650"
_PADDINGS = ("valid", "causal")


def _output_length(t: int, dilation: int, padding: str) -> int:
    """Output length of the dilated inception for input length ``t``: T − 6d (``"valid"``) or T (``"causal"``)."""
    return t if padding == "causal" else t - (KERNEL_SET[-1] - 1) * dilation


def _output_size(n: int, t: int, a: Mapping[str, Any]) -> tuple[int, int]:
    return n, _output_length(t, a["dilation"], a["padding"])


_SHAPE = ShapeRule("out_channels", _output_size, "C → `out_channels`, T → T − 6·`dilation` with padding 'valid'")
#: What the two MTGNN modules register alike.
_register = functools.partial(register, family="temporal", paper=_PAPER, url=_URL, layout="temporal", shape=_SHAPE)


@fx_leaf
def _check_length(x: torch.Tensor, min_len: int, owner: str) -> torch.Tensor:
    """Valid convolution needs T ≥ 6·dilation + 1 (checked through FX tracing, like the layers checks)."""
    if tracing.is_tracing():
        return x
    if x.shape[-1] < min_len:
        raise ValueError(
            f"{owner}: with padding='valid' the input length T must be at least 6·dilation+1 = {min_len} "
            f"(expected B×C×N×T with T >= {min_len}; use padding='causal' for shorter inputs), got T={x.shape[-1]} "
            f"(shape {tuple(x.shape)})"
        )
    return x


def _inception_args(channels: int, out_channels: int | None, dilation: int, padding: str, owner: str) -> int:
    out_channels = output_width(channels, out_channels, owner)
    check_arg(
        out_channels % len(KERNEL_SET) == 0,
        owner,
        "out_channels",
        f"divisible by {len(KERNEL_SET)} (one quarter per kernel size)",
        out_channels,
    )
    positive_int(dilation, owner, "dilation")
    check_choice(padding, _PADDINGS, owner, "padding")
    return out_channels


@_register(
    "dilated_inception",
    complexity="O(N)",
    min_size=(1, 7),
    summary="MTGNN dilated inception: 1×k dilated convs, k ∈ (2,3,6,7), cut to a common length, concatenated.",
)
class DilatedInception(AttnModule):
    """MTGNN dilated inception layer (Wu et al., KDD 2020); B×C×N×T → B×C_out×N×(T − 6d) (T with causal padding).

    Four branches ``Conv2d(C, C_out/4, (1, k), dilation=(1, d))`` with bias and no padding, k = 2, 3, 6, 7;
    branch outputs (length T − (k−1)d) are cut to their **last** T − 6d steps and concatenated on channels in
    kernel order, exactly as the official ``dilated_inception``.  ``padding="causal"`` left-pads 6d zeros, so
    the length stays T (and T = 1 works).

    Differences from the common community versions: the community ``dilated_inception`` appends a
    Linear–ReLU–Linear over the time axis tied to a ``seq_len`` given at construction (not in MTGNN; it only
    works at that length); "same"-padding re-implementations shift the alignment (the official output step t
    ends at input step t + 6d); ``C_out`` not divisible by 4 is a ``ValueError`` (officially channels are lost).
    All branches run as one convolution (see the module docstring); the result equals the four separate ones.

    Args:
        channels: input channels C.
        out_channels: output channels (default C), divisible by 4.
        dilation: dilation d of every branch.
        padding: ``"valid"`` (official, output length T − 6d, needs T ≥ 6d + 1) or ``"causal"`` (length T).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "dilation": SizeBound(TABLE_BOUND, "dilation: the padding grows with it"),
    }

    def __init__(
        self, channels: int, out_channels: int | None = None, dilation: int = 1, padding: str = "valid"
    ) -> None:
        super().__init__()
        self.out_channels = _inception_args(channels, out_channels, dilation, padding, self.owner)
        self.channels, self.dilation, self.padding = channels, dilation, padding
        self.tconv = nn.ModuleList(
            nn.Conv2d(channels, self.out_channels // len(KERNEL_SET), (1, k), dilation=(1, dilation))
            for k in KERNEL_SET
        )

    @property
    def receptive_field(self) -> int:
        """Input steps seen by one output step: 6·dilation + 1."""
        return (KERNEL_SET[-1] - 1) * self.dilation + 1

    def output_length(self, t: int) -> int:
        """Output length for input length ``t``."""
        return _output_length(t, self.dilation, self.padding)

    def fused_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C_out × C × 1 × 7 weight, C_out bias): branch k's taps right-aligned in 7, zeros in front."""
        kmax = KERNEL_SET[-1]
        convs = [cast(nn.Conv2d, conv) for conv in self.tconv]
        w = torch.cat([F.pad(conv.weight, (kmax - conv.weight.shape[-1], 0)) for conv in convs], 0)
        b = torch.cat([cast(torch.Tensor, conv.bias) for conv in convs], 0)
        return w, b

    def _prepare(self, x: torch.Tensor, owner: str) -> torch.Tensor:
        x = check_rank(x, 4, 1, self.channels, owner, _LAYOUT)
        if self.padding == "causal":
            return F.pad(x, (self.receptive_field - 1, 0))
        return _check_length(x, self.receptive_field, owner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x, self.owner)
        w, b = self.fused_weight()
        return F.conv2d(x, w, b, dilation=(1, self.dilation))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_channels={self.out_channels}, dilation={self.dilation}, padding={self.padding!r}"


@_register(
    "gated_tcn",
    complexity="O(N)",
    min_size=(1, 7),
    summary="MTGNN gated temporal convolution: tanh(inception_f(x)) ⊙ sigmoid(inception_g(x)), then dropout.",
    maps=("gate",),
)
class GatedTemporalConv(AttnModule):
    """MTGNN gated temporal convolution (Wu et al., KDD 2020); B×C×N×T → B×C_out×N×(T − 6d) (T if causal).

    ``y = dropout(tanh(DI_f(x)) ⊙ sigmoid(DI_g(x)))`` with two separate :class:`DilatedInception` modules
    (``filter_conv``, ``gate_conv``), as each layer of the official ``gtnet`` (which applies dropout 0.3 after
    the product; 0 by default here).  The gate σ(DI_g(x)) is recorded as ``"gate"`` under
    ``attnzoo.capture_attention``.  Both inceptions run as one convolution with 2·C_out outputs.

    Differences from the community versions: the community ``temporal_conv`` inherits the time-axis MLP and fixed
    ``seq_len`` of its ``dilated_inception``; others share one inception between filter and gate or put dropout
    before the gate.

    Args:
        channels: input channels C.
        out_channels: output channels (default C), divisible by 4.
        dilation: dilation of both inception modules.
        padding: ``"valid"`` (official) or ``"causal"``, see :class:`DilatedInception`.
        dropout: dropout after the gating.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "dilation": SizeBound(TABLE_BOUND, "dilation: the padding grows with it"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        dilation: int = 1,
        padding: str = "valid",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        out_channels = _inception_args(channels, out_channels, dilation, padding, self.owner)
        check_arg(
            isinstance(dropout, (int, float)) and 0 <= dropout < 1,
            self.owner,
            "dropout",
            "a probability in [0, 1)",
            dropout,
        )
        self.channels, self.out_channels, self.dilation, self.padding = channels, out_channels, dilation, padding
        self.filter_conv = DilatedInception(channels, out_channels, dilation, padding)
        self.gate_conv = DilatedInception(channels, out_channels, dilation, padding)
        self.dropout = nn.Dropout(float(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.filter_conv._prepare(x, self.owner)
        wf, bf = self.filter_conv.fused_weight()
        wg, bg = self.gate_conv.fused_weight()
        both = F.conv2d(x, torch.cat([wf, wg], 0), torch.cat([bf, bg], 0), dilation=(1, self.dilation))
        filt, gate = both.chunk(2, dim=1)
        gate = torch.sigmoid(gate)
        record(self, "gate", gate)
        return self.dropout(torch.tanh(filt) * gate)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_channels={self.out_channels}, dilation={self.dilation}, padding={self.padding!r}"
