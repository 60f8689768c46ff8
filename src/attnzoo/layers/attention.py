"""The one entry point of dot-product attention for modules: fused by default, explicit only under capture."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..capture import check_map_size, is_capturing, record
from ..functional.attention import explicit_attention, sdpa

__all__ = ["attention"]


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

    Runs :func:`attnzoo.functional.sdpa` (the fused kernel, memory linear in N).  ``mask`` is additive (float)
    or boolean with True = keep, as SDPA.  When ``module`` is inside ``attnzoo.capture_attention``, the
    probabilities are computed explicitly and recorded under ``key`` (the only case that builds the N×N
    matrix; its size is checked against the capture's limit first).
    """
    if module is None or not is_capturing(module):
        return sdpa(q, k, v, mask, scale, dropout_p)
    check_map_size(module, (*q.shape[:-1], k.shape[-2]), key)
    out, probs = explicit_attention(q, k, v, mask, scale, dropout_p)
    record(module, key, probs)
    return out
