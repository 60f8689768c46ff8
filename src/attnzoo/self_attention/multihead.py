"""Multi-head self-attention on feature maps: global, spatial (reduced width) and spatial-reduction attention.

All four modules take B×C×H×W and return B×C'×H×W (C' = C unless ``out_channels`` says otherwise), at any
H×W.  They work on a channels-last token view of the map: 1×1 projections are ``nn.Linear`` layers on a
B×N×C tensor (a free view when the input is ``channels_last``), and q, k, v are views B×heads×N×d of the
projection output whose last dimension has stride 1.  That is what makes
``F.scaled_dot_product_attention`` (through :func:`attnzoo.layers.attention`) pick the fused CPU flash kernel
(``aten::_scaled_dot_product_flash_attention_for_cpu``) instead of the math kernel that builds the N×N matrix;
the N×N probabilities only exist while :func:`attnzoo.capture_attention` records them.

Modules:
    GlobalAttention          seed 000 ``AttentionBlock`` on a map (pre-LayerNorm multi-head attention).
    SpatialSelfAttention     seed 004 ``SpatialSelfAttention`` (q/k/v reduced to C/8, heads really used).
    EfficientSelfAttention   PVT spatial-reduction attention / SegFormer "efficient self-attention".
    SelfAttentionBlock       seed 004 ``SelfAttentionBlock``: norm + one of the above + residual.
"""

from __future__ import annotations

import math

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .. import layers
from ..layers import check_arg, positive_int
from ..registry import register

__all__ = ["GlobalAttention", "SpatialSelfAttention", "EfficientSelfAttention", "SelfAttentionBlock"]


# ----------------------------------------------------------------------------------------------------------
# layout helpers (shared by the four modules)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×N×C (row-major positions).  Free for a channels_last input, one copy otherwise."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """B×N×(h·d) → B×h×N×d as a view: the last dimension keeps stride 1 (SDPA flash-kernel requirement)."""
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(o: torch.Tensor) -> torch.Tensor:
    """B×h×N×d → B×N×(h·d)."""
    return o.transpose(1, 2).flatten(2)


@torch.fx.wrap
def _to_map(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """B×N×C' tokens → B×C'×H×W with the H×W of ``like``, in ``like``'s memory format (channels_last stays a view)."""
    b, _, h, w = like.shape
    out = y.reshape(b, h, w, y.shape[-1]).permute(0, 3, 1, 2)
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return out
    return out.contiguous()


def _check_heads(heads: int, width: int, owner: str, what: str) -> int:
    positive_int(heads, owner, "heads")
    check_arg(width % heads == 0, owner, "heads", f"a divisor of {what} ({width})", heads)
    return heads


def _check_dropout(p: float, owner: str, what: str = "dropout") -> float:
    check_arg(isinstance(p, (int, float)) and 0.0 <= p < 1.0, owner, what, "a probability in [0, 1)", p)
    return float(p)


# ----------------------------------------------------------------------------------------------------------


@register(
    "global_attention",
    family="self_attention",
    paper="An Image is Worth 16x16 Words (Dosovitskiy et al.; ICLR 2021) / Attention Is All You Need (Vaswani et al.; NeurIPS 2017)",
    url="https://arxiv.org/abs/2010.11929",
    complexity="O(N^2)",
    summary="Pre-LayerNorm multi-head self-attention over all H·W positions of a feature map (seed 000 AttentionBlock).",
    test_kwargs={"heads": 2, "dim_head": 8},
)
class GlobalAttention(nn.Module):
    """Global multi-head self-attention on a feature map (seed 000 ``AttentionBlock``); B×C×H×W → B×C×H×W.

    The map is read as N = H·W tokens of width C (channels last) and
    ``y = W_o · MHA(LN(x))`` with ``q, k, v = LN(x) W_qkv`` (one Linear without bias, inner width
    ``heads · dim_head``), per-head ``softmax(q kᵀ / √dim_head) v``, heads concatenated and projected back to C.
    As the seed, the output projection is skipped when ``heads == 1`` and ``dim_head == C`` (unless
    ``project_out`` says otherwise) and there is no residual inside (the host adds it).  No positional
    encoding, so the module is permutation-equivariant over positions.

    Differences from the seed code: it takes an NCHW map at any H×W (the seed expects B×N×C tokens and has no
    map plumbing); attention runs fused (``scaled_dot_product_attention`` on stride-1 views, peak memory linear
    in N) instead of ``softmax(q @ kᵀ) @ v`` with an explicit B×h×N×N matrix (2 GiB at 64×64 with 8 heads).

    Args:
        channels: C, the token width (``dim`` of the seed).
        heads: number of heads.
        dim_head: width of each head; inner width = ``heads · dim_head`` (need not equal C).
        dropout: dropout on the attention probabilities and after the output projection (seed: one rate).
        qkv_bias: bias in the q/k/v projection (the seed has none).
        project_out: force (True) or drop (False, needs ``heads · dim_head == C``) the output projection;
            ``None`` follows the seed rule.

    Shapes: x B×C×H×W → B×C×H×W.  Captured map: ``"attn"`` B×heads×N×N.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        qkv_bias: bool = False,
        project_out: bool | None = None,
    ) -> None:
        super().__init__()
        owner = "GlobalAttention"
        positive_int(channels, owner, "channels")
        positive_int(heads, owner, "heads")
        positive_int(dim_head, owner, "dim_head")
        self.dropout = _check_dropout(dropout, owner)
        inner = heads * dim_head
        if project_out is None:
            project_out = not (heads == 1 and dim_head == channels)
        check_arg(project_out or inner == channels, owner, "heads * dim_head without output projection",
                  f"equal to channels ({channels})", inner)
        self.channels, self.heads, self.dim_head, self.inner = channels, heads, dim_head, inner
        self.scale = dim_head ** -0.5
        self.norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * inner, bias=qkv_bias)
        self.to_out = nn.Sequential(nn.Linear(inner, channels), nn.Dropout(dropout)) if project_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "GlobalAttention")
        t = self.norm(_tokens(x))
        q, k, v = self.to_qkv(t).chunk(3, dim=-1)  # unpacked directly: FX cannot iterate a proxy in a loop
        q, k, v = _split_heads(q, self.heads), _split_heads(k, self.heads), _split_heads(v, self.heads)
        o = layers.attention(q, k, v, scale=self.scale, dropout_p=self.dropout if self.training else 0.0, module=self)
        return _to_map(self.to_out(_merge_heads(o)), x)


@register(
    "spatial_self_attention",
    family="self_attention",
    paper="Attention Is All You Need (Vaswani et al.; NeurIPS 2017), applied to feature maps (seed 004 SpatialSelfAttention)",
    url="https://arxiv.org/abs/1706.03762",
    complexity="O(N^2)",
    summary="Self-attention over all positions with q/k/v reduced to C/r, multi-head, 1×1 output conv back to C.",
)
class SpatialSelfAttention(nn.Module):
    """Spatial self-attention with reduced width (seed 004 ``SpatialSelfAttention``); B×C×H×W → B×C_out×H×W.

    ``q, k, v = W_{q,k,v} x`` (1×1, no bias) reduce C to ``C_r = max(1, C // reduction_ratio)``; the C_r
    channels are split into ``heads`` heads of width d = C_r / heads and every position attends to every
    position, ``softmax(q kᵀ / √d) v``; a 1×1 conv with bias maps C_r back to ``out_channels`` (default C).
    No residual inside (:class:`SelfAttentionBlock` adds it).  Kaiming-normal (fan-out) init and zero
    biases as the seed.

    Differences from the seed: the seed accepts ``num_heads`` but never splits heads (always one head with
    scale 1/√C_r); here ``heads`` is honoured (default 1 reproduces the seed's computation exactly) and must
    divide C_r.  Attention runs fused (no N×N matrix); the seed builds B×N×N.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        heads: number of heads; must divide C_r.
        reduction_ratio: r in C_r = max(1, C // r).
        dropout: dropout on the attention probabilities (the seed has none; default 0).

    Shapes: x B×C×H×W → B×out_channels×H×W.  Captured map: ``"attn"`` B×heads×N×N.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        heads: int = 1,
        reduction_ratio: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = "SpatialSelfAttention"
        positive_int(channels, owner, "channels")
        positive_int(reduction_ratio, owner, "reduction_ratio")
        out_channels = channels if out_channels is None else positive_int(out_channels, owner, "out_channels")
        reduced = max(1, channels // reduction_ratio)
        _check_heads(heads, reduced, owner, "the reduced width channels // reduction_ratio")
        self.channels, self.out_channels, self.heads, self.reduced_channels = channels, out_channels, heads, reduced
        self.dropout = _check_dropout(dropout, owner)
        self.qkv = nn.Linear(channels, 3 * reduced, bias=False)  # the seed's q_conv, k_conv, v_conv stacked
        self.proj = nn.Linear(reduced, out_channels)  # the seed's out_conv
        for lin in (self.qkv, self.proj):
            nn.init.kaiming_normal_(lin.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "SpatialSelfAttention")
        q, k, v = self.qkv(_tokens(x)).chunk(3, dim=-1)
        q, k, v = _split_heads(q, self.heads), _split_heads(k, self.heads), _split_heads(v, self.heads)
        o = layers.attention(q, k, v, scale=None, dropout_p=self.dropout if self.training else 0.0, module=self)
        return _to_map(self.proj(_merge_heads(o)), x)


@torch.fx.wrap
def _pad_to_multiple(x: torch.Tensor, r: int) -> torch.Tensor:
    """Zero-pad B×C×H×W at the bottom/right so that H and W are multiples of ``r`` (at least ``r``)."""
    ph, pw = (-x.shape[2]) % r, (-x.shape[3]) % r
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph))


@torch.fx.wrap
def _avg_reduce(x: torch.Tensor, r: int) -> torch.Tensor:
    """Non-overlapping r×r average pooling that keeps partial windows, averaging over their valid pixels only.

    Equals ``F.avg_pool2d(x, r)`` when r divides H and W; otherwise the map is zero-padded to a multiple of r
    and each window is divided by its count of real pixels (so a map smaller than r pools to its mean).
    """
    h, w = x.shape[2], x.shape[3]
    ph, pw = (-h) % r, (-w) % r
    if ph == 0 and pw == 0:
        return F.avg_pool2d(x, r)
    pooled = F.avg_pool2d(F.pad(x, (0, pw, 0, ph)), r)
    rows = torch.clamp(h - torch.arange(0, h + ph, r, device=x.device), max=r).to(x.dtype)
    cols = torch.clamp(w - torch.arange(0, w + pw, r, device=x.device), max=r).to(x.dtype)
    return pooled * ((r * r) / (rows[:, None] * cols[None, :]))


@register(
    "efficient_self_attention",
    family="self_attention",
    paper="Pyramid Vision Transformer (Wang et al.; ICCV 2021) / SegFormer (Xie et al.; NeurIPS 2021)",
    url="https://arxiv.org/abs/2102.12122",
    complexity="O(N^2/R^2)",
    summary="Spatial-reduction attention: keys/values from the map reduced by sr_ratio (strided conv + LN, or avg pool).",
    test_kwargs={"heads": 2, "sr_ratio": 3},
)
class EfficientSelfAttention(nn.Module):
    """Spatial-reduction attention (PVT "SRA", SegFormer "efficient self-attention"); B×C×H×W → B×C_out×H×W.

    Queries come from every position, ``q = W_q x``; keys and values from the map reduced R = ``sr_ratio``
    times in each direction: ``x_r = LN(Conv_{R×R, stride R}(x))`` (``reduction="conv"``, official PVT and
    SegFormer) or ``x_r = AvgPool_R(x)`` (``reduction="avg"``, the seed's ``EfficientSelfAttention``), then
    ``k, v = W_kv x_r``; per head ``softmax(q kᵀ / √d_k) v`` and ``W_proj`` back to ``out_channels``.  Cost
    O(N · N/R²).  With R = 1 there is no reduction (and no conv or LN), exactly as PVT.  No residual inside.
    Initialisation as PVT: Linear trunc-normal(0.02) with zero bias, LayerNorm (1, 0), conv normal(0, √(2/fan_out)).

    Any H×W: PVT's strided conv drops the last H mod R rows (and fails below R); here the map is zero-padded at
    the bottom/right to a multiple of R first (``"conv"``), and partial windows are averaged over their real
    pixels only (``"avg"``), so every position is seen by some key and maps smaller than R give one key.  For
    sizes divisible by R the result equals PVT exactly.

    Differences from the community code: External-Attention's ``EMSA`` is ResT's variant (depthwise conv,
    conv across heads, InstanceNorm) and needs H, W at construction; the seed applies ``avg_pool2d`` with
    floor semantics, uses one head and 1×1 convs with bias.  Here heads are honoured and the attention is fused.

    Args:
        channels: input channels C.
        heads: number of heads; must divide key_channels and value_channels.
        sr_ratio: spatial reduction R of keys/values (PVT stage 1: 8).
        reduction: ``"conv"`` (strided conv + LayerNorm, PVT/SegFormer) or ``"avg"`` (average pooling, the seed).
        key_channels: width of q and k (default C, as PVT).
        value_channels: width of v (default C).
        out_channels: output channels (default C).
        qkv_bias: bias of the q and kv projections (PVT: True).
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout after the output projection.

    Shapes: x B×C×H×W → B×out_channels×H×W.  Captured map: ``"attn"`` B×heads×N×N_r, N_r = ⌈H/R⌉·⌈W/R⌉.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        sr_ratio: int = 8,
        reduction: str = "conv",
        key_channels: int | None = None,
        value_channels: int | None = None,
        out_channels: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = "EfficientSelfAttention"
        positive_int(channels, owner, "channels")
        positive_int(sr_ratio, owner, "sr_ratio")
        check_arg(reduction in ("conv", "avg"), owner, "reduction", "'conv' or 'avg'", reduction)
        key_channels = channels if key_channels is None else positive_int(key_channels, owner, "key_channels")
        value_channels = channels if value_channels is None else positive_int(value_channels, owner, "value_channels")
        out_channels = channels if out_channels is None else positive_int(out_channels, owner, "out_channels")
        _check_heads(heads, key_channels, owner, "key_channels")
        _check_heads(heads, value_channels, owner, "value_channels")
        self.channels, self.heads, self.sr_ratio, self.reduction = channels, heads, sr_ratio, reduction
        self.key_channels, self.value_channels, self.out_channels = key_channels, value_channels, out_channels
        self.attn_drop = _check_dropout(attn_drop, owner, "attn_drop")
        self.scale = (key_channels // heads) ** -0.5
        self.q = nn.Linear(channels, key_channels, bias=qkv_bias)
        self.kv = nn.Linear(channels, key_channels + value_channels, bias=qkv_bias)
        self.proj = nn.Linear(value_channels, out_channels)
        self.proj_drop = nn.Dropout(_check_dropout(proj_drop, owner, "proj_drop"))
        if sr_ratio > 1 and reduction == "conv":
            self.sr: nn.Module = nn.Conv2d(channels, channels, sr_ratio, stride=sr_ratio)
            self.norm: nn.Module = nn.LayerNorm(channels)
        else:
            self.sr = nn.Identity()
            self.norm = nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PVT's ``_init_weights``."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The reduced map the keys and values come from: B×C×⌈H/R⌉×⌈W/R⌉ (x itself when R = 1)."""
        if self.sr_ratio == 1:
            return x
        if self.reduction == "avg":
            return _avg_reduce(x, self.sr_ratio)
        return self.sr(_pad_to_multiple(x, self.sr_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "EfficientSelfAttention")
        q = _split_heads(self.q(_tokens(x)), self.heads)
        kv = self.kv(self.norm(_tokens(self.reduce(x))))
        k, v = kv.split([self.key_channels, self.value_channels], dim=-1)
        k, v = _split_heads(k, self.heads), _split_heads(v, self.heads)
        o = layers.attention(q, k, v, scale=self.scale, dropout_p=self.attn_drop if self.training else 0.0, module=self)
        return _to_map(self.proj_drop(self.proj(_merge_heads(o))), x)


_BLOCK_ARGS = {
    "standard": {"heads", "qkv_bias", "dropout"},
    "spatial": {"heads", "reduction_ratio", "dropout"},
    "efficient": {"heads", "sr_ratio", "reduction", "key_channels", "value_channels", "qkv_bias", "dropout"},
}


@register(
    "self_attention_block",
    family="self_attention",
    paper="Attention Is All You Need (Vaswani et al.; NeurIPS 2017) / PVT (Wang et al.; ICCV 2021) — seed 004 SelfAttentionBlock",
    url="https://arxiv.org/abs/1706.03762",
    complexity="O(N^2)",
    summary="x + Attention(Norm(x)) with standard, spatial (reduced) or efficient (spatial-reduction) attention.",
)
class SelfAttentionBlock(nn.Module):
    """Residual self-attention block (seed 004 ``SelfAttentionBlock``); B×C×H×W → B×C×H×W.

    ``y = x + A(N(x))`` with, by ``attention``:

    * ``"standard"``: N = LayerNorm over channels, A = multi-head attention over all positions with
      ``heads`` heads of width C/heads, q/k/v Linear (bias ``qkv_bias``, default False) and an output
      Linear — the seed's ``SelfAttention``; implemented as :class:`GlobalAttention` (whose ``norm`` is N).
    * ``"spatial"`` (default, as the seed): N = BatchNorm2d, A = :class:`SpatialSelfAttention`
      (``reduction_ratio`` 8, ``heads`` default 1).
    * ``"efficient"``: N = BatchNorm2d, A = :class:`EfficientSelfAttention` with the seed's widths
      (``key_channels`` = max(1, C // 8), ``value_channels`` = max(1, C // 2)), ``reduction`` default
      ``"avg"`` (the seed) and ``sr_ratio`` default 8 (the seed's default of 1 means no reduction at all).

    Arguments that the chosen attention does not use must stay ``None`` (a ``ValueError`` otherwise): the
    seed swallows ``**kwargs`` and silently ignores e.g. ``num_heads`` for the spatial variant.  Not zero
    initialised (neither is the seed), so the block is not the identity at init.

    Args:
        channels: C.
        attention: ``"standard"``, ``"spatial"`` or ``"efficient"``.
        heads: heads of the attention (standard: 8, spatial / efficient: 1); must divide the attention width.
        reduction_ratio: spatial only (default 8).
        sr_ratio, reduction, key_channels, value_channels: efficient only.
        qkv_bias: standard (default False) and efficient (default True).
        dropout: attention-probability (and, for standard/efficient, output) dropout, default 0.

    Shapes: x B×C×H×W → B×C×H×W.  Captured maps: those of ``self.attention``.
    """

    def __init__(
        self,
        channels: int,
        attention: str = "spatial",
        heads: int | None = None,
        reduction_ratio: int | None = None,
        sr_ratio: int | None = None,
        reduction: str | None = None,
        key_channels: int | None = None,
        value_channels: int | None = None,
        qkv_bias: bool | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = "SelfAttentionBlock"
        positive_int(channels, owner, "channels")
        check_arg(attention in _BLOCK_ARGS, owner, "attention", "'standard', 'spatial' or 'efficient'", attention)
        given = {
            "heads": heads, "reduction_ratio": reduction_ratio, "sr_ratio": sr_ratio, "reduction": reduction,
            "key_channels": key_channels, "value_channels": value_channels, "qkv_bias": qkv_bias,
        }
        for arg, value in given.items():
            check_arg(value is None or arg in _BLOCK_ARGS[attention], owner, arg,
                      f"None with attention={attention!r} (it only applies to "
                      f"{', '.join(a for a in _BLOCK_ARGS if arg in _BLOCK_ARGS[a])})", value)
        self.channels, self.attention_type = channels, attention
        try:
            self._build(channels, attention, heads, reduction_ratio, sr_ratio, reduction, key_channels,
                        value_channels, qkv_bias, dropout)
        except ValueError as err:  # name the block, keep the inner module's precise message
            raise ValueError(f"{owner}: {err}") from None

    def _build(self, channels: int, attention: str, heads: int | None, reduction_ratio: int | None,
               sr_ratio: int | None, reduction: str | None, key_channels: int | None,
               value_channels: int | None, qkv_bias: bool | None, dropout: float) -> None:
        if attention == "standard":
            h = 8 if heads is None else heads
            _check_heads(h, channels, "GlobalAttention", "channels")
            self.norm: nn.Module = nn.Identity()  # the LayerNorm is self.attention.norm
            self.attention: nn.Module = GlobalAttention(
                channels, heads=h, dim_head=channels // h, dropout=dropout,
                qkv_bias=bool(qkv_bias), project_out=True,
            )
        elif attention == "spatial":
            self.norm = nn.BatchNorm2d(channels)
            self.attention = SpatialSelfAttention(
                channels, heads=1 if heads is None else heads,
                reduction_ratio=8 if reduction_ratio is None else reduction_ratio, dropout=dropout,
            )
        else:
            self.norm = nn.BatchNorm2d(channels)
            self.attention = EfficientSelfAttention(
                channels, heads=1 if heads is None else heads,
                sr_ratio=8 if sr_ratio is None else sr_ratio,
                reduction="avg" if reduction is None else reduction,
                key_channels=max(1, channels // 8) if key_channels is None else key_channels,
                value_channels=max(1, channels // 2) if value_channels is None else value_channels,
                qkv_bias=True if qkv_bias is None else qkv_bias, attn_drop=dropout, proj_drop=dropout,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "SelfAttentionBlock")
        return x + self.attention(self.norm(x))
