"""Neighborhood attention (NAT / DiNAT) written out: one query at a time, neighbours and bias indices from
NATTEN's window-start / bias-start rules (``get_window_start`` / ``get_pb_start`` of the original CUDA/C++
kernels), explicit softmax.  Slow on purpose; takes a ``NeighborhoodAttention`` and reads its weights."""

from __future__ import annotations

import itertools

import torch


def window_start(index: int, length: int, kernel: int, dilation: int) -> int:
    ns = kernel // 2
    if dilation <= 1:
        return max(index - ns, 0) + (index + ns >= length) * (length - index - ns - 1)
    if index - ns * dilation < 0:
        return index % dilation
    if index + ns * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * ns * dilation
        return a + imodd - kernel * dilation
    return index - ns * dilation


def bias_start(index: int, length: int, kernel: int, dilation: int) -> int:
    ns = kernel // 2
    if dilation <= 1:
        return ns + (index < ns) * (ns - index) + (index + ns >= length) * (length - index - 1 - ns)
    if index - ns * dilation < 0:
        return kernel - 1 - index // dilation
    if index + ns * dilation >= length:
        return (length - index - 1) // dilation
    return ns


def axis_neighbours(index: int, length: int, kernel: int, dilation: int) -> tuple[list[int], list[int]]:
    """(positions, bias-table indices) of one query along one axis, with attnzoo's documented shrinking."""
    if length < kernel:  # the whole axis; offsets into the (2k-1) table
        return list(range(length)), [p - index + kernel - 1 for p in range(length)]
    if length < kernel * dilation:
        dilation = max(1, length // kernel)
    s, pb = window_start(index, length, kernel, dilation), bias_start(index, length, kernel, dilation)
    return [s + t * dilation for t in range(kernel)], [pb + t for t in range(kernel)]


@torch.no_grad()
def neighborhood_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: int, dilation: int,
                               rpb: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """q, k, v: B×heads×H×W×d → B×heads×H×W×d."""
    b, heads, h, w, d = q.shape
    scale = d**-0.5 if scale is None else scale
    out = torch.zeros_like(q)
    for i in range(h):
        rows, rb = axis_neighbours(i, h, kernel, dilation)
        for j in range(w):
            cols, cb = axis_neighbours(j, w, kernel, dilation)
            keys = k[:, :, rows][:, :, :, cols].reshape(b, heads, -1, d)
            vals = v[:, :, rows][:, :, :, cols].reshape(b, heads, -1, d)
            logits = torch.einsum("bhd,bhnd->bhn", q[:, :, i, j], keys) * scale
            if rpb is not None:
                logits = logits + rpb[:, rb][:, :, cb].reshape(heads, -1)[None]
            out[:, :, i, j] = torch.einsum("bhn,bhnd->bhd", logits.softmax(-1), vals)
    return out


@torch.no_grad()
def nat_ref(m, x: torch.Tensor) -> torch.Tensor:
    """The whole ``NeighborhoodAttention`` module: qkv Linear, per-head neighbourhood attention, proj Linear."""
    b, _, h, w = x.shape
    t = x.permute(0, 2, 3, 1)
    qkv = torch.nn.functional.linear(t, m.qkv.weight, m.qkv.bias).reshape(b, h, w, 3, m.heads, m.dim_head)
    q, k, v = (qkv[:, :, :, i].permute(0, 3, 1, 2, 4) for i in range(3))
    o = neighborhood_attention_ref(q, k, v, m.kernel_size, m.dilation, m.rpb)
    o = o.permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return torch.nn.functional.linear(o, m.proj.weight, m.proj.bias).permute(0, 3, 1, 2)


@torch.no_grad()
def neighborhood_attention_ref_nd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel, dilation,
                                  rpb: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """Any number of spatial axes: q, k, v B×heads×L_1×…×L_d×dim; the window and bias indices of each axis from
    :func:`axis_neighbours`, combined as their Cartesian product (one query at a time).  ``kernel`` and
    ``dilation``: one int, or one per axis."""
    b, heads, *size, d = q.shape
    kernels = (kernel,) * len(size) if isinstance(kernel, int) else tuple(kernel)
    dilations = (dilation,) * len(size) if isinstance(dilation, int) else tuple(dilation)
    scale = d**-0.5 if scale is None else scale
    out = torch.zeros_like(q)
    for pos in itertools.product(*(range(n) for n in size)):
        axes = [axis_neighbours(i, n, kk, dd) for i, n, kk, dd in zip(pos, size, kernels, dilations)]
        keys = list(itertools.product(*(a[0] for a in axes)))
        biases = list(itertools.product(*(a[1] for a in axes)))
        kk = torch.stack([k[(slice(None), slice(None), *u)] for u in keys], 2)  # B×heads×m×dim
        vv = torch.stack([v[(slice(None), slice(None), *u)] for u in keys], 2)
        logits = torch.einsum("bhd,bhnd->bhn", q[(slice(None), slice(None), *pos)], kk) * scale
        if rpb is not None:
            logits = logits + torch.stack([rpb[(slice(None), *r)] for r in biases], 1)[None]
        out[(slice(None), slice(None), *pos)] = torch.einsum("bhn,bhnd->bhd", logits.softmax(-1), vv)
    return out


@torch.no_grad()
def nat_ref_nd(m, x: torch.Tensor) -> torch.Tensor:
    """``nat_ref`` for a map of any spatial rank (B×C×L, B×C×D×H×W)."""
    b, _, *size = x.shape
    n = len(size)
    t = x.permute(0, *range(2, n + 2), 1)
    qkv = torch.nn.functional.linear(t, m.qkv.weight, m.qkv.bias).reshape(b, *size, 3, m.heads, m.dim_head)
    q, k, v = (qkv.select(n + 1, i).permute(0, n + 1, *range(1, n + 1), n + 2) for i in range(3))
    o = neighborhood_attention_ref_nd(q, k, v, m.kernel_size, m.dilation, m.rpb)
    o = o.permute(0, *range(2, n + 2), 1, n + 2).reshape(b, *size, -1)
    return torch.nn.functional.linear(o, m.proj.weight, m.proj.bias).permute(0, n + 1, *range(1, n + 1))
