"""Linear (kernelised) attention: the ReLU-kernel form of EfficientViT (Cai et al.)."""

from __future__ import annotations

import torch

from ..tracing import fx_leaf

__all__ = ["relu_linear_attention"]


@fx_leaf
def relu_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
    """``out_i = Σ_j (φq_i·φk_j) v_j / (Σ_j φq_i·φk_j + ε)`` with φ = ReLU, in O(N·d²).

    q, k: …×d×N, v: …×dv×N (channels first, the layout of a reshaped conv output); returns …×dv×N in the dtype
    of v.  Computed as ``(v φkᵀ) φq / ((Σ_j φk_j)·φq + ε)``, the products reassociated so that no N×N matrix
    exists.  The sums run over all N positions, so their magnitude grows with N and a bfloat16 / float16
    accumulator would lose the numerator and denominator (and ε = 1e-15 is 0 in float16): under autocast the
    whole kernel runs in float32 (float64 inputs stay float64).  The ε is written ``clamp(den + ε, min=ε)`` (equal to
    ``den + ε`` since den ≥ 0): the ONNX exporter folds away an ``x + c`` with |c| ≤ 1e-8, the clamp keeps it.
    """
    dtype = v.dtype
    with torch.autocast(device_type=v.device.type, enabled=False):
        work = torch.promote_types(dtype, torch.float32)
        q, k, v = torch.relu(q.to(work)), torch.relu(k.to(work)), v.to(work)
        kv = v @ k.transpose(-1, -2)  # …×dv×d
        num = kv @ q  # …×dv×N
        den = k.sum(-1, keepdim=True).transpose(-1, -2) @ q  # …×1×N
        out = num / torch.clamp(den + eps, min=eps)  # clamp (Clip), not clamp_min: pnnx has no ncnn clamp_min
    return out.to(dtype)
