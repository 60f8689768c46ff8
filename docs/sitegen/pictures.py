"""The pictures: attention or gate maps of a module inserted into a fresh resnet18, on a photograph (drawn by
``attnzoo.viz``), card thumbnails (a map, or a diagram of input and output shapes), cost-against-resolution
curves and the per-family cost charts."""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path
from typing import Any

from .data import FAMILY_TITLES, PHOTO, PHOTO_SIZE, SEED, Bench, DocsError, _attnzoo

# ----------------------------------------------------------------------------------------------------------------
# pictures


def _png(fig: Any) -> bytes:
    """Save a matplotlib figure as a small palette PNG."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return _quantize(buf.getvalue(), Image)


def _quantize(data: bytes, Image: Any = None, colors: int = 192) -> bytes:
    if Image is None:
        from PIL import Image
    im = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    im.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


_photo_cache: dict[str, Any] = {}


def photo() -> Any:
    """The sample photograph as an H×W×3 float tensor in [0, 1], resized to ``PHOTO_SIZE``."""
    if "img" not in _photo_cache:
        import torch
        import torch.nn.functional as F
        from sklearn.datasets import load_sample_image

        img = torch.from_numpy(load_sample_image(PHOTO).copy()).float().div(255).permute(2, 0, 1)[None]
        img = F.interpolate(img, size=PHOTO_SIZE, mode="bilinear", align_corners=False, antialias=True)
        _photo_cache["img"] = img[0].permute(1, 2, 0).clamp(0, 1)
    return _photo_cache["img"]


def has_map_picture(info: Any) -> bool:
    """Maps are drawn for modules that record maps and fit in a resnet's residual block (same-shape nchw)."""
    return bool(info.maps) and info.same_shape_nchw(64)


def capture_in_resnet(name: str) -> dict:
    """Maps of the first block of each stage of a fresh resnet18 with ``name`` inserted, on the photo."""
    import torch
    import torchvision

    attnzoo = _attnzoo()
    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(weights=None)
    model, report = attnzoo.insert(model, name)
    if not report:
        raise DocsError(f"{name}: attnzoo.insert put no module into resnet18")
    model.eval()
    img = photo()
    x = img.permute(2, 0, 1)[None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad(), attnzoo.capture_attention(model) as maps:
        model((x - mean) / std)
    firsts = {k: v for k, v in maps.items() if re.match(r"layer\d\.0\.", k)}
    if not firsts:
        raise DocsError(f"{name}: declares maps {info_maps(name)} but nothing was recorded in resnet18")
    sel = type(maps)()
    sel.update(firsts)
    sel.input_sizes = maps.input_sizes
    return sel


def info_maps(name: str) -> tuple:
    return _attnzoo().info(name).maps


def map_pictures(name: str) -> tuple[bytes, bytes, bool]:
    """(page picture: the photo and every map of the first block of each stage; card thumbnail: one map, a
    non-constant heat map over the photo where there is one; whether some map is constant)."""
    return draw_maps(photo(), capture_in_resnet(name))


def draw_maps(
    img: Any, maps: Any, columns: int = 5, panel: int = 160, colors: int = 192, scale: str = "auto"
) -> tuple[bytes, bytes, bool]:
    """:func:`map_pictures` of any captured ``maps`` on the image ``img`` (H×W×3 in [0, 1]) they were computed on,
    on ``attnzoo.viz.overlay``'s colour ``scale``."""
    from attnzoo import viz

    with tempfile.TemporaryDirectory() as tmp:
        path = viz.overlay(img, maps, Path(tmp) / "maps.png", columns=columns, panel=panel, scale=scale)
        page = _quantize(path.read_bytes(), colors=colors)
    panels = viz._items(maps, maps.input_sizes)

    def varies(p: tuple) -> bool:
        return float(p[2].max() - p[2].min()) > 1e-6

    order = [p for p in panels if p[1] == "heat" and varies(p)] + [p for p in panels if varies(p)] + panels
    title, kind, data, probs = order[0]
    return page, _thumbnail(img, title, kind, data, probs, scale), not all(varies(p) for p in panels)


def _thumbnail(img: Any, title: str, kind: str, data: Any, probs: bool = False, scale: str = "auto") -> bytes:
    """A card picture: a heat map over the photo on the scale ``attnzoo.viz.overlay`` uses for ``scale`` (``"auto"``:
    gates on [0, 1]), with a note when it is (nearly) constant; or the photo beside the gate's bars or matrix."""
    import torch.nn.functional as F

    from attnzoo import viz

    fig = _figure(3.0, 2.0)
    if kind == "heat":
        h, w = img.shape[:2]
        wide = abs(w / h - 1.5) < 0.05  # the photo is 2:3 like the card: it fills it
        ax = fig.add_axes((0, 0, 1, 1) if wide else (0.01, 0.015, 0.6533, 0.97))
        heat = F.interpolate(data[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        vmin, vmax = viz.value_range(data, viz._gate_like(data, probs), scale)
        ax.imshow(img.numpy(), aspect="auto")
        im = ax.imshow(heat.numpy(), cmap="jet", alpha=0.5, aspect="auto", vmin=vmin, vmax=vmax)
        ax.set_axis_off()
        if not wide:  # a square image: its colour scale and the map's grid beside it
            cax = fig.add_axes((0.74, 0.2, 0.05, 0.7))
            fig.colorbar(im, cax=cax).ax.tick_params(labelsize=8)
            fig.text(0.8, 0.06, f"{data.shape[-2]}×{data.shape[-1]}", ha="center", fontsize=9)
        note = viz.constancy_note(data, (vmin, vmax))
        if note:
            ax.text(0.03, 0.04, note, transform=ax.transAxes, fontsize=10, color="white",
                    bbox=dict(facecolor="darkred", alpha=0.7, pad=2, linewidth=0))
    else:  # a per-channel gate (bars) or a matrix: the photo it was computed on, then the values
        ax = fig.add_axes((0, 0.25, 0.36, 0.5))
        ax.imshow(img.numpy(), aspect="auto")
        ax.set_axis_off()
        ax = fig.add_axes((0.46, 0.16, 0.51, 0.7))
        if kind == "bars":
            ax.bar(range(data.numel()), data.numpy(), width=1.0, color="tab:blue")
            ax.set_xlim(-0.5, data.numel() - 0.5)
            ax.set_xlabel("channel", fontsize=7, labelpad=1)
        else:
            ax.imshow(data.numpy(), cmap="viridis", aspect="auto", interpolation="nearest")
        ax.tick_params(labelsize=6)
        short = re.sub(r"(\.bn\d)?\.attn", "", title)
        ax.set_title(f"{short} {tuple(data.shape)}", fontsize=6.5, pad=2)
    return _png(fig)


def _shape_lines(text: str, limit: int = 4) -> list[str]:
    """'[2×64×56×56, 2×128×28×28]' → one line per tensor (at most ``limit``, then '…')."""
    parts = [p.strip() for p in text.strip("[]").split(",") if p.strip()] if text.startswith("[") else [text]
    return parts[:limit] + (["…"] if len(parts) > limit else [])


def shape_card(name: str, complexity: str, layout: str, inputs: list[str], output: str) -> bytes:
    """:func:`shape_card_figure` as a PNG (300×200 pixels)."""
    return _png(shape_card_figure(name, complexity, layout, inputs, output))


def shape_card_figure(name: str, complexity: str, layout: str, inputs: list[str], output: str) -> Any:
    """A legible gallery card for a module without a map picture: its name, its inputs and outputs with their
    shapes (default input, batch 2) and its cost class in between, in large type (the cost against resolution is
    on the module's page)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = _figure(3.0, 2.0)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 3.0)
    ax.set_ylim(0, 2.0)
    ax.set_axis_off()
    ins = [line for text in inputs for line in _shape_lines(text)][:5]
    outs = _shape_lines(output)
    mono = dict(family="monospace", fontsize=9.5 if max(len(x) for x in ins + outs) <= 11 else 8)

    def column(lines: list[str], x: float, ha: str) -> list[float]:
        step = min(0.3, 1.3 / max(len(lines), 1))
        top = 1.08 + step * (len(lines) - 1) / 2
        ys = [top - i * step for i in range(len(lines))]
        for y, line in zip(ys, lines):
            ax.text(x, y, line, ha=ha, va="center", color="#1f3b73", **mono)
        return ys

    ys_in = column(ins, 0.06, "left")
    ys_out = column(outs, 2.94, "right")
    box = FancyBboxPatch((1.2, 0.86), 0.6, 0.44, boxstyle="round,pad=0.03", fc="#e8eefc", ec="#1f3b73", lw=1.2)
    ax.add_patch(box)
    ax.text(1.5, 1.08, complexity, ha="center", va="center", fontsize=10 if len(complexity) <= 7 else 7.5,
            weight="bold")
    for y in ys_in:
        ax.add_patch(FancyArrowPatch((1.02, y), (1.17, 1.08), arrowstyle="-|>", mutation_scale=8, color="#555"))
    for y in ys_out:
        ax.add_patch(FancyArrowPatch((1.83, 1.08), (1.98, y), arrowstyle="-|>", mutation_scale=8, color="#555"))
    ax.text(1.5, 1.8, name, ha="center", va="center", fontsize=13 if len(name) <= 20 else 10, weight="bold")
    ax.text(1.5, 0.22, f"{layout}: input → output shapes", ha="center", va="center", fontsize=9.5, color="#444")
    return fig


def _major_labels_only(ax: Any) -> None:
    """No labels on the minor ticks of log axes (short ranges get cluttered with 2×10¹, 3×10¹, ...)."""
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def cost_curve(name: str, bench: Bench, small: bool = False) -> bytes:
    """FLOPs and forward latency against the number of positions, log-log, from the bench rows."""
    rows = [r for r in bench.rows[name] if r.get("flops") is not None or r.get("fwd_ms") is not None]
    if not rows:
        raise DocsError(f"{name}: no bench row with FLOPs or latency to draw a cost curve")
    fig = _figure(3.0, 2.0) if small else _figure(6.0, 3.2)
    fs = 7 if small else 9
    ax = fig.add_axes((0.17, 0.2, 0.64, 0.66) if small else (0.1, 0.15, 0.75, 0.75))
    flops = [(r["positions"], r["flops"]) for r in rows if r.get("flops")]
    ax.set_xscale("log")
    if flops:
        ax.loglog([p for p, _ in flops], [f for _, f in flops], "o-", color="tab:blue")
        ax.set_ylabel("forward FLOPs", color="tab:blue", fontsize=fs)
    else:
        ax.set_yticks([])
        ax.text(
            0.03,
            0.95,
            "0 FLOPs counted\n(elementwise only)",
            transform=ax.transAxes,
            va="top",
            fontsize=fs,
            color="tab:blue",
        )
    ax.set_xlabel("positions N = H·W", fontsize=fs)
    ax.tick_params(labelsize=fs)
    lat = [(r["positions"], r["fwd_ms"]) for r in rows if r.get("fwd_ms")]
    if lat:
        ax2 = ax.twinx()
        ax2.loglog([p for p, _ in lat], [m for _, m in lat], "s--", color="tab:orange")
        ax2.set_ylabel("forward ms", color="tab:orange", fontsize=fs)
        ax2.tick_params(labelsize=fs)
        _major_labels_only(ax2)
    _major_labels_only(ax)
    ax.set_title(f"{name}: cost against resolution", fontsize=fs + 1)
    return _png(fig)


def family_chart(family: str, names: list[str], bench: Bench) -> bytes:
    """Every module of a family on one chart: FLOPs (top) and forward latency (bottom) against positions, log-log,
    one legend on the right."""
    import matplotlib

    fig = _figure(8.0, 7.6)
    axes = [fig.add_axes((0.1, 0.56, 0.62, 0.38)), fig.add_axes((0.1, 0.08, 0.62, 0.38))]
    cmap = matplotlib.colormaps["tab20"]
    markers = "osD^v<>pPX*h"
    handles = []
    for i, name in enumerate(names):
        rows = bench.rows.get(name, [])
        style = dict(color=cmap(i % 20), marker=markers[i % len(markers)], markersize=5, linewidth=1.5)
        style["linestyle"] = "-" if i < 10 else "--"
        pts = [(r["positions"], r["flops"]) for r in rows if r.get("flops")]  # 0 FLOPs: not on a log axis
        (line,) = axes[0].loglog([p for p, _ in pts] or [float("nan")], [f for _, f in pts] or [float("nan")], **style)
        line.set_label(name)
        handles.append(line)
        pts = [(r["positions"], r["fwd_ms"]) for r in rows if r.get("fwd_ms")]
        axes[1].loglog([p for p, _ in pts], [m for _, m in pts], **style)
    for ax, what in zip(axes, ("forward FLOPs (counted)", "forward latency, ms (median)")):
        ax.set_xlabel("positions N = H·W (batch 2; pyramids: finest level)", fontsize=9)
        ax.set_ylabel(what, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="major", alpha=0.3)
        _major_labels_only(ax)
    axes[0].set_title(f"{FAMILY_TITLES[family]}: FLOPs", fontsize=11)
    axes[1].set_title(
        f"latency ({bench.created[:10]}, {bench.threads} torch thread(s), shared CPU: indicative)", fontsize=10
    )
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.75, 0.5), fontsize=9, frameon=False)
    return _png(fig)
