"""EfficientDet: Scalable and Efficient Object Detection (Tan, Pang, Le; CVPR 2020) — the weighted fusion node
of BiFPN on its own.  Paper: https://arxiv.org/abs/1911.09070"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..capture import record
from ..layers import (
    AttnModule,
    check_arg,
    check_choice,
    check_same_shape,
    inplace_ok,
    positive_int,
    positive_number,
    softmax_fp32,
)
from ..registry import register

__all__ = ["FUSIONS", "WeightedFusion", "fusion_weights"]

#: The fusion rules of EfficientDet's nodes (``weight_method`` in google/automl): "fast" (fast normalised
#: fusion, the paper's choice), "softmax" (softmax-based fusion) and "sum" (unweighted).
FUSIONS = ("fast", "softmax", "sum")


def fusion_weights(w: torch.Tensor | None, fusion: str, eps: float, n: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised weights of one fusion node: ``ReLU(w)/(Σ ReLU(w) + eps)``, ``softmax(w)`` or ones (``"sum"``).

    Computed in at least float32 and returned in the dtype of ``like`` (the fused maps)."""
    if w is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    wf = w.to(torch.promote_types(w.dtype, torch.float32))
    if fusion == "fast":
        wf = torch.relu(wf)
        wf = wf / (wf.sum() + eps)
    else:
        wf = softmax_fp32(wf, 0)
    return wf.to(torch.promote_types(like.dtype, w.dtype))


def weighted_sum(xs: Sequence[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """``Σ_i w_i · x_i`` for a 1-D weight vector.  Without autograd in place (``addcmul_``, one pass per input);
    otherwise ``out + x_i · w_i``, not ``torch.addcmul``: pnnx turns that into an expression ncnn cannot run, and
    it is no faster (benchmarks/export_forms.py)."""
    out = xs[0] * w[0]
    inplace = inplace_ok()
    for i in range(1, len(xs)):
        out = out.addcmul_(xs[i], w[i]) if inplace else out + xs[i] * w[i]
    return out


@register(
    "weighted_fusion",
    family="fusion",
    paper="EfficientDet: Scalable and Efficient Object Detection (Tan, Pang, Le; CVPR 2020)",
    url="https://arxiv.org/abs/1911.09070",
    layout="multi",
    complexity="O(N)",
    summary="BiFPN's fusion node: Σ_i w_i·x_i with learned scalar weights, fast-normalised w = ReLU(w)/(Σw + 1e-4).",
    maps=("weights",),
)
class WeightedFusion(AttnModule):
    """BiFPN's weighted feature fusion node (EfficientDet, CVPR 2020): ``[x_1, ..., x_n]`` → ``Σ_i w̃_i · x_i``.

    All inputs share one shape B×C×H×W (resize them first); output B×C×H×W.  ``w`` is one learned scalar per
    input, initialised to 1 (as the official code), normalised by ``fusion``:

    * ``"fast"`` (default, the paper's): ``w̃_i = ReLU(w_i) / (Σ_j ReLU(w_j) + eps)``, eps = 1e-4;
    * ``"softmax"``: ``w̃ = softmax(w)``;
    * ``"sum"``: ``w̃_i = 1`` (no parameter: YOLOv5's "BiFPN" is a plain ``Concat``, many others this sum).

    This is the node alone; EfficientDet follows it with a depthwise-separable conv + BN + activation
    (:class:`attnzoo.fusion.BiFPN`).  The widely copied YOLO "BiFPN_Add"/"BiFPN_Concat" drop the ReLU
    (weights can turn negative); see docs/provenance/weighted_fusion.md.

    Args:
        channels: channels C of every input.
        num_inputs: number of maps n (≥ 2).
        fusion: ``"fast"``, ``"softmax"`` or ``"sum"``.
        eps: the fast fusion's epsilon (1e-4).

    Captured map: ``"weights"`` (n,), the normalised weights.
    """

    def __init__(self, channels: int, num_inputs: int = 2, fusion: str = "fast", eps: float = 1e-4) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.num_inputs = positive_int(num_inputs, self.owner, "num_inputs")
        check_arg(num_inputs >= 2, self.owner, "num_inputs", "an integer ≥ 2", num_inputs)
        self.fusion = check_choice(fusion, FUSIONS, self.owner, "fusion")
        self.eps = float(positive_number(eps, self.owner, "eps"))
        self.weight = nn.Parameter(torch.ones(num_inputs)) if fusion != "sum" else None

    def normalised_weights(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """The fusion weights w̃ (n,)."""
        ref = like if like is not None else torch.empty(0)
        return fusion_weights(self.weight, self.fusion, self.eps, self.num_inputs, ref)

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        x = check_same_shape(x, self.num_inputs, self.channels, self.owner)
        xs = [x[i] for i in range(self.num_inputs)]
        w = self.normalised_weights(xs[0])
        record(self, "weights", w)
        return weighted_sum(xs, w.to(xs[0].dtype))
