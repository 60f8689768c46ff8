"""Non-local style global self-attention blocks: Non-local, SAGAN, DANet (PAM, CAM, both), CGNL, cross-layer NL.

Every block is residual and starts as the identity, as in its official code (BN / GroupNorm / γ zero-init).
Softmax attention over positions runs through :func:`attnzoo.layers.attention` (fused
``scaled_dot_product_attention``): the N×N' probability matrix is only built while
``attnzoo.capture_attention`` records it.  The CPU flash kernel needs q, k and v to share one head width, so
blocks whose query/key width differs from the value width (SAGAN, DANet's PAM) zero-pad the narrower side,
which leaves the scores and the output unchanged (see :func:`attnzoo.layers.fused_attention`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .. import layers
from ..capture import check_map_size, is_capturing, record
from ..layers import check_arg, positive_int
from ..registry import register

__all__ = [
    "NonLocalBlock",
    "SAGANAttention",
    "DANetPositionAttention",
    "DANetChannelAttention",
    "DANetAttention",
    "CompactGeneralizedNonLocal",
    "CrossLayerNonLocal",
]


# ----------------------------------------------------------------------------------------------------------
# shared pieces
# ----------------------------------------------------------------------------------------------------------


def _tokens(t: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×1×(H·W)×C view (one head); stride-1 last dim for channels-last maps, copied otherwise."""
    return t.flatten(2).transpose(1, 2).unsqueeze(1)


def _to_map(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """B×1×(H·W)×C → B×C×H×W view (channels-last strides, no copy)."""
    return y.squeeze(1).transpose(1, 2).unflatten(2, (h, w))


def _pool2(x: torch.Tensor) -> torch.Tensor:
    """2×2 stride-2 max-pool with ``ceil_mode``: odd sizes keep their last row/column (the official floor
    pooling drops it), and a 1×1 map stays 1×1.  Equal to the official pooling on even sizes."""
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


def _width(channels: int, divisor: int, explicit: int | None, owner: str, what: str) -> int:
    """``explicit`` if given (a positive int), else ``max(1, channels // divisor)``."""
    if explicit is not None:
        return positive_int(explicit, owner, what)
    check_arg(isinstance(divisor, int) and not isinstance(divisor, bool) and divisor >= 1, owner, "reduction", "a positive integer", divisor)
    return max(1, channels // divisor)


def _conv1x1(cin: int, cout: int, bias: bool, std: float | None = None, groups: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1, bias=bias, groups=groups)
    if std is not None:  # the official N(0, std) init of the Non-local / CGNL / CNL code
        nn.init.normal_(conv.weight, 0.0, std)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return conv


def _zero_bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)
    return bn


@torch.fx.wrap
def _check_context(ctx: torch.Tensor, query: torch.Tensor, channels: int, owner: str) -> torch.Tensor:
    """A context map must be B×channels×H'×W' with the query's batch size."""
    if torch.jit.is_tracing():
        return ctx
    layers.check_nchw(ctx, channels, owner)
    if ctx.shape[0] != query.shape[0]:
        raise ValueError(
            f"{owner}: expected a context map with the query's batch size {query.shape[0]}, got {ctx.shape[0]} (shape {tuple(ctx.shape)})"
        )
    return ctx


# ----------------------------------------------------------------------------------------------------------
# Non-local block
# ----------------------------------------------------------------------------------------------------------

NONLOCAL_MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")


@register(
    "nonlocal",
    family="self_attention",
    paper="Non-local Neural Networks (Wang, Girshick, Gupta, He; CVPR 2018)",
    url="https://arxiv.org/abs/1711.07971",
    complexity="O(N^2)",
    summary="Non-local block: every position aggregates g(x) over all (2×2 max-pooled) positions; BN γ=0 residual.",
    identity_at_init=True,
)
class NonLocalBlock(nn.Module):
    """Non-local block (Wang et al., CVPR 2018); B×C×H×W → B×C×H×W.

    ``z = x + BN(W_z y)``, ``y_i = 1/C(x) Σ_j f(x_i, x_j) g(x_j)`` with θ, φ, g 1×1 convs C → C/2 (bias),
    φ and g computed on the 2×2 max-pooled map when ``subsample`` (N' = N/4 keys), and ``mode``:

    - ``"embedded_gaussian"`` (default): ``softmax_j(θ_iᵀ φ_j / √d)`` — the official code's ``USE_SCALE``;
    - ``"gaussian"``: ``softmax_j(x_iᵀ x_j / √C)`` (θ, φ are the identity; ``use_scale=False`` gives the
      paper's unscaled ``exp(x_iᵀ x_j)``);
    - ``"dot_product"``: ``θ_iᵀ φ_j / N'``, computed as ``θ_iᵀ (Σ_j φ_j g_jᵀ) / N'`` (O(N·d²), no N×N' map);
    - ``"concatenation"``: ``ReLU(w_fᵀ [θ_i; φ_j]) / N'``.  Since ``w_fᵀ[θ_i; φ_j] = w_θᵀθ_i + w_φᵀφ_j``, the
      map is a broadcast sum of two 1-channel projections: N×N' scalars, never the B×2d×N×N' tensor of the
      common ``Non-local_pytorch`` code.  ``w_f`` is stored as ``concat_project`` (a 2d → 1 conv without bias,
      the layout of that code, so its weights load).

    As the official Caffe2 code (``video-nonlocal-net``): convs ~ N(0, 0.01) with zero bias, W_z conv + BN
    whose γ (and β) start at 0, so the block is the identity at init.  The softmax modes run the fused SDPA
    kernel (no N×N' tensor).  Differences from the common community code (``Non-local_pytorch``): the 1/√d
    scale is applied (official), the concatenation mode does not materialise the pairwise tensor, and the
    max-pool uses ``ceil_mode`` so odd sizes (and 1×1 maps) work without dropping the last row/column.

    Args:
        channels: input channels C.
        mode: one of ``"embedded_gaussian"``, ``"gaussian"``, ``"dot_product"``, ``"concatenation"``.
        inner_channels: width d of θ, φ, g (default ``max(1, C // 2)``).
        subsample: 2×2 max-pool before φ and g (official default).
        use_scale: scale the softmax logits by 1/√d (softmax modes only).
        use_bn: W_z conv followed by a zero-init BN (official); ``False`` zero-inits the W_z conv instead.

    Attention maps (``capture_attention``): ``"attn"``, B×1×N×N' (the normalised f / C(x)).
    """

    def __init__(
        self,
        channels: int,
        mode: str = "embedded_gaussian",
        inner_channels: int | None = None,
        subsample: bool = True,
        use_scale: bool = True,
        use_bn: bool = True,
    ) -> None:
        super().__init__()
        owner = "NonLocalBlock"
        positive_int(channels, owner, "channels")
        check_arg(mode in NONLOCAL_MODES, owner, "mode", f"one of {NONLOCAL_MODES}", mode)
        inner = _width(channels, 2, inner_channels, owner, "inner_channels")
        self.channels, self.inner_channels, self.mode = channels, inner, mode
        self.subsample, self.use_scale = bool(subsample), bool(use_scale)
        embedded = mode != "gaussian"
        self.theta = _conv1x1(channels, inner, True, 0.01) if embedded else None
        self.phi = _conv1x1(channels, inner, True, 0.01) if embedded else None
        self.g = _conv1x1(channels, inner, True, 0.01)
        self.concat_project = _conv1x1(2 * inner, 1, False, 0.01) if mode == "concatenation" else None
        self.out = _conv1x1(inner, channels, True, 0.01)
        if use_bn:
            self.bn = _zero_bn(channels)
        else:
            self.bn = None
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "NonLocalBlock")
        h, w = x.shape[2], x.shape[3]
        src = _pool2(x) if self.subsample else x
        g = self.g(src)
        if self.theta is None or self.phi is None:  # gaussian: θ and φ are the identity
            q, k = x, src
        else:
            q, k = self.theta(x), self.phi(src)
        if self.mode == "embedded_gaussian" or self.mode == "gaussian":
            d = self.inner_channels if self.theta is not None else self.channels
            scale = d**-0.5 if self.use_scale else 1.0
            y = _to_map(layers.attention(_tokens(q), _tokens(k), _tokens(g), scale=scale, module=self), h, w)
        elif self.mode == "dot_product":
            qf, kf, gf = q.flatten(2), k.flatten(2), g.flatten(2)  # B×d×N, B×d×N', B×d×N'
            inv_n = 1.0 / kf.shape[2]
            if is_capturing(self):
                check_map_size(self, (qf.shape[0], 1, qf.shape[2], kf.shape[2]), "attn")
                record(self, "attn", (qf.transpose(1, 2) @ kf * inv_n).unsqueeze(1))
            context = torch.bmm(gf, kf.transpose(1, 2)) * inv_n  # B×d_g×d: Σ_j g_j φ_jᵀ / N'
            y = torch.bmm(context, qf).unflatten(2, (h, w))
        else:  # concatenation
            assert self.concat_project is not None
            w_theta, w_phi = self.concat_project.weight.split(self.inner_channels, dim=1)
            a = F.conv2d(q, w_theta).flatten(1)  # B×N
            b = F.conv2d(k, w_phi).flatten(1)  # B×N'
            inv_n = 1.0 / b.shape[1]
            f = (a.unsqueeze(2) + b.unsqueeze(1)).relu_()  # B×N×N' scalars
            if is_capturing(self):
                record(self, "attn", (f * inv_n).unsqueeze(1))
            y = torch.bmm(f, g.flatten(2).transpose(1, 2)) * inv_n  # B×N×d
            y = y.transpose(1, 2).unflatten(2, (h, w))
        z = self.out(y)
        if self.bn is not None:
            z = self.bn(z)
        return x + z


# ----------------------------------------------------------------------------------------------------------
# SAGAN
# ----------------------------------------------------------------------------------------------------------


@register(
    "sagan",
    family="self_attention",
    paper="Self-Attention Generative Adversarial Networks (Zhang, Goodfellow, Metaxas, Odena; ICML 2019)",
    url="https://arxiv.org/abs/1805.08318",
    complexity="O(N^2)",
    summary="SAGAN self-attention: C/8 query/key, softmax over positions, γ-scaled residual (γ=0 at init).",
    identity_at_init=True,
)
class SAGANAttention(nn.Module):
    """SAGAN self-attention (Zhang et al., ICML 2019); B×C×H×W → B×C×H×W.

    ``q, k = W_q x, W_k x`` (C → C/8), ``v = W_v x`` (C → ``value_channels``, default C);
    ``o_i = Σ_j softmax_j(q_iᵀ k_j) v_j`` (no scaling, as the paper); optional output conv
    (value_channels → C); ``y = x + γ·o`` with γ = 0 at init (identity).

    Defaults are the widely used PyTorch form (``Self-Attention-GAN`` ``Self_Attn``: biases, values of width C,
    no pooling, no output conv).  ``value_channels=C//2, pool=True, out_conv=True, bias=False`` is the official
    TensorFlow block (``sn_non_local_block_sim``: keys and values 2×2 max-pooled after their convs, C/2
    values, an output conv); spectral normalisation is a training choice of the GAN and is left to the user
    (``torch.nn.utils.parametrizations.spectral_norm`` on the convs).  Convs are Xavier-uniform initialised
    as the official code.  The community versions return ``(out, attention)`` and build the N×N matrix; this
    returns the output only and runs the fused SDPA kernel (the map is available through
    ``capture_attention``).  Odd sizes are pooled with ``ceil_mode`` (nothing dropped).

    Args:
        channels: input channels C.
        reduction: query/key width ``max(1, C // reduction)``.
        qk_channels: explicit query/key width.
        value_channels: value width (default C).
        pool: 2×2 max-pool keys and values (N/4 keys), as the official TF code.
        out_conv: 1×1 conv value_channels → C after the attention; default: only when value_channels ≠ C.
        bias: biases on the 1×1 convs.

    Attention maps: ``"attn"``, B×1×N×N'.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 8,
        qk_channels: int | None = None,
        value_channels: int | None = None,
        pool: bool = False,
        out_conv: bool | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        owner = "SAGANAttention"
        positive_int(channels, owner, "channels")
        qk = _width(channels, reduction, qk_channels, owner, "qk_channels")
        dv = channels if value_channels is None else positive_int(value_channels, owner, "value_channels")
        out_conv = dv != channels if out_conv is None else bool(out_conv)
        check_arg(out_conv or dv == channels, owner, "value_channels (with out_conv=False)", f"equal to channels={channels}", dv)
        self.channels, self.pool, self.qk_channels, self.value_channels = channels, bool(pool), qk, dv
        self.query = _conv1x1(channels, qk, bias)
        self.key = _conv1x1(channels, qk, bias)
        self.value = _conv1x1(channels, dv, bias)
        self.out = _conv1x1(dv, channels, bias) if out_conv else None
        for conv in (self.query, self.key, self.value, self.out):
            if conv is not None:
                nn.init.xavier_uniform_(conv.weight)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "SAGANAttention")
        h, w = x.shape[2], x.shape[3]
        q, k, v = self.query(x), self.key(x), self.value(x)
        if self.pool:
            k, v = _pool2(k), _pool2(v)
        o = _to_map(layers.attention(_tokens(q), _tokens(k), _tokens(v), scale=1.0, module=self), h, w)
        if self.out is not None:
            o = self.out(o)
        return x + self.gamma * o


# ----------------------------------------------------------------------------------------------------------
# DANet
# ----------------------------------------------------------------------------------------------------------

_DANET_PAPER = "Dual Attention Network for Scene Segmentation (Fu et al.; CVPR 2019)"
_DANET_URL = "https://arxiv.org/abs/1809.02983"


@register(
    "danet_position",
    family="self_attention",
    paper=_DANET_PAPER,
    url=_DANET_URL,
    complexity="O(N^2)",
    summary="DANet position attention (PAM): C/8 query/key, softmax over positions, γ residual (γ=0 at init).",
    identity_at_init=True,
)
class DANetPositionAttention(nn.Module):
    """DANet position attention module, PAM (Fu et al., CVPR 2019); B×C×H×W → B×C×H×W.

    As the official ``PAM_Module``: ``Q, K = Conv1×1(C → C/8)`` and ``V = Conv1×1(C → C)``, all with bias;
    ``S = softmax_j(Q_iᵀ K_j)`` with **no** 1/√d scale; ``E = γ·(V Sᵀ) + x`` with γ = 0 at init.  Works at any
    H×W.  The community ``DANet.py`` instead uses full-width linear q/k/v with a 1/√d scale, an output
    linear layer, dropout and no γ/residual, and its ``DAModule`` is hard-wired to 512 channels at 7×7.

    Args:
        channels: input channels C.
        reduction: query/key width ``max(1, C // reduction)`` (official 8).
        qk_channels: explicit query/key width.

    Attention maps: ``"attn"``, B×1×N×N.
    """

    def __init__(self, channels: int, reduction: int = 8, qk_channels: int | None = None) -> None:
        super().__init__()
        owner = "DANetPositionAttention"
        positive_int(channels, owner, "channels")
        qk = _width(channels, reduction, qk_channels, owner, "qk_channels")
        self.channels, self.qk_channels = channels, qk
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def term(self, x: torch.Tensor) -> torch.Tensor:
        """The attention output ``V Sᵀ`` (before γ and the residual), B×C×H×W; ``x`` is not checked."""
        h, w = x.shape[2], x.shape[3]
        q, k, v = self.query(x), self.key(x), self.value(x)
        return _to_map(layers.attention(_tokens(q), _tokens(k), _tokens(v), scale=1.0, module=self), h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "DANetPositionAttention")
        return x + self.gamma * self.term(x)


@torch.fx.wrap
def _cam_attention(flat: torch.Tensor) -> torch.Tensor:
    """CAM's ``softmax(rowmax(E) − E)`` with ``E = X Xᵀ`` for X: B×C×N, in float32 or better.

    E grows with N (hundreds to thousands), so its rounding in bfloat16 would reorder the softmax: under
    autocast the energy and the softmax still run in float32 (float64 inputs stay float64).
    """
    with torch.autocast(device_type=flat.device.type, enabled=False):
        xf = flat if flat.dtype == torch.float64 else flat.float()
        energy = torch.bmm(xf, xf.transpose(1, 2))  # B×C×C
        return (energy.amax(-1, keepdim=True) - energy).softmax(-1)


@register(
    "danet_channel",
    family="self_attention",
    paper=_DANET_PAPER,
    url=_DANET_URL,
    complexity="O(N)",
    summary="DANet channel attention (CAM): softmax(rowmax(E) − E) over channels, β residual (β=0 at init).",
    identity_at_init=True,
)
class DANetChannelAttention(nn.Module):
    """DANet channel attention module, CAM (Fu et al., CVPR 2019); B×C×H×W → B×C×H×W.

    As the official ``CAM_Module``, parameter-free except β: ``X = x`` as B×C×N, ``E = X Xᵀ`` (B×C×C),
    ``A = softmax(rowmax(E) − E)`` over channels, ``out = β·(A X) + x`` with β = 0 at init.  Note
    ``softmax(rowmax(E) − E) = softmax(−E)``: the official code flips the sign of the paper's ``softmax(E)``
    (channels attend to dissimilar channels; the authors kept it, DANet issues #9, #48, #106) — reproduced
    here for parity.  The energy and the softmax are computed in float32 (E grows with H·W).  The C×C map is
    small, so it is computed explicitly (and always recorded).  The community ``DANet.py`` CAM is a scaled
    softmax of ``X Xᵀ/√(HW)`` with an ``HW × HW`` output linear layer, which ties it to one input size.

    Args:
        channels: input channels C (checked; CAM has no weights apart from β).

    Attention maps: ``"attn"``, B×C×C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        positive_int(channels, "DANetChannelAttention", "channels")
        self.channels = channels
        self.beta = nn.Parameter(torch.zeros(1))

    def term(self, x: torch.Tensor) -> torch.Tensor:
        """The attention output ``A X`` (before β and the residual), B×C×H×W; ``x`` is not checked."""
        flat = x.flatten(2)  # B×C×N
        attn = _cam_attention(flat)
        record(self, "attn", attn)
        return torch.bmm(attn.to(flat.dtype), flat).view(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "DANetChannelAttention")
        return x + self.beta * self.term(x)


@register(
    "danet",
    family="self_attention",
    paper=_DANET_PAPER,
    url=_DANET_URL,
    complexity="O(N^2)",
    summary="DANet dual attention: x + γ_p·PAM-term + γ_c·CAM-term, parallel on the same input (identity at init).",
    identity_at_init=True,
)
class DANetAttention(nn.Module):
    """DANet dual attention (Fu et al., CVPR 2019); B×C×H×W → B×C×H×W.

    Position and channel attention in parallel on the same map, summed as one residual:
    ``y = x + γ_p·PAM-term(x) + γ_c·CAM-term(x)`` = ``PAM(x) + CAM(x) − x``, with γ_p = γ_c = 0 at init
    (identity).  ``position`` and ``channel`` are the :class:`DANetPositionAttention` and
    :class:`DANetChannelAttention` modules (their ``gamma`` / ``beta`` are γ_p / γ_c).  The official
    ``DANetHead`` also has 3×3 conv-BN-ReLU reductions around each branch and a classifier: those belong to
    the segmentation head, not to the attention block.  The community ``DAModule`` ignores its arguments
    (always 512 channels, 7×7 input) and drops γ and the residual.

    Args:
        channels: input channels C.
        reduction: PAM query/key width ``max(1, C // reduction)``.
        qk_channels: explicit PAM query/key width.
    """

    def __init__(self, channels: int, reduction: int = 8, qk_channels: int | None = None) -> None:
        super().__init__()
        positive_int(channels, "DANetAttention", "channels")
        self.channels = channels
        self.position = DANetPositionAttention(channels, reduction, qk_channels)
        self.channel = DANetChannelAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "DANetAttention")
        return x + self.position.gamma * self.position.term(x) + self.channel.beta * self.channel.term(x)


# ----------------------------------------------------------------------------------------------------------
# CGNL
# ----------------------------------------------------------------------------------------------------------

CGNL_KERNELS = ("dot", "gaussian")


@register(
    "cgnl",
    family="self_attention",
    paper="Compact Generalized Non-local Network (Yue, Sun, Yuan, Zhou, Ding, Xu; NeurIPS 2018)",
    url="https://arxiv.org/abs/1810.13125",
    complexity="O(N)",
    summary="CGNL: one attention scalar per channel group from ⟨φ, g⟩ over all positions and channels; GN zero-init.",
    identity_at_init=True,
)
class CompactGeneralizedNonLocal(nn.Module):
    """Compact Generalized Non-local block (Yue et al., NeurIPS 2018); B×C×H×W → B×C×H×W.

    As the official ``SpatialCGNL`` / ``SpatialCGNLx``: θ, φ, g are 1×1 convs C → planes (C/2, no bias),
    split into G groups of c' = planes/G channels.  Within a group every position of every channel is one
    entry of a c'·H·W vector, and the kernel factorises, so the (c'N)×(c'N) affinity collapses to scalars:

    - ``kernel="dot"``: ``y = ⟨φ, g⟩ · θ`` — one scalar per group and sample;
    - ``kernel="gaussian"``: the order-P Taylor expansion of ``exp(−γ‖θ−φ‖²)`` with the official
      simplification β = exp(−2γ): ``y = Σ_{p=0}^{P} α_p² ⟨φ^p, g⟩ θ^p``, ``α_p² = β (2γ)^p / p!`` — P+1
      scalars per group and sample.

    ``use_scale`` divides the scalars by √(c'·H·W).  Then a grouped 1×1 conv planes → C (G groups, no bias)
    and GroupNorm(G, C) whose weight and bias start at 0: ``z = x + GN(W_z y)`` is the identity at init.  Convs
    ~ N(0, 0.01) as the official one-block initialisation.  Community versions often use a softmax over
    positions (that is NL), BatchNorm, no grouped output conv, or per-channel scalars; the official Taylor
    kernel calls ``.cuda()`` (CPU unsafe) — none of that here.

    Args:
        channels: input channels C.
        planes: width of θ, φ, g (default ``max(1, C // 2)``); divisible by ``groups``.
        groups: G; divides ``planes`` and C.
        kernel: ``"dot"`` or ``"gaussian"`` (Taylor-expanded RBF).
        order: Taylor order P of the Gaussian kernel (3 in the released models).
        gamma: γ of the Gaussian kernel (1e-4 official).
        use_scale: divide the scalars by √(c'·H·W) (off in the official models).

    Attention maps: ``"attn"``, B×G (dot) or B×G×(P+1) (gaussian): the per-group scalars.
    """

    def __init__(
        self,
        channels: int,
        planes: int | None = None,
        groups: int = 8,
        kernel: str = "dot",
        order: int = 3,
        gamma: float = 1e-4,
        use_scale: bool = False,
    ) -> None:
        super().__init__()
        owner = "CompactGeneralizedNonLocal"
        positive_int(channels, owner, "channels")
        planes = _width(channels, 2, planes, owner, "planes")
        positive_int(groups, owner, "groups")
        check_arg(planes % groups == 0, owner, "groups", f"a divisor of planes={planes}", groups)
        check_arg(channels % groups == 0, owner, "groups", f"a divisor of channels={channels}", groups)
        check_arg(kernel in CGNL_KERNELS, owner, "kernel", f"one of {CGNL_KERNELS}", kernel)
        check_arg(isinstance(order, int) and not isinstance(order, bool) and order >= 0, owner, "order", "a non-negative integer", order)
        check_arg(isinstance(gamma, (int, float)) and gamma > 0, owner, "gamma", "a positive number", gamma)
        self.channels, self.planes, self.groups = channels, planes, groups
        self.kernel, self.order, self.gamma, self.use_scale = kernel, order, float(gamma), bool(use_scale)
        self.t = _conv1x1(channels, planes, False, 0.01)
        self.p = _conv1x1(channels, planes, False, 0.01)
        self.g = _conv1x1(channels, planes, False, 0.01)
        self.z = _conv1x1(planes, channels, False, 0.01, groups=groups)
        self.gn = nn.GroupNorm(groups, channels)
        nn.init.zeros_(self.gn.weight)
        nn.init.zeros_(self.gn.bias)
        beta = math.exp(-2 * self.gamma)
        #: α_p² of the Taylor terms (the official α_p = sqrt(β (2γ)^p / p!)).
        self.taylor = tuple(beta * (2 * self.gamma) ** p / math.factorial(p) for p in range(order + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "CompactGeneralizedNonLocal")
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        t = self.t(x).reshape(b, self.groups, -1)  # B×G×(c'·N)
        p = self.p(x).reshape(b, self.groups, -1)
        g = self.g(x).reshape(b, self.groups, -1)
        norm = t.shape[2] ** -0.5 if self.use_scale else 1.0
        if self.kernel == "dot":
            att = (p * g).sum(-1) * norm  # B×G: one scalar per group and sample
            record(self, "attn", att)
            y = t * att.unsqueeze(-1)
        else:
            atts = [g.sum(-1) * (norm * self.taylor[0])]  # p^0 = 1
            y = atts[0].unsqueeze(-1).expand_as(t)  # θ^0 = 1
            for k in range(1, self.order + 1):
                atts.append((p.pow(k) * g).sum(-1) * (norm * self.taylor[k]))
                y = y + atts[k].unsqueeze(-1) * t.pow(k)
            record(self, "attn", torch.stack(atts, -1))
        y = y.reshape(b, self.planes, h, w)
        return x + self.gn(self.z(y))


# ----------------------------------------------------------------------------------------------------------
# Cross-layer non-local
# ----------------------------------------------------------------------------------------------------------


@register(
    "cross_layer_nonlocal",
    family="self_attention",
    paper="Associating Multi-Scale Receptive Fields for Fine-grained Recognition (Ye et al.; ICIP 2020)",
    url="https://github.com/FouriYe/CNL-ICIP2020",
    layout="pair",
    complexity="O(N^2)",
    summary="Cross-layer non-local: queries from one map, keys/values from one or several other maps; BN zero-init.",
    identity_at_init=True,
)
class CrossLayerNonLocal(nn.Module):
    """Cross-layer non-local block, CNL (Ye et al., ICIP 2020); ``forward(query_map, context)`` → query-shaped.

    ``query_map``: B×C×H×W.  ``context``: one map B×C_m×H_m×W_m or a list of maps, each with its own channels
    (``context_channels``) and resolution.  As the official ``CNL_5``: ``t = θ(query)`` (1×1 conv C → planes,
    shared), per context map ``p_m, g_m = Conv1×1(C_m → planes)`` (no bias),
    ``A_m = softmax(tᵀ p_m / √planes)`` (N × N_m), ``y_m = BN_m(W_z (A_m g_m))`` with the W_z conv
    (planes → C) shared and a BN per context map, ``out = query + Σ_m y_m``.  Convs ~ N(0, 0.01), BN weight
    and bias 0: the identity at init.  Differences from the official code: the attended values are transposed
    back to B×planes×H×W (the official ``view`` reinterprets the N×planes result as planes×N, scrambling
    positions and channels), the residual is inside the block, and the attention runs the fused SDPA kernel.

    Args:
        channels: query channels C.
        context_channels: channels of the context map (an int, default C), or a list with one entry per
            context map (then ``context`` must be a list of that length).
        planes: inner width (default ``max(1, C // 8)`` as the official 2048 → 256).
        use_scale: 1/√planes on the logits (official).

    Attention maps: ``"attn"`` (one context map) or ``"attn0"``, ``"attn1"``, ... : B×1×N×N_m.
    """

    def __init__(
        self,
        channels: int,
        context_channels: int | Sequence[int] | None = None,
        planes: int | None = None,
        use_scale: bool = True,
    ) -> None:
        super().__init__()
        owner = "CrossLayerNonLocal"
        positive_int(channels, owner, "channels")
        if context_channels is None or isinstance(context_channels, int):
            ctx = [channels if context_channels is None else context_channels]
            self.single = True
        else:
            check_arg(isinstance(context_channels, Sequence) and len(context_channels) >= 1, owner, "context_channels",
                      "an int or a non-empty list of ints", context_channels)
            ctx = list(context_channels)
            self.single = False
        for c in ctx:
            positive_int(c, owner, "context_channels")
        planes = _width(channels, 8, planes, owner, "planes")
        self.channels, self.context_channels, self.planes = channels, tuple(ctx), planes
        self.scale = planes ** -0.5 if use_scale else 1.0
        self.theta = _conv1x1(channels, planes, False, 0.01)
        self.phi = nn.ModuleList(_conv1x1(c, planes, False, 0.01) for c in ctx)
        self.g = nn.ModuleList(_conv1x1(c, planes, False, 0.01) for c in ctx)
        self.out = _conv1x1(planes, channels, False, 0.01)
        self.bn = nn.ModuleList(_zero_bn(channels) for _ in ctx)

    def forward(self, query_map: torch.Tensor, context: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        owner = "CrossLayerNonLocal"
        query_map = layers.check_nchw(query_map, self.channels, owner)
        contexts = list(context) if isinstance(context, (list, tuple)) else [context]
        if len(contexts) != len(self.context_channels):
            raise ValueError(
                f"{owner}: expected {len(self.context_channels)} context map(s) with channels {list(self.context_channels)}, got {len(contexts)}"
            )
        h, w = query_map.shape[2], query_map.shape[3]
        t = _tokens(self.theta(query_map))
        out = query_map
        for m, (ctx, c_m, phi, g, bn) in enumerate(zip(contexts, self.context_channels, self.phi, self.g, self.bn)):
            ctx = _check_context(ctx, query_map, c_m, owner)
            key = "attn" if len(self.context_channels) == 1 else f"attn{m}"
            y = _to_map(layers.attention(t, _tokens(phi(ctx)), _tokens(g(ctx)), scale=self.scale, module=self, key=key), h, w)
            out = out + bn(self.out(y))
        return out
