"""Sinusoidal positional encodings: 1-D (Vaswani et al.; NeurIPS 2017) and the 2-D form of DETR (Carion et al.; ECCV 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .. import tracing
from ..functional import (
    grid_table,
    sinusoidal_table,
)
from ..functional.gating import BATCH_AXIS
from ..layers import (
    AttnModule,
    SizeBound,
    check_arg,
    check_dropout,
    check_nchw,
    check_rank,
    fx_leaf,
    positive_int,
)
from ..registry import register
from .mhsa import _PAPER_ATTN, _TOKENS, _register_tokens

__all__ = ["PositionalEncoding", "PositionalEncoding2D"]


#: The targets of the batch-axis form (the encodings' one portable form).
_BATCH_AXIS_TARGETS = ("ncnn",)


def _batch_axis(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself, or under an export target that needs it :func:`_batch_axis_portable`."""
    return _batch_axis_portable(x) if tracing.portable(*_BATCH_AXIS_TARGETS) else x


def _batch_axis_portable(x: torch.Tensor) -> torch.Tensor:
    """An average pool of kernel 1 (the identity) that names the batch axis for pnnx: a module that only adds a
    table has no operator pnnx knows to keep the batch first, so it broadcast the table over the batch taken for
    a data axis (B×N×N×C outputs).  It costs one copy."""
    return F.avg_pool1d(x, 1) if x.dim() == 3 else F.avg_pool2d(x, 1)


def _batch_axis_form(marker: str, cases: tuple[dict[str, int], ...] = ({},)) -> tracing.PortableForm:
    reason = "a table added to the input; " + BATCH_AXIS
    return tracing.PortableForm(targets=_BATCH_AXIS_TARGETS, marker=marker, reason=reason, cases=cases)


@fx_leaf
def _pe_rows(pe: torch.Tensor, x: torch.Tensor, base: float) -> torch.Tensor:
    """The first N rows of the stored table, or a freshly computed table when N exceeds it."""
    n = x.shape[1]
    if n <= pe.shape[0]:
        return pe[:n]
    return sinusoidal_table(n, pe.shape[1], base, device=pe.device, dtype=pe.dtype)


@_register_tokens(
    "positional_encoding",
    complexity="O(N)",
    summary="Sinusoidal positional encoding (even dims sin, odd dims cos) added to tokens; any length.",
    forms=(_batch_axis_form("aten::avg_pool1d", ({}, {"max_len": 10})),),
)
class PositionalEncoding(AttnModule):
    """Sinusoidal positional encoding (Vaswani et al., NeurIPS 2017); tokens B×N×C → B×N×C.

    ``y = dropout(x + PE[:N])`` with ``PE[p, 2i] = sin(p / 10000^(2i/C))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/C))``
    (the community layout: even channels sine, odd channels cosine).  A table of ``max_len`` rows is kept as a
    non-persistent buffer; longer sequences get a table computed on the fly instead of failing (the community code's
    version raises a size-mismatch error beyond ``max_len``).  The table is computed in float64, odd C works,
    and it follows ``.to(dtype)`` of the module; the output has the dtype of ``x``.

    Args:
        channels: model width C.
        max_len: rows of the precomputed table (only a cache; any N works).
        dropout: dropout after the addition (the community code defaults to 0.1; 0 here as every attnzoo dropout).
        base: the wavelength base (10000 in the paper).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "max_len": SizeBound(1 << 16, "rows of the cached table; longer sequences are computed on the fly"),
    }

    pe: torch.Tensor

    def __init__(self, channels: int, max_len: int = 5000, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        positive_int(max_len, self.owner, "max_len")
        check_arg(isinstance(base, (int, float)) and base > 1, self.owner, "base", "a number > 1", base)
        self.channels, self.max_len, self.base = channels, max_len, float(base)
        self.register_buffer("pe", sinusoidal_table(max_len, channels, self.base), persistent=False)
        self.dropout = nn.Dropout(check_dropout(dropout, self.owner, "dropout"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _batch_axis(check_rank(x, 3, -1, self.channels, self.owner, _TOKENS))
        return self.dropout(x + _pe_rows(self.pe, x, self.base).to(x.dtype))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, max_len={self.max_len}"


@register(
    "positional_encoding_2d",
    family="sequence",
    paper=_PAPER_ATTN + "; 2-D form as in DETR (Carion et al.; ECCV 2020)",
    url="https://arxiv.org/abs/2005.12872",
    layout="nchw",
    complexity="O(N)",
    summary="2-D sinusoidal positional encoding added to a feature map: half the channels for rows, half for columns.",
    forms=(_batch_axis_form("aten::avg_pool2d"),),
)
class PositionalEncoding2D(AttnModule):
    """2-D sinusoidal positional encoding for feature maps; B×C×H×W → B×C×H×W.

    ``y = dropout(x + PE)``: channels ``[0, C/2)`` carry the 1-D encoding of the row index (``sinusoidal_table``
    with C/2 channels: even sin, odd cos), channels ``[C/2, C)`` that of the column index.  As DETR's sine
    embedding without normalisation: positions are raw pixel indices, so any H×W works and a crop of a map
    keeps the encoding of its pixels.  The table is separable: only H·C/2 + W·C/2 sines are computed per call.

    Args:
        channels: input channels C (even).
        dropout: dropout after the addition.
        base: the wavelength base (10000).
    """

    def __init__(self, channels: int, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        check_arg(channels % 2 == 0, self.owner, "channels", "even (half for rows, half for columns)", channels)
        check_arg(isinstance(base, (int, float)) and base > 1, self.owner, "base", "a number > 1", base)
        self.channels, self.base = channels, float(base)
        self.dropout = nn.Dropout(check_dropout(dropout, self.owner, "dropout"))

    def encoding(
        self, h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The C×H×W encoding that ``forward`` adds."""
        return grid_table(h, w, self.channels // 2, self.base, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _batch_axis(check_nchw(x, self.channels, self.owner))
        return self.dropout(x + _pe_2d_table(x, self.channels // 2, self.base))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


@fx_leaf
def _pe_2d_table(x: torch.Tensor, half: int, base: float) -> torch.Tensor:
    """C×H×W encoding for the size, device and dtype of ``x``."""
    return grid_table(x.shape[2], x.shape[3], half, base, x.device, x.dtype)
