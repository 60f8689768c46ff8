"""The neighbourhood of each query along any number of axes, and attention over the gathered windows (one query
per row): the indexing of Neighborhood Attention (Hassani et al., CVPR 2023; NATTEN's), used by
:mod:`attnzoo.local.neighborhood` for attention capture and for 1-D / 3-D maps in eager mode."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..functional.attention import sdpa
from ..layers.attention import attention

#: A kernel side or dilation: one int for every axis, or one per axis.
PerAxis = Union[int, Sequence[int]]


def axis_values(value: PerAxis, count: int) -> tuple[int, ...]:
    """``value`` as one int per axis of ``count`` axes (an int is repeated)."""
    return (int(value),) * count if isinstance(value, int) else tuple(int(v) for v in value)


def _effective(length: int, kernel: int, dilation: int) -> tuple[int, int]:
    """The ``(dilation, k')`` used along an axis of ``length``: an axis shorter than ``kernel · dilation`` drops the
    dilation to ``max(1, length // kernel)``, one shorter than ``kernel`` uses every position (k' = length)."""
    if length < kernel * dilation:
        dilation = max(1, length // kernel)
    return dilation, min(kernel, length)


def neighborhood_indices(
    length: int, kernel: int, dilation: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour indices along one axis: ``(idx, rel)``, both ``length × k'`` (int64).

    ``idx[i, t]`` is the position of the t-th neighbour of query i; ``rel[i, t]`` its index into a relative
    position table of size 2·kernel − 1 (offset in dilated steps + kernel − 1).  Queries are split by
    ``i mod dilation`` into interleaved groups; inside a group the window of ``kernel`` group members starts at
    ``clamp(j − kernel // 2, 0, L_g − kernel)`` (shifted inwards at the borders, NAT / NATTEN).

    Axes shorter than ``kernel · dilation``: the dilation drops to ``max(1, length // kernel)``; axes shorter
    than ``kernel`` use every position (k' = length), so the window shrinks to the input.
    """
    dilation, k = _effective(length, kernel, dilation)
    i = torch.arange(length, device=device)
    g = i % dilation
    j = i // dilation
    group_len = (length - g + dilation - 1) // dilation
    start = torch.minimum((j - kernel // 2).clamp(min=0), group_len - k)
    pos = start[:, None] + torch.arange(k, device=device)[None, :]  # neighbour index inside the group
    idx = g[:, None] + pos * dilation
    rel = pos - j[:, None] + (kernel - 1)
    return idx, rel


#: Scores (or mask entries) per chunk of tile rows: bounds the transient memory of the masks and of the explicit
#: path (about 4 MiB in float32).
_CHUNK = 1 << 20


def _window_tables(
    size: list[int], kernel: PerAxis, dilation: PerAxis, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's neighbours over all axes: ``(flat, rel)``, both N·m (int64), query-major, neighbours row-major.

    ``flat`` indexes the row-major flattened map, ``rel`` the flattened relative position table (2·k_a − 1 entries
    along axis a): the outer sums over the axes of :func:`neighborhood_indices`'s per-axis tables (N = ∏ L_a,
    m = ∏ k'_a).  ``kernel`` and ``dilation``: one int for every axis or one per axis.
    """
    d = len(size)
    kernels, dilations = axis_values(kernel, d), axis_values(dilation, d)
    flat, rel = None, None
    for a, length in enumerate(size):
        idx, r = neighborhood_indices(length, kernels[a], dilations[a], device)
        shape = [1] * (2 * d)
        shape[a], shape[d + a] = idx.shape
        # row-major over the axes: (… · L_a + i_a), and likewise for the table
        flat = idx.view(shape) if flat is None else flat * length + idx.view(shape)
        rel = r.view(shape) if rel is None else rel * (2 * kernels[a] - 1) + r.view(shape)
    assert flat is not None and rel is not None
    return flat.reshape(-1), rel.reshape(-1)


def _windows_of(
    q: torch.Tensor, kernel: PerAxis, dilation: PerAxis
) -> tuple[list, int, int, torch.Tensor, torch.Tensor]:
    """For q B×heads×L_1×…×L_d×dim: the spatial size, N = ∏ L_a, m = window entries per query, and the window
    positions / bias-table entries of every query, flattened (N·m each)."""
    size = list(q.shape[2:-1])
    flat, rel = _window_tables(size, kernel, dilation, q.device)
    n = 1
    for length in size:
        n *= length
    return size, n, flat.shape[0] // n, flat, rel


def _gather_windows(t: torch.Tensor, flat: torch.Tensor, rows: int, m: int) -> torch.Tensor:
    """The m window entries of ``rows`` queries: t B×heads×N×dim, flat the rows·m window positions → B×(heads·rows)×m×dim."""
    b, heads, _, d = t.shape
    return t.index_select(2, flat.reshape(-1)).view(b, heads * rows, m, d)


def _gathered_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: PerAxis,
    dilation: PerAxis,
    bias_table: torch.Tensor | None,
    scale: float | None,
    dropout_p: float,
    module: nn.Module | None,
) -> torch.Tensor:
    """:func:`neighborhood_attention` with each query's k'^d neighbours gathered (one query per row), for any number
    of spatial axes: q, k, v B×heads×L_1×…×L_d×dim; ``kernel`` and ``dilation`` one int or one per axis.  Records
    the ``"attn"`` map B×(heads·N)×1×m when ``module`` is capturing.  Memory O(N·k^d·dim) (the gathered keys and
    values)."""
    b, heads, d = q.shape[0], q.shape[1], q.shape[-1]
    size, n, m, flat, rel = _windows_of(q, kernel, dilation)
    q = q.reshape(b, heads * n, 1, d)
    k, v = (
        _gather_windows(k.reshape(b, heads, n, d), flat, n, m),
        _gather_windows(v.reshape(b, heads, n, d), flat, n, m),
    )
    mask = None
    if bias_table is not None:
        mask = bias_table.reshape(heads, -1).index_select(1, rel).view(heads * n, 1, m).to(q.dtype)
    out = attention(q, k, v, mask=mask, scale=scale, dropout_p=dropout_p, module=module, key="attn")
    return out.view(b, heads, *size, d)


def _gather_chunk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    flat: torch.Tensor,
    rel: torch.Tensor,
    table: torch.Tensor | None,
    scale: float | None,
    dropout_p: float,
) -> torch.Tensor:
    """r queries against their gathered windows: q B×heads×r×dim, k, v B×heads×N×dim, flat / rel r×m (window
    positions / table entries), table heads×∏(2k_a−1) flattened → B×heads×r×dim."""
    b, heads, r, d = q.shape
    m = flat.shape[1]
    kk, vv = _gather_windows(k, flat, r, m), _gather_windows(v, flat, r, m)
    mask = None if table is None else table.index_select(1, rel.reshape(-1)).view(1, heads * r, 1, m).to(q.dtype)
    return sdpa(q.reshape(b, heads * r, 1, d), kk, vv, mask, scale, dropout_p).view(b, heads, r, d)


def _chunked_gather(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: PerAxis,
    dilation: PerAxis,
    bias_table: torch.Tensor | None,
    scale: float | None,
    dropout_p: float,
) -> torch.Tensor:
    """The eager gather form in chunks of queries (any number of spatial axes): at most about ``4 · _CHUNK``
    gathered key elements at a time, and, when a gradient is needed, each chunk checkpointed, so that memory stays
    O(N·dim) + one chunk instead of O(N·k^d·dim).  Same values as :func:`_gathered_attention`."""
    b, heads, d = q.shape[0], q.shape[1], q.shape[-1]
    size, n, m, flat, rel = _windows_of(q, kernel, dilation)
    flat, rel = flat.view(n, m), rel.view(n, m)
    kf, vf = k.reshape(b, heads, n, d), v.reshape(b, heads, n, d)
    table = None if bias_table is None else bias_table.reshape(heads, -1)
    step = max(1, 4 * _CHUNK // (b * heads * m * d))
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, bias_table))
    outs = []
    # torch.split, not slices: one backward node gathers the chunks' gradients (a slice each would allocate a
    # full-size zero gradient per chunk)
    for q_c, flat_c, rel_c in zip(q.reshape(b, heads, n, d).split(step, 2), flat.split(step), rel.split(step)):
        args = (q_c, kf, vf, flat_c, rel_c, table, scale, dropout_p)
        if grad and n > step:
            outs.append(checkpoint(_gather_chunk, *args, use_reentrant=False))
        else:
            outs.append(_gather_chunk(*args))
    return torch.cat(outs, 2).reshape(b, heads, *size, d)  # inductor may lay out the cat strided
