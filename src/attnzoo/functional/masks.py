"""Attention masks for token sequences: user masks → SDPA masks, explicit probabilities, dead queries.

User masks are boolean (True = masked out) or additive floats.  A query whose keys are all masked is "dead":
its mask row is opened so the softmax stays finite in every kernel and dtype, and its output is zeroed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tracing import fx_leaf
from .attention import sdpa

__all__ = ["check_broadcast", "prepare_mask", "masked_attention", "probabilities", "zero_dead_queries"]


def check_broadcast(m: torch.Tensor, target: tuple[int, int, int, int], owner: str, what: str) -> None:
    ok = m.dim() <= 4 and all(s in (1, t) for s, t in zip(m.shape[::-1], target[::-1]))
    if not ok:
        b, h, nq, nk = target
        raise ValueError(
            f"{owner}: {what} must be broadcastable to B×heads×Nq×Nk = {b}×{h}×{nq}×{nk} "
            f"(2-D: Nq×Nk, 3-D: heads×Nq×Nk), got shape {tuple(m.shape)}"
        )


@fx_leaf
def prepare_mask(
    mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    owner: str,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """User masks (True / -inf = masked out) → (SDPA mask, dead rows).

    q: B×h×Nq×d, k: B×h×Nk×d.  The SDPA mask is boolean with True = keep, or additive in q's dtype.  ``dead``
    (broadcastable to B×h×Nq×1) marks queries whose keys are all masked: their mask row is opened (so softmax
    stays finite in every kernel and dtype, forward and backward) and their output is zeroed afterwards.
    """
    if mask is None and key_padding_mask is None:
        return None, None
    b, h, nq, nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    target = (b, h, nq, nk)
    parts: list[torch.Tensor] = []
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"{owner}: mask must be a tensor (bool or float), got {type(mask).__name__}")
        check_broadcast(mask, target, owner, "mask")
        parts.append(mask)
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or tuple(key_padding_mask.shape) != (b, nk):
            got = (
                tuple(key_padding_mask.shape)
                if isinstance(key_padding_mask, torch.Tensor)
                else type(key_padding_mask).__name__
            )
            raise ValueError(f"{owner}: key_padding_mask must be a B×Nk = {b}×{nk} tensor, got {got}")
        parts.append(key_padding_mask[:, None, None, :])
    if all(p.dtype == torch.bool for p in parts):
        masked = parts[0] if len(parts) == 1 else parts[0] | parts[1]
        keep = ~masked
        dead = ~keep.any(-1, keepdim=True)
        return keep | dead, dead
    if any(p.is_complex() or not (p.is_floating_point() or p.dtype == torch.bool) for p in parts):
        raise ValueError(f"{owner}: mask must be bool or floating point, got {[p.dtype for p in parts]}")
    dtype = q.dtype
    add = None
    for p in parts:
        p = (
            torch.zeros((), dtype=dtype, device=p.device).masked_fill(p, float("-inf"))
            if p.dtype == torch.bool
            else p.to(dtype)
        )
        add = p if add is None else add + p
    if add is None:  # unreachable: parts is non-empty
        return None, None
    dead = (add == float("-inf")).all(-1, keepdim=True)
    return add.masked_fill(dead, 0.0), dead


@fx_leaf
def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dead: torch.Tensor | None,
    weights: torch.Tensor | None,
    scale: float,
    dropout_p: float,
    owner: str,
) -> torch.Tensor:
    """softmax(q kᵀ·scale [· weights] [+ mask]) v with zeroed dead rows; fused SDPA unless ``weights`` is given."""
    if weights is None:  # fused kernel, also when d_k != d_v (the shared wrapper pads the narrower heads)
        out = sdpa(q, k, v, mask, scale, dropout_p)
    else:
        if not isinstance(weights, torch.Tensor):
            raise ValueError(f"{owner}: weights must be a tensor, got {type(weights).__name__}")
        check_broadcast(weights, (q.shape[0], q.shape[1], q.shape[2], k.shape[2]), owner, "weights")
        probs = probabilities(q, k, mask, dead, weights, scale)
        probs = F.dropout(probs, dropout_p, training=dropout_p > 0)
        out = probs @ v
    if dead is not None:
        out = out.masked_fill(dead, 0.0)
    return out


def probabilities(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None,
    dead: torch.Tensor | None,
    weights: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """The explicit B×h×Nq×Nk attention probabilities (softmax in at least float32), zero on dead rows."""
    acc = torch.promote_types(q.dtype, torch.float32)
    logits = (q @ k.transpose(-2, -1)).to(acc) * scale
    if weights is not None:
        logits = logits * weights.to(acc)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask.to(acc)
    probs = logits.softmax(-1)
    if dead is not None:
        probs = probs.masked_fill(dead, 0.0)
    return probs.to(q.dtype)


@fx_leaf
def zero_dead_queries(out: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
    """Zero the output rows (B×Nq×C) of queries that see no key in any head."""
    if dead is None:
        return out
    b, nq = out.shape[0], out.shape[1]
    while dead.dim() < 4:
        dead = dead.unsqueeze(0)
    all_dead = dead.all(1).expand(b, nq, 1) if dead.shape[1] > 1 else dead[:, 0].expand(b, nq, 1)
    return out.masked_fill(all_dead, 0.0)
