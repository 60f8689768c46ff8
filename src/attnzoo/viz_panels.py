"""Which picture each captured map becomes (:func:`attnzoo.viz.panels`), by the spatial rank of its module.

The rank is explicit: the module's recorded input size (``maps.input_sizes``: ``(L,)``, ``(H, W)`` or
``(D, H, W)``, from its ``dims``), or, for maps without one, the ``dims`` the caller passes (2 by default: the
last two dims are H×W).  A map is never averaged over an axis of its grid:

- 2-D (B×…×H×W): one ``"heat"`` panel over the image (the other dims averaged, or their maximum where they are a
  distribution at each position, whose mean would be a constant: :func:`over_grid`, noted in the title);
- 3-D (B×…×D×H×W): a slice montage, consecutive ``"heat"`` panels of one H×W slice each: the middle slice, the
  maximum over D, then ``slices`` evenly spaced slices; titled ``"… D=i/D"`` and ``"… max over D"``;
- 1-D (B×…×L): one ``"strip"`` panel, the L values (a heat strip over the signal and a line plot);
- attention over the N input positions (…×N×N_k: probabilities, or non-local's dot-product weights): the
  attention each key receives, averaged over heads and queries, on the key grid (the input grid or a pooled one),
  drawn as above;
- per channel (every spatial axis of size 1), and other matrices: ``"bars"`` or ``"matrix"``, not over the image;
  a map of a 1-D / 3-D module that is none of these raises ``ValueError`` instead of being drawn along the wrong axes.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import torch

__all__ = ["Entry", "size_of", "is_probs", "entries", "key_grid", "over_grid"]


class Entry(NamedTuple):
    """One panel: title, kind (``"heat"``, ``"strip"``, ``"bars"``, ``"matrix"``), data, whether it comes from
    attention probabilities, and the tensor whose range sets its colour scale (the whole volume for a montage)."""

    title: str
    kind: str
    data: torch.Tensor
    probs: bool
    scale_of: torch.Tensor


def size_of(module: str, sizes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The recorded input size (all spatial axes) of ``module`` or of its nearest ancestor (a submodule called
    other than through ``forward`` records no size of its own)."""
    name = module
    while True:
        if name in sizes:
            return tuple(int(n) for n in sizes[name])
        if not name:
            return None
        name = name.rsplit(".", 1)[0] if "." in name else ""


def is_probs(t: torch.Tensor) -> bool:
    return (
        t.dim() >= 2
        and t.shape[-1] > 1
        and bool((t >= 0).all())
        and torch.allclose(t.sum(-1), torch.ones(()), atol=1e-3)
    )


def key_grid(n_keys: int, size: tuple[int, ...]) -> tuple[int, ...] | None:
    """The grid of ``n_keys`` attention keys over an input of ``size``: the input grid pooled by a stride s ≥ 1
    (ceil) on every axis, or, in 3-D, on H and W only (video non-local's (1, 2, 2))."""
    for s in range(1, 65):
        pooled = [tuple(-(-n // s) for n in size)]
        if len(size) == 3:
            pooled.append((size[0], -(-size[1] // s), -(-size[2] // s)))
        for grid in pooled:
            if math.prod(grid) == n_keys:
                return grid
        if math.prod(pooled[-1]) < n_keys:
            break
    return None


def over_grid(t: torch.Tensor, grid: tuple[int, ...]) -> tuple[torch.Tensor, str]:
    """One value per position of the maps ``t`` (…×``grid``) and a note for the title: their mean over the other
    dims, or their maximum when they are a distribution at every position (non-negative, summing to 1 over the other
    dims, e.g. external attention's memory units or double attention's descriptors): the mean of a distribution
    over n is the constant 1/n and shows nothing."""
    flat = t.reshape(-1, *grid)
    n = flat.shape[0]
    if n > 1 and bool((flat >= 0).all()) and torch.allclose(flat.sum(0), torch.ones(()), atol=1e-3):
        return flat.amax(0), f" max of {n}"
    return flat.mean(0), ""


def _panel_2d(t: torch.Tensor, size: tuple[int, ...] | None) -> tuple[str, torch.Tensor, str]:
    if t.dim() == 0:
        return "bars", t.reshape(1), ""
    if size is not None and len(size) == 2 and t.dim() >= 2:
        h, w = size
        last2 = tuple(t.shape[-2:])
        if last2 == (h, w) or (last2 in ((h, 1), (1, w)) and h * w > 1):
            return ("heat", *over_grid(t, last2))
        if t.shape[-2] == h * w and is_probs(t):
            grid = key_grid(t.shape[-1], (h, w))
            if grid is not None:
                return "heat", t.reshape(-1, t.shape[-1]).mean(0).reshape(grid), ""
    if t.dim() >= 2 and tuple(t.shape[-2:]) == (1, 1):
        t = t.reshape(t.shape[:-2])  # a per-channel value: drop the 1×1 grid
    if t.dim() == 1:
        return "bars", t, ""
    if t.dim() == 0:
        return "bars", t.reshape(1), ""
    return "matrix", t.reshape(-1, *t.shape[-2:]).mean(0), ""


def _grid_data(t: torch.Tensor, size: tuple[int, ...]) -> tuple[torch.Tensor, str] | None:
    """``t`` as one value per position of the grid ``size`` (its other dims reduced by :func:`over_grid`) and
    the title's note, or None.  Trailing dims that broadcast to the grid (a gate along D only, D×1×1) are
    expanded, as the gate multiplies the map."""
    r = len(size)
    if t.dim() >= r and all(a in (n, 1) for a, n in zip(t.shape[-r:], size)) and math.prod(t.shape[-r:]) > 1:
        data, note = over_grid(t, tuple(t.shape[-r:]))
        return data.expand(size), note
    if t.dim() >= 2 and t.shape[-2] == math.prod(size) and t.shape[-1] > 1:  # one row per query (N rows)
        grid = key_grid(t.shape[-1], size)
        if grid is not None:  # the attention (weight) each key receives, averaged over heads and queries
            return t.reshape(-1, t.shape[-1]).mean(0).reshape(grid), ""
    return None


def _panels_nd(title: str, t: torch.Tensor, size: tuple[int, ...], probs: bool, slices: int) -> list[Entry]:
    """The panels of one map of a 1-D or 3-D module (input ``size`` = (L,) or (D, H, W))."""
    reduced = _grid_data(t, size)
    if reduced is not None:
        grid, note = reduced
        title += note
        if len(size) == 1:
            return [Entry(title, "strip", grid, probs, grid)]
        depth = grid.shape[0]
        mid = depth // 2
        out = [
            Entry(f"{title} D={mid}/{depth}", "heat", grid[mid], probs, grid),
            Entry(f"{title} max over D", "heat", grid.amax(0), probs, grid),
        ]
        for i in torch.linspace(0, depth - 1, min(slices, depth)).round().long().tolist() if slices else []:
            out.append(Entry(f"{title} D={i}/{depth}", "heat", grid[i], probs, grid))
        return out
    r = len(size)
    if t.dim() >= r and all(n == 1 for n in t.shape[-r:]):
        t = t.reshape(t.shape[:-r])  # per channel: drop the unit grid
    elif t.dim() == r + 1 and tuple(t.shape[:r]) == size:
        t = t.reshape(-1, t.shape[-1])  # one row per position (e.g. a query's weights over its lines)
    elif t.dim() == 3 and t.shape[-2] == 1:
        t = t.mean(0)  # one row per query (e.g. over its neighbourhood)
    if t.dim() == 0:
        t = t.reshape(1)
    if t.dim() > 2:
        axes = "×".join(str(n) for n in size)
        raise ValueError(
            f"overlay: cannot draw map {title!r} of shape {tuple(t.shape)} (one sample) from a {r}-D module with "
            f"input {axes}: expected its trailing dims to be the grid {axes}, attention probabilities over its "
            f"{math.prod(size)} positions (…×{math.prod(size)}×N_k), or one value per channel (…×{'×'.join('1' * r)})"
        )
    return [Entry(title, "bars" if t.dim() == 1 else "matrix", t, probs, t)]


def entries(
    flat: list[tuple[str, str, torch.Tensor]],
    sizes: Mapping[str, tuple[int, ...]],
    sample: int = 0,
    dims: int = 2,
    slices: int = 0,
) -> list[Entry]:
    """The panels of ``(title, module name, map)`` triples; ``sizes`` the recorded input sizes, ``dims`` the rank
    of maps without one, ``slices`` the extra evenly spaced slices of a 3-D montage."""
    if dims not in (1, 2, 3):
        raise ValueError(
            f"overlay: dims must be 1, 2 or 3 (the spatial rank of maps without an input size), got {dims!r}"
        )
    if not (isinstance(slices, int) and not isinstance(slices, bool) and slices >= 0):
        raise ValueError(
            f"overlay: slices must be a non-negative integer (extra slices of a 3-D montage), got {slices!r}"
        )
    out: list[Entry] = []
    for title, module, t in flat:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"overlay: map {title!r} must be a tensor, got {type(t).__name__}")
        t = t.detach().float().cpu()
        if t.dim() >= 2:
            t = t[min(sample, t.shape[0] - 1)]  # the sample's map (batch dim first)
        size = size_of(module, sizes)
        probs = is_probs(t)
        if size is None and dims != 2 and t.dim() >= dims and not probs:
            size = tuple(int(n) for n in t.shape[-dims:])  # no recorded input size: the last `dims` dims
        if size is not None and len(size) != 2:
            out.extend(_panels_nd(title, t, size, probs, slices))
            continue
        if size is None and t.dim() >= 2 and t.shape[-2] * t.shape[-1] > 1 and not probs:
            size = (int(t.shape[-2]), int(t.shape[-1]))  # no recorded input size: the last two dims are the grid
        kind, data, note = _panel_2d(t, size)
        out.append(Entry(title + note, kind, data, probs, data))
    return out
