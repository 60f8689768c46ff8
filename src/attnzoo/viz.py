"""Pictures of attention maps: ``attnzoo.viz.overlay(image, maps, "maps.png")`` and ``attnzoo viz``.

``overlay`` draws the image, then one panel per captured map:

- maps over the module's input grid (B×1×H×W spatial gates, B×C×H×W, B×C×H×1 / B×C×1×W coordinate gates,
  anything whose last two dims are H×W): averaged over the other dims (their maximum where they are a distribution
  at each position, whose mean is a constant; the title says so) and laid over the image;
- attention probabilities over the input grid (…×N_q×N_k with N_q = H·W, rows summing to 1): the attention
  each key position receives, averaged over heads and queries, on the key grid (the input grid or a pooled
  one, e.g. non-local's 2×2-subsampled keys), laid over the image;
- everything else (channel gates B×C×1×1, SK's branch weights, DANet's C×C channel attention, window
  attention): drawn as a bar chart (1-D) or a matrix (2-D), not over the image.

The spatial rank of a map is its module's (the capture records each module's input size: (L,), (H, W) or
(D, H, W)); maps without a recorded size take ``dims`` (2 by default).  Maps of 3-D modules (B×…×D×H×W, e.g. a
clip or a CT volume) become a slice montage: the middle slice and the maximum over D (plus ``slices`` evenly
spaced slices), each over the image (e.g. the clip's middle frame), on one colour scale per map.  Maps of 1-D
modules (B×…×L) become a strip: a heat strip along the signal (``image`` may be the 1-D signal itself) above a
line plot of the values.  A map of a 1-D or 3-D module that fits none of these raises ``ValueError``
(:mod:`attnzoo.viz_panels`).

Pictures that do not mislead: every map has a colour bar (bar charts: a value axis) and its [min, max] in its
title; gates (values in [0, 1], not attention probabilities) are drawn on the fixed [0, 1] scale by default
(``scale="auto"``; ``scale="data"`` stretches every map over its own range), so an untrained gate near 0.5 looks
uniform instead of noisy; a constant or nearly constant map says so on the picture; the photo keeps its aspect.

The first sample of the batch is drawn (``sample=``).  The PNG is ``columns × panel`` pixels wide and
``rows × panel_height(panel, image)`` high: each panel keeps the image's aspect ratio (rows = ⌈(maps + 1) /
columns⌉, columns = min(columns, maps + 1)).  matplotlib is imported only when drawing (the ``cli`` extra installs
it); no pyplot state is touched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import torch
import torch.nn.functional as F

from .viz_panels import Entry, entries

__all__ = ["overlay", "load_image", "panels", "value_range", "constancy_note", "panel_height", "colorbar_ticks"]

ImageLike = Any  # path, PIL image, H×W×3 / H×W array, 3×H×W / 1×3×H×W / H×W×3 tensor
Maps = Union[Mapping[str, Any], Sequence[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------------------------
# images


def load_image(image: ImageLike) -> torch.Tensor:
    """Any image-like input as a float H×W×3 tensor in [0, 1]."""
    if isinstance(image, (str, Path)):
        from PIL import Image  # a matplotlib dependency

        with Image.open(image) as im:
            image = im.convert("RGB")
    if not isinstance(image, torch.Tensor):
        import numpy as np

        image = torch.from_numpy(np.array(image, copy=True))
    t = image.detach().cpu()
    if t.dim() == 4:
        t = t[0]
    if t.dim() == 3 and t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3, 4):
        t = t.permute(1, 2, 0)  # C×H×W -> H×W×C
    if t.dim() == 2:
        t = t.unsqueeze(-1)
    if t.dim() != 3 or t.shape[-1] not in (1, 3, 4):
        raise ValueError(f"overlay: image must be H×W, H×W×3 or 3×H×W, got shape {tuple(image.shape)}")
    t = t[..., :3]
    if t.shape[-1] == 1:
        t = t.expand(-1, -1, 3)
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    t = t.float()
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:  # e.g. a normalised network input: stretch to [0, 1] for display
        t = (t - lo) / max(hi - lo, 1e-12)
    return t


# ----------------------------------------------------------------------------------------------------------------
# maps -> panels


def panels(
    maps: Maps,
    sizes: Mapping[str, tuple[int, ...]] | None = None,
    sample: int = 0,
    *,
    dims: int = 2,
    slices: int = 0,
) -> list[tuple[str, str, torch.Tensor]]:
    """Turn maps into drawable panels ``(title, kind, data)``; kind ``"heat"`` (2-D over the image, and each slice
    of a 3-D montage), ``"strip"`` (1-D, along the signal), ``"bars"`` (1-D per channel) or ``"matrix"`` (2-D, not
    over the image).  ``maps`` is the dict from :func:`attnzoo.capture_attention` (its ``input_sizes`` give each
    module's spatial rank), a flat ``{title: tensor}`` dict, a list of tensors or one tensor; ``dims`` is the rank of
    maps without a recorded input size; ``slices`` adds evenly spaced slices to each 3-D montage."""
    return [(e.title, e.kind, e.data) for e in _entries(maps, sizes, sample, dims, slices)]


def _flatten(maps: Maps) -> list[tuple[str, str, torch.Tensor]]:
    """(title, module name, tensor) of every map."""
    flat: list[tuple[str, str, torch.Tensor]] = []
    if isinstance(maps, torch.Tensor):
        flat.append(("map", "", maps))
    elif isinstance(maps, Mapping):
        for name, value in maps.items():
            if isinstance(value, Mapping):
                for key, t in value.items():
                    flat.append((f"{name}:{key}" if name else key, name, t))
            else:
                flat.append((str(name), str(name), value))
    else:
        flat.extend((f"map {i}", "", t) for i, t in enumerate(maps))
    return flat


def _entries(
    maps: Maps, sizes: Mapping[str, tuple[int, ...]] | None = None, sample: int = 0, dims: int = 2, slices: int = 0
) -> list[Entry]:
    if sizes is None:
        sizes = getattr(maps, "input_sizes", {})
    return entries(_flatten(maps), sizes, sample, dims, slices)


def _items(
    maps: Maps, sizes: Mapping[str, tuple[int, ...]] | None = None, sample: int = 0
) -> list[tuple[str, str, torch.Tensor, bool]]:
    """:func:`panels` with a fourth entry: whether the panel comes from attention probabilities."""
    return [(e.title, e.kind, e.data, e.probs) for e in _entries(maps, sizes, sample)]


# ----------------------------------------------------------------------------------------------------------------
# drawing


#: Scales of the colour maps: ``"auto"`` draws gates (every value in [0, 1], not attention probabilities) on the
#: fixed [0, 1] scale, so that an untrained gate near 0.5 looks uniform, and everything else on its own range;
#: ``"data"`` draws every map on its own [min, max].
SCALES = ("auto", "data")
#: A map whose spread (max − min) is at most this fraction of its colour scale (fixed scale) or of its largest
#: magnitude (own range) is called "nearly constant" on the picture.
NEARLY_CONSTANT = 0.02


def value_range(data: torch.Tensor, gate: bool, scale: str = "auto") -> tuple[float, float]:
    """The colour scale (vmin, vmax) of a map: [0, 1] for a gate under ``scale="auto"``, else the data's range
    (widened a little if the map is constant, so that the colour bar has a span)."""
    lo, hi = float(data.min()), float(data.max())
    if scale == "auto" and gate:
        return 0.0, 1.0
    if hi - lo < 1e-12:
        pad = max(abs(hi), 1.0) * 1e-3
        return lo - pad, hi + pad
    return lo, hi


def constancy_note(data: torch.Tensor, vrange: tuple[float, float] | None = None) -> str | None:
    """``"constant 0.5"`` or ``"nearly constant 0.492–0.495"`` for a map without visible structure, else None.

    Nearly constant: the spread is at most :data:`NEARLY_CONSTANT` of the colour scale ``vrange`` when it is a fixed
    scale wider than the data, or of the map's largest magnitude otherwise."""
    lo, hi = float(data.min()), float(data.max())
    spread = hi - lo
    if spread <= 1e-6 * max(abs(lo), abs(hi), 1e-12):
        return f"constant {lo:.3g}"
    span = max(abs(lo), abs(hi))
    if vrange is not None and vrange[1] - vrange[0] > spread * (1 + 1e-6):
        span = vrange[1] - vrange[0]
    if spread <= NEARLY_CONSTANT * span:
        return f"nearly constant {lo:.3g}–{hi:.3g}"
    return None


def _signal(image: Any) -> torch.Tensor | None:
    """``image`` as a float 1-D signal if it is one (a length-L array or tensor), else None."""
    if isinstance(image, (str, Path)) or not hasattr(image, "shape") or len(image.shape) != 1:
        return None
    t = image if isinstance(image, torch.Tensor) else torch.as_tensor(image)
    return t.detach().float().cpu()


def _strip(
    fig: Any,
    cell: Any,
    i: int,
    data: torch.Tensor,
    signal: torch.Tensor | None,
    cmap: str,
    vrange: tuple[float, float],
    fs: int,
    colorbar: Any,
) -> Any:
    """A 1-D map in cell ``i``: a heat strip along the signal (drawn over it when given), and below it a line
    plot of the L values; both span the signal's length (or L).  Returns the strip's axes."""
    length = data.numel()
    span = float(signal.numel() - 1) if signal is not None and signal.numel() > 1 else float(max(length - 1, 1))
    ax = cell(i, (0.1, 0.5, 0.74, 0.38))
    im = ax.imshow(
        data[None].numpy(), cmap=cmap, aspect="auto", interpolation="nearest", vmin=vrange[0], vmax=vrange[1],
        extent=(-0.5 * span / max(length - 1, 1), span + 0.5 * span / max(length - 1, 1), 0.0, 1.0),
    )  # fmt: skip
    if signal is not None:  # the signal, scaled into the strip
        lo, hi = float(signal.min()), float(signal.max())
        y = (signal - lo) / max(hi - lo, 1e-12) * 0.9 + 0.05
        ax.plot(torch.linspace(0, span, signal.numel()).numpy(), y.numpy(), color="white", linewidth=0.8)
    ax.set_yticks([])
    ax.set_xticks([])
    colorbar(i, im)
    line = cell(i, (0.1, 0.1, 0.74, 0.36))
    line.plot(torch.linspace(0, span, length).numpy(), data.numpy(), color="tab:blue", linewidth=1.0)
    line.set_xlim(ax.get_xlim())
    line.tick_params(labelsize=fs)
    return ax


def _gate_like(data: torch.Tensor, probs: bool) -> bool:
    return not probs and float(data.min()) >= 0.0 and float(data.max()) <= 1.0


def panel_height(panel: int, image_hw: tuple[int, int]) -> int:
    """Pixel height of a panel ``panel`` pixels wide that keeps the image's aspect (between panel/3 and 3·panel)."""
    h, w = image_hw
    return int(round(min(max(panel * h / max(w, 1), panel / 3), 3 * panel)))


def colorbar_ticks(vmin: float, vmax: float) -> tuple[list[float], list[str]]:
    """A colour bar's ticks: its minimum, middle and maximum, each with the fewest significant digits (2 to 8) that
    tell the three apart (a narrow range, e.g. a gate in [0.497, 0.503], gets "0.497", "0.5", "0.503", never
    three "0.5")."""
    values = [float(vmin), (float(vmin) + float(vmax)) / 2, float(vmax)] if vmax > vmin else [float(vmin)]
    shown = [0.0 if abs(v) < 1e-3 * (values[-1] - values[0]) else v for v in values]  # 4.5e-05 on [0, 1]: "0"
    labels = [f"{v:.8g}" for v in shown]
    for digits in range(2, 9):
        short = [f"{v:.{digits}g}" for v in shown]
        if len(set(short)) == len(short):
            labels = short
            break
    return values, labels


def overlay(
    image: ImageLike,
    maps: Maps,
    path: str | Path,
    *,
    columns: int = 4,
    panel: int = 256,
    alpha: float = 0.5,
    cmap: str = "jet",
    sample: int = 0,
    sizes: Mapping[str, tuple[int, ...]] | None = None,
    scale: str = "auto",
    dims: int = 2,
    slices: int = 0,
) -> Path:
    """Write a PNG with ``image`` and every map of ``maps`` (see the module docstring); returns the path.

    Every map carries a colour bar (or a value axis) with its scale, its [min, max] in the title, and a note
    when it is constant or nearly so.  Panels are ``panel`` pixels wide and keep the image's aspect ratio.

    Args:
        image: path, PIL image, array or tensor (H×W×3, 3×H×W or 1×3×H×W; floats outside [0, 1] are stretched);
            for maps of a 1-D module, the 1-D signal (a length-L array or tensor) may take its place.
        maps: the dict yielded by :func:`attnzoo.capture_attention`, a ``{title: tensor}`` dict, a list of
            tensors or one tensor.
        path: output PNG.
        columns: panels per row.
        panel: width of one panel in pixels (its height follows the image's aspect ratio).
        alpha: opacity of the heat maps over the image.
        cmap: matplotlib colour map.
        sample: which batch element to draw.
        sizes: ``{module name: (H, W)}`` input sizes, ``(L,)`` / ``(D, H, W)`` for 1-D / 3-D modules (default:
            ``maps.input_sizes`` from the capture); their length is the map's spatial rank.
        scale: ``"auto"`` (default): gates (every value in [0, 1], not attention probabilities) on the fixed
            [0, 1] scale, other maps on their own range; ``"data"``: every map on its own range.
        dims: spatial rank of maps without a recorded input size (their last ``dims`` dims are the grid).
        slices: evenly spaced slices drawn after the middle slice and the maximum of each 3-D map (at most D).
    """
    fig = _figure(
        image,
        maps,
        columns=columns,
        panel=panel,
        alpha=alpha,
        cmap=cmap,
        sample=sample,
        sizes=sizes,
        scale=scale,
        dims=dims,
        slices=slices,
    )
    path = Path(path)
    fig.savefig(path, dpi=fig.dpi, format="png")
    return path


def _figure(
    image: ImageLike,
    maps: Maps,
    *,
    columns: int = 4,
    panel: int = 256,
    alpha: float = 0.5,
    cmap: str = "jet",
    sample: int = 0,
    sizes: Mapping[str, tuple[int, ...]] | None = None,
    scale: str = "auto",
    dims: int = 2,
    slices: int = 0,
) -> Any:
    """The matplotlib Figure that :func:`overlay` saves."""
    if not (isinstance(columns, int) and columns >= 1):
        raise ValueError(f"overlay: columns must be a positive integer, got {columns!r}")
    if not (isinstance(panel, int) and panel >= 32):
        raise ValueError(f"overlay: panel must be an integer number of pixels >= 32, got {panel!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha!r}")
    if scale not in SCALES:
        raise ValueError(f"overlay: scale must be one of {SCALES}, got {scale!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    signal = _signal(image)
    img = load_image(image) if signal is None else None
    items = _entries(maps, sizes, sample, dims, slices)
    count = len(items) + 1
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    dpi = 100
    ih, iw = img.shape[:2] if img is not None else (1, 2)
    cell_h = panel_height(panel, (ih, iw))
    fig = Figure(figsize=(cols * panel / dpi, rows * cell_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    fs = max(5, min(panel, cell_h) // 40)

    def cell(i: int, box: tuple[float, float, float, float]):
        """Axes at ``box`` (x, y, width, height as fractions of the cell) of cell ``i``."""
        r, c = divmod(i, cols)
        x0, y0, wd, ht = c / cols, 1 - (r + 1) / rows, 1 / cols, 1 / rows
        return fig.add_axes((x0 + box[0] * wd, y0 + box[1] * ht, box[2] * wd, box[3] * ht))

    def label(ax, text: str, y: float = 0.98, va: str = "top", color: str = "black") -> None:
        ax.text(
            0.02,
            y,
            text,
            transform=ax.transAxes,
            va=va,
            ha="left",
            fontsize=fs,
            color="white",
            bbox=dict(facecolor=color, alpha=0.65, pad=1.5, linewidth=0),
            clip_on=True,
        )

    def colorbar(i: int, mappable: Any) -> None:
        cax = cell(i, (0.815, 0.1, 0.035, 0.8))  # the labels get the cell's last 15 %
        bar = fig.colorbar(mappable, cax=cax)
        ticks, labels = colorbar_ticks(*mappable.get_clim())
        bar.set_ticks(ticks, labels=labels)
        bar.ax.tick_params(labelsize=max(4, fs - 1), length=2, pad=1)

    if signal is None:
        assert img is not None
        ax = cell(0, (0, 0, 1, 1))
        ax.imshow(img.numpy())  # aspect "equal": the photo keeps its proportions
        ax.set_axis_off()
        label(ax, "image")
    else:
        ax = cell(0, (0.1, 0.12, 0.86, 0.76))
        ax.plot(signal.numpy(), color="black", linewidth=0.8)
        ax.set_xlim(0, max(signal.numel() - 1, 1))
        ax.tick_params(labelsize=fs)
        ax.set_title("signal", fontsize=fs, pad=2)
    for i, (title, kind, data, probs, scale_of) in enumerate(items, start=1):
        gate = _gate_like(scale_of, probs)
        vmin, vmax = value_range(scale_of, gate, scale)  # a montage: one scale for all the slices of its volume
        note = constancy_note(data, (vmin, vmax))
        shown = f"{title} {tuple(data.shape)} [{float(data.min()):.3g}, {float(data.max()):.3g}]"
        if kind == "heat":
            ax = cell(i, (0, 0, 0.8, 1))
            if img is None:
                im = ax.imshow(data.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            else:
                heat = F.interpolate(data[None, None], size=(ih, iw), mode="bilinear", align_corners=False)[0, 0]
                ax.imshow(img.numpy())
                im = ax.imshow(heat.numpy(), cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
            ax.set_axis_off()
            colorbar(i, im)
            label(ax, shown)
        elif kind == "strip":
            ax = _strip(fig, cell, i, data, signal, cmap, (vmin, vmax), fs, colorbar)
            ax.set_title(shown, fontsize=fs, pad=2)
        else:
            if kind == "bars":
                ax = cell(i, (0.16, 0.12, 0.78, 0.72))
                ax.bar(range(data.numel()), data.numpy(), width=1.0, color="tab:blue")
                ax.set_xlim(-0.5, data.numel() - 0.5)
                if scale == "auto" and gate:
                    ax.set_ylim(0.0, 1.0)
            else:
                ax = cell(i, (0.16, 0.12, 0.62, 0.72))
                im = ax.imshow(
                    data.numpy(), cmap="viridis", aspect="auto", interpolation="nearest", vmin=vmin, vmax=vmax
                )
                colorbar(i, im)
            ax.tick_params(labelsize=fs)
            ax.set_title(shown, fontsize=fs, pad=2)
        if note:
            label(ax, note, y=0.02, va="bottom", color="darkred")
    return fig
