"""Dot-product attention kernels: the fused SDPA path and the explicit path that returns the probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tracing import fx_leaf

__all__ = ["sdpa", "explicit_attention"]


@fx_leaf
def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` arranged so PyTorch picks its fused kernel.

    q: …×Nq×d, k: …×Nk×d, v: …×Nk×dv.  The CPU flash kernel needs stride-1 last dimensions and one head width
    for q, k and v; otherwise SDPA silently takes the math path that builds the Nq×Nk matrix.  Narrower sides
    are zero-padded: zero columns in q and k add nothing to q·k, zero columns in v give output columns that
    are cut off.  ``mask`` is additive (float) or boolean with True = keep, as SDPA.
    """
    d, dv = q.shape[-1], v.shape[-1]
    if scale is None:
        scale = d**-0.5
    if d < dv:
        q, k = F.pad(q, (0, dv - d)), F.pad(k, (0, dv - d))
    elif dv < d:
        v = F.pad(v, (0, d - dv))
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return out[..., :dv] if dv < d else out


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax(q kᵀ · scale + mask) v, probabilities)`` with the Nq×Nk probabilities built explicitly.

    Half precision is upcast to float32 for the softmax; the probabilities are returned in v's dtype.
    """
    s = scale if scale is not None else q.shape[-1] ** -0.5
    logits = q @ k.transpose(-2, -1)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logits = logits * s
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    probs = logits.softmax(-1).to(v.dtype)
    out = F.dropout(probs, dropout_p, training=dropout_p > 0) @ v
    return out, probs
