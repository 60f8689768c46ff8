"""Non-local Neural Networks (Wang, Girshick, Gupta, He; CVPR 2018).  Paper: https://arxiv.org/abs/1711.07971"""

from __future__ import annotations

from typing import cast

import torch
import torch.fx
import torch.nn as nn

from ..capture import check_map_size, is_capturing, record
from ..layers import (
    AttnModule,
    attention,
    check_arg,
    check_rank_arg,
    check_spatial,
    conv1x1,
    conv_fn,
    heads_to_map,
    hidden_width,
    map_to_heads,
    max_pool_ceil,
    per_axis,
    positive_int,
    zero_bn,
)
from ..layers.checks import check_choice
from ..registry import register

__all__ = ["NonLocalBlock"]


NONLOCAL_MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")
#: ``subsample=True`` per spatial rank: 2 on a signal, 2×2 on a map, (1, 2, 2) on a clip (space only, as the video
#: papers: the official video-nonlocal-net, SlowFast, mmcv's NonLocal3d).
SUBSAMPLE = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}


@register(
    "nonlocal",
    family="self_attention",
    paper="Non-local Neural Networks (Wang, Girshick, Gupta, He; CVPR 2018)",
    url="https://arxiv.org/abs/1711.07971",
    complexity="O(N^2)",
    summary="Non-local block: every position aggregates g(x) over all (2×2 max-pooled) positions; BN γ=0 residual.",
    identity_at_init=True,
    maps=("attn",),
    dims=(1, 2, 3),
)
class NonLocalBlock(AttnModule):
    """Non-local block (Wang et al., CVPR 2018); B×C×H×W → B×C×H×W (``dims=1``: B×C×L, ``dims=3``: B×C×D×H×W).

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

    In 1-D and 3-D the positions are all those of the signal or the clip (the paper's space-time block) and the
    convs are 1 / 1×1×1; ``subsample=True`` pools 2 on a signal and (1, 2, 2) on a clip (space only, as the
    video papers' code), and a per-axis tuple chooses another, e.g. (2, 2, 2) for isotropic volumes.  mmcv's
    ``NonLocal1d/2d/3d`` pool after the φ and g convs (a different function of x); this pools x before them, as
    the official code.

    Args:
        channels: input channels C.
        mode: one of ``"embedded_gaussian"``, ``"gaussian"``, ``"dot_product"``, ``"concatenation"``.
        inner_channels: width d of θ, φ, g (default ``max(1, C // 2)``).
        subsample: max-pool x before φ and g (official default): ``True`` (2, 2×2 or 1×2×2 by ``dims``),
            ``False``, or one kernel (= stride) per spatial axis.
        use_scale: scale the softmax logits by 1/√d (softmax modes only).
        use_bn: W_z conv followed by a zero-init BN (official); ``False`` zero-inits the W_z conv instead.
        dims: spatial rank of the input (1, 2 or 3).

    Attention maps (``capture_attention``): ``"attn"``, B×1×N×N' (the normalised f / C(x)).
    """

    def __init__(
        self,
        channels: int,
        mode: str = "embedded_gaussian",
        inner_channels: int | None = None,
        subsample: bool | int | tuple[int, ...] = True,
        use_scale: bool = True,
        use_bn: bool = True,
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        check_choice(mode, NONLOCAL_MODES, owner, "mode")
        self.dims = check_rank_arg(dims, owner)
        inner = hidden_width(channels, 2, inner_channels, 0, owner, "inner_channels")
        self.channels, self.inner_channels, self.mode = channels, inner, mode
        if isinstance(subsample, bool):
            pool = SUBSAMPLE[dims] if subsample else (1,) * dims
        else:
            pool = per_axis(subsample, dims, owner, "subsample")
            check_arg(all(p >= 1 for p in pool), owner, "subsample", "a bool or positive pooling sizes", subsample)
        #: the max-pool kernel (= stride) before φ and g, one per axis; ``None`` when nothing is pooled
        self.pool: tuple[int, ...] | None = pool if any(p > 1 for p in pool) else None
        self.subsample, self.use_scale = self.pool is not None, bool(use_scale)
        embedded = mode != "gaussian"
        self.theta = conv1x1(channels, inner, True, 0.01, dims=dims) if embedded else None
        self.phi = conv1x1(channels, inner, True, 0.01, dims=dims) if embedded else None
        self.g = conv1x1(channels, inner, True, 0.01, dims=dims)
        self.concat_project = conv1x1(2 * inner, 1, False, 0.01, dims=dims) if mode == "concatenation" else None
        self.out = conv1x1(inner, channels, True, 0.01, dims=dims)
        if use_bn:
            self.bn: nn.BatchNorm2d | None = zero_bn(channels, dims)
        else:
            self.bn = None
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(cast(torch.Tensor, self.out.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        size = [x.shape[2 + i] for i in range(self.dims)]
        src = x if self.pool is None else max_pool_ceil(x, self.pool)
        g = self.g(src)
        if self.theta is None or self.phi is None:  # gaussian: θ and φ are the identity
            q, k = x, src
        else:
            q, k = self.theta(x), self.phi(src)
        if self.mode == "embedded_gaussian" or self.mode == "gaussian":
            d = self.inner_channels if self.theta is not None else self.channels
            scale = d**-0.5 if self.use_scale else 1.0
            y = heads_to_map(
                attention(map_to_heads(q), map_to_heads(k), map_to_heads(g), scale=scale, module=self), *size
            )
        elif self.mode == "dot_product":
            qf, kf, gf = q.flatten(2), k.flatten(2), g.flatten(2)  # B×d×N, B×d×N', B×d×N'
            inv_n = 1.0 / kf.shape[2]
            if is_capturing(self):
                check_map_size(self, (qf.shape[0], 1, qf.shape[2], kf.shape[2]), "attn")
                record(self, "attn", (qf.transpose(1, 2) @ kf * inv_n).unsqueeze(1))
            context = torch.bmm(gf, kf.transpose(1, 2)) * inv_n  # B×d_g×d: Σ_j g_j φ_jᵀ / N'
            y = torch.bmm(context, qf).unflatten(2, size)
        else:  # concatenation
            assert self.concat_project is not None
            w_theta, w_phi = self.concat_project.weight.split(self.inner_channels, dim=1)
            a = conv_fn(self.dims)(q, w_theta).flatten(1)  # B×N
            b = conv_fn(self.dims)(k, w_phi).flatten(1)  # B×N'
            inv_n = 1.0 / b.shape[1]
            f = (a.unsqueeze(2) + b.unsqueeze(1)).relu_()  # B×N×N' scalars
            if is_capturing(self):
                record(self, "attn", (f * inv_n).unsqueeze(1))
            y = torch.bmm(f, g.flatten(2).transpose(1, 2)) * inv_n  # B×N×d
            y = y.transpose(1, 2).unflatten(2, size)
        z = self.out(y)
        if self.bn is not None:
            z = self.bn(z)
        return x + z
