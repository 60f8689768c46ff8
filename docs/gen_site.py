"""Generate the documentation site's registry-driven pages: one page per module, the gallery, the cost charts.

Runs inside ``mkdocs build --strict`` as a hook (``hooks:`` in mkdocs.yml): the generated pages and pictures are
added to the build as virtual files, so nothing generated is ever written to docs/ or committed.  Standalone,
``python docs/gen_site.py OUTDIR`` writes the same files to OUTDIR for inspection.

Sources, so the site cannot drift from the code:

- the registry (``attnzoo.info``): family, layout, paper, cost class, summary, capture keys; the class
  docstring (what it computes, argument descriptions) and ``inspect.signature`` (arguments and defaults);
- params and FLOPs at the default input, computed here with attnzoo's FLOP counter (``attnzoo.bench.flops``);
- latency and the FLOP sweep over resolutions: ``docs/data/bench.json``, one committed ``attnzoo bench`` run
  (see ``BENCH_COMMAND``); a registered module without rows there is an error;
- the deployment matrix ``docs/deployment.json`` when it exists, else "not measured yet";
- ``docs/provenance/<name>.md`` (an error when missing);
- pictures: a freshly initialised torchvision resnet18 (``weights=None``) with the module inserted by
  ``attnzoo.insert``, one scikit-learn sample photograph, the maps recorded by ``attnzoo.capture_attention``
  and drawn by ``attnzoo.viz``; modules without a map, or that do not fit in a resnet (other layouts,
  resamplers), get their cost-against-resolution curve instead.

Any module the generator cannot document (no docstring, no provenance page, no bench rows, a declared map that
nothing records, a failing forward) raises :class:`DocsError` listing every problem: the build fails.
"""

from __future__ import annotations

import html
import inspect
import io
import json
import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BENCH_JSON = DOCS / "data" / "bench.json"
DEPLOYMENT_JSON = DOCS / "deployment.json"
BENCH_COMMAND = (
    "attnzoo bench --sizes 14,28,56,112 --threads 1 --forward-only --no-memory --min-time 0.05 --max-time 0.3 "
    "--timeout 120 --format json --output docs/data/bench.json"
)
SWEEP = (14, 28, 56, 112)  # --sizes of BENCH_COMMAND
PHOTO = "china.jpg"  # scikit-learn's load_sample_image: ships with the package, no download
PHOTO_SIZE = (160, 240)  # H, W of the network input (the photo's 2:3 aspect)
SEED = 0
CAPTION = (
    "Untrained network, freshly initialised: shows where the module can look, not what it learned. "
    "torchvision resnet18 (weights=None, torch.manual_seed(0)) with `{name}` inserted in every residual block by "
    "`attnzoo.insert`, run on scikit-learn's sample photograph `china.jpg` ({h}×{w}); maps recorded by "
    "`attnzoo.capture_attention`, first block of each stage, drawn by `attnzoo.viz.overlay`."
)
LAYOUT_TEXT = {  # as attnzoo/layouts.py documents them
    "nchw": "`forward(x)`, x: B×C×H×W",
    "pair": "`forward(query_map, context)`: query B×C×H×W, context B×C×h×w (another resolution unless stated)",
    "pyramid": "`forward([x_0, ..., x_{L-1}])`, x_i: B×C_i×⌈H/2^i⌉×⌈W/2^i⌉, finest first",
    "multi": "`forward([x_0, ..., x_{n-1}])`, n maps of one shape B×C×H×W fused into one",
    "tokens": "`forward(x)`, x: B×N×C",
    "temporal": "`forward(x)`, x: B×C×N×T (N series, T steps)",
}
FAMILY_TITLES = {
    "channel": "Channel attention",
    "spatial": "Spatial and channel-spatial gates",
    "self_attention": "Self-attention",
    "local": "Local and sparse attention",
    "fusion": "Feature fusion and necks",
    "resample": "Resampling",
    "sequence": "Sequence (tokens)",
    "temporal": "Temporal",
}
log = logging.getLogger("mkdocs.plugins.attnzoo_gen_site")


class DocsError(RuntimeError):
    """A registered module cannot be documented (the message lists every problem)."""


def _attnzoo():
    """Import attnzoo from this checkout's src/ (so the site documents the code it is built from)."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    import attnzoo

    return attnzoo


# ----------------------------------------------------------------------------------------------------------------
# data: bench run, deployment matrix, provenance


@dataclass
class Bench:
    rows: dict[str, list[dict]]  # module -> rows sorted by positions (errors kept, figures may be null)
    created: str
    machine: str
    command: str
    threads: int | None = None
    labels: dict[str, str] = field(default_factory=dict)  # module -> label of the run its rows come from

    def label(self, name: str | None = None) -> str:
        if name is not None and name in self.labels:
            return self.labels[name]
        return f"{self.machine}, {self.created[:10]} (one `attnzoo bench` run on a shared machine: indicative only)"


def _read_bench(path: Path) -> Bench:
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != "attnzoo-bench":
        raise DocsError(f"{path}: not an attnzoo bench JSON document (schema {doc.get('schema')!r})")
    rows: dict[str, list[dict]] = {}
    for row in doc["results"]:
        rows.setdefault(row["module"], []).append(row)
    for rs in rows.values():
        rs.sort(key=lambda r: r["positions"])
    env = doc.get("environment", {})
    threads = doc.get("settings", {}).get("threads") or env.get("default_threads")
    machine = (
        f"{env.get('cpu') or 'CPU'} ({env.get('cpu_count')} cores), {threads} torch thread(s), torch {env.get('torch')}"
    )
    return Bench(rows, doc.get("created", ""), machine, doc.get("command", ""), threads)


def load_bench(path: Path = BENCH_JSON) -> Bench:
    """The bench run at ``path``; beside a ``bench.json``, every ``bench-*.json`` in its folder adds (or replaces)
    the rows of the modules it measured, so a new module needs only its own run (``BENCH_COMMAND`` with
    ``--modules NAME --output docs/data/bench-NAME.json``), not a new run of the whole registry."""
    path = Path(path)
    bench = _read_bench(path)
    if path.name == "bench.json":
        for extra in sorted(path.parent.glob("bench-*.json")):
            more = _read_bench(extra)
            bench.rows.update(more.rows)
            bench.labels.update({name: more.label() for name in more.rows})
    return bench


def load_deployment(path: Path = DEPLOYMENT_JSON) -> dict | None:
    """The deployment matrix (issue 16) as ``{"runtimes": {...}, "by_module": {module: {runtime: row}}}``, or
    ``None`` when the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if not isinstance(doc.get("rows"), list) or not isinstance(doc.get("runtimes"), dict):
        raise DocsError(f"{path}: expected {{'runtimes': {{...}}, 'rows': [...]}}")
    by_module: dict[str, dict[str, dict]] = {}
    for row in doc["rows"]:
        by_module.setdefault(row["module"], {})[row["runtime"]] = row
    return {"attnzoo": doc.get("attnzoo"), "runtimes": doc["runtimes"], "by_module": by_module}


def provenance_text(name: str) -> str:
    path = DOCS / "provenance" / f"{name}.md"
    if not path.exists():
        raise DocsError(f"{name}: no provenance page docs/provenance/{name}.md")
    return path.read_text()


def official_code(provenance: str) -> str:
    m = re.search(r"\*\*Official code(?::\*\*|\*\*:?)\s*(.+?)(?=\n- \*\*|\n\n|\Z)", provenance, re.S)
    if m:
        return " ".join(m.group(1).split())
    if re.search(r"no official code", provenance, re.I):
        return "no official code was released (see the provenance section)"
    return "see the provenance section below"


# ----------------------------------------------------------------------------------------------------------------
# docstrings and signatures


def _rst_to_md(text: str) -> str:
    text = re.sub(r":(?:class|func|meth|attr|data|mod):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def doc_parts(cls: type) -> tuple[str, str, dict[str, str]]:
    """(first line, what it computes: the description paragraphs up to the differences, {arg: description})."""
    doc = inspect.getdoc(cls) or ""
    if not doc.strip():
        raise DocsError(f"{cls.__name__}: no docstring")
    head, _, rest = doc.partition("\n\n")
    body, _, args_part = rest.partition("\nArgs:\n") if "\nArgs:\n" in rest else rest.partition("Args:\n")
    paras = [p.strip() for p in body.split("\n\n") if p.strip()]
    keep = []
    for p in paras:
        if re.match(r"(Differences|Community|Shapes:|Captured map|Forward:)", p):
            break
        keep.append(p)
        if len(keep) == 2:
            break
    args: dict[str, str] = {}
    current = None
    for line in args_part.splitlines():
        if not line.strip():
            break
        if not line.startswith(" "):
            break
        m = re.match(r"^ {4}(\*{0,2}\w+(?:, \*{0,2}\w+)*)(?: \([^)]*\))?: ?(.*)$", line)
        if m:
            current = [n.strip("*") for n in m.group(1).split(", ")]
            for n in current:
                args[n] = m.group(2).strip()
        elif current is not None:
            for n in current:
                args[n] += " " + line.strip()
    computes = "\n\n".join(" ".join(p.split()) for p in keep)
    return _rst_to_md(head.strip()), _rst_to_md(computes), {k: _rst_to_md(v) for k, v in args.items()}


def arguments(cls: type, descriptions: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(name, default, type, description) of the constructor arguments, from ``inspect.signature``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    out = []
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            name = f"**{p.name}"
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            name = f"*{p.name}"
        else:
            name = p.name
        default = "required" if p.default is inspect.Parameter.empty else f"`{p.default!r}`"
        if p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            default = ""
        ann = "" if p.annotation is inspect.Parameter.empty else str(p.annotation)
        ann = ann if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", ann)
        out.append((name, default, f"`{ann}`" if ann else "", descriptions.get(p.name, "")))
    return out


# ----------------------------------------------------------------------------------------------------------------
# measuring the default input


def _shapes(x: Any) -> str:
    import torch

    if isinstance(x, torch.Tensor):
        return "×".join(str(int(n)) for n in x.shape)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_shapes(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_shapes(v) for v in x) + "]"
    return type(x).__name__


@dataclass
class Measured:
    channels: Any
    inputs: list[str]
    output: str
    params: int
    flops: int


def measure_default(name: str) -> Measured:
    import torch

    attnzoo = _attnzoo()
    from attnzoo.bench.flops import model_flops
    from attnzoo.layouts import example_channels, example_inputs

    torch.manual_seed(SEED)
    channels = example_channels(name)
    module = attnzoo.create(name, channels).eval()
    args = example_inputs(name)
    with torch.no_grad():
        out = module(*args)
    flops = model_flops(module, *args)
    return Measured(
        channels=channels,
        inputs=[_shapes(a) for a in args],
        output=_shapes(out),
        params=sum(p.numel() for p in module.parameters()),
        flops=flops,
    )


# ----------------------------------------------------------------------------------------------------------------
# pictures


def _png(fig: Any) -> bytes:
    """Save a matplotlib figure as a small palette PNG."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return _quantize(buf.getvalue(), Image)


def _quantize(data: bytes, Image: Any = None) -> bytes:
    if Image is None:
        from PIL import Image
    im = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=192, method=Image.Quantize.MEDIANCUT)
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
    return bool(info.maps) and info.layout == "nchw" and info.family != "resample"


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
    from attnzoo import viz

    maps = capture_in_resnet(name)
    img = photo()
    with tempfile.TemporaryDirectory() as tmp:
        path = viz.overlay(img, maps, Path(tmp) / "maps.png", columns=5, panel=160)
        page = _quantize(path.read_bytes())
    panels = viz.panels(maps, maps.input_sizes)

    def varies(p: tuple) -> bool:
        return float(p[2].max() - p[2].min()) > 1e-6

    order = [p for p in panels if p[1] == "heat" and varies(p)] + [p for p in panels if varies(p)] + panels
    title, kind, data = order[0]
    return page, _thumbnail(img, title, kind, data), not all(varies(p) for p in panels)


def _thumbnail(img: Any, title: str, kind: str, data: Any) -> bytes:
    import torch.nn.functional as F

    fig = _figure(3.0, 2.0)
    if kind == "heat":
        ax = fig.add_axes((0, 0, 1, 1))
        h, w = img.shape[:2]
        heat = F.interpolate(data[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        ax.imshow(img.numpy(), aspect="auto")
        ax.imshow(heat.numpy(), cmap="jet", alpha=0.5, aspect="auto")
        ax.set_axis_off()
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


# ----------------------------------------------------------------------------------------------------------------
# pages


def _fmt_int(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _fmt_flops(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, k in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return str(n)


def _size(r: dict) -> str:
    return f"{r['size'][0]}×{r['size'][1]}"


def deployment_section(name: str, deployment: dict | None) -> str:
    if deployment is None:
        return (
            "Deployment status: not measured yet. The per-runtime matrix (ONNX Runtime, OpenVINO, ncnn) appears "
            "here once `docs/deployment.json` exists; see the [deployment guide](../deployment.md).\n"
        )
    rows = deployment["by_module"].get(name, {})
    lines = [
        f"Measured with attnzoo {deployment.get('attnzoo') or '?'}; see the [deployment guide](../deployment.md).\n",
        "| runtime | status | max abs diff | latency (ms) | message |",
        "|---|---|---:|---:|---|",
    ]
    for rt, version in deployment["runtimes"].items():
        r = rows.get(rt)
        if r is None:
            lines.append(f"| {rt} {version} | missing | — | — | no row for this module |")
            continue
        diff = "—" if r.get("max_abs_diff") is None else f"{r['max_abs_diff']:.2g}"
        lat = "—" if r.get("latency_ms") is None else f"{r['latency_ms']:.3g}"
        msg = (r.get("message") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {rt} {version} | {r.get('status', 'missing')} | {diff} | {lat} | {msg} |")
    return "\n".join(lines) + "\n"


def example_code(name: str, info: Any, m: Measured) -> str:
    import torch  # noqa: F401  (the shapes below were measured)

    cls = info.cls.__name__
    ch = m.channels
    lines = [
        "import torch, attnzoo",
        "",
        f"m = attnzoo.create({json.dumps(name)}, {ch!r})   # or attnzoo.{cls}({ch!r})",
    ]
    if info.layout in ("pyramid", "multi"):
        shapes = re.findall(r"\d+(?:×\d+)+", m.inputs[0])
        lines.append("xs = [" + ", ".join(f"torch.randn({s.replace('×', ', ')})" for s in shapes) + "]")
        lines.append(f"{'ys' if m.output.startswith('[') else 'y'} = m(xs)   # {m.output}")
    else:
        names = ["x", "context"] if info.layout == "pair" else [f"x{i}" if i else "x" for i in range(len(m.inputs))]
        for n, s in zip(names, m.inputs):
            lines.append(f"{n} = torch.randn({s.replace('×', ', ')})")
        lines.append(f"y = m({', '.join(names[: len(m.inputs)])})   # {m.output}")
    if has_map_picture(info) or (info.layout == "nchw" and info.family not in ("resample",)):
        lines += [
            "",
            "# into every residual block of a torchvision ResNet (after the last norm, before the addition)",
            "import torchvision",
            f"model, report = attnzoo.insert(torchvision.models.resnet18(), {json.dumps(name)})",
        ]
    if info.maps:
        lines += [
            "",
            f"with attnzoo.capture_attention(m) as maps:   # records {', '.join(json.dumps(k) for k in info.maps)}",
            "    m(" + ("xs" if info.layout in ("pyramid", "multi") else ", ".join(names[: len(m.inputs)])) + ")",
        ]
    return "\n".join(lines)


def _demote(md: str) -> str:
    """Provenance page body for inclusion: drop its H1, demote headings below the page's H2, fix links."""
    lines = md.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = []
    for line in lines:
        if line.startswith("#"):
            line = "#" + line
        out.append(line)
    text = "\n".join(out).strip()
    return re.sub(r"\]\((?!https?:|#|\.\./)([^)]+)\)", r"](../provenance/\1)", text)


def module_page(name: str, bench: Bench, deployment: dict | None, m: Measured, picture: str) -> str:
    attnzoo = _attnzoo()

    info = attnzoo.info(name)
    cls = info.cls
    head, computes, arg_docs = doc_parts(cls)
    prov = provenance_text(name)
    paper = f"[{info.paper}]({info.url})" if info.url else info.paper
    out = [
        f"# `{name}` — {cls.__name__}",
        "",
        f'<div class="az-meta" markdown>family **[{info.family}](index.md#{info.family})** · layout **`{info.layout}`** · '
        f"cost **{info.complexity}** · class `attnzoo.{cls.__name__}`</div>",
        "",
        info.summary,
        "",
    ]
    if picture.startswith("map"):
        constant = (
            " Panels with a single value (range [a, a]) are constant at initialisation: the module starts "
            "neutral (e.g. a zero-initialised last layer, as in the paper) and learns its map in training."
            if picture == "map-constant"
            else ""
        )
        out += [
            f"![{name}: attention maps on a photograph](img/{name}.png){{ .az-picture }}",
            "",
            '<p class="az-caption" markdown>'
            + CAPTION.format(name=name, h=PHOTO_SIZE[0], w=PHOTO_SIZE[1])
            + " Each panel is titled with its module, capture key, shape and value range; channel gates are bars."
            + constant
            + "</p>",
        ]
    else:
        why = (
            "records no attention or gate map"
            if not info.maps
            else f"does not fit in a ResNet residual block (layout `{info.layout}`"
            + (", changes the resolution)" if info.family == "resample" else ")")
        )
        out += [
            f"![{name}: cost against resolution](img/{name}.png){{ .az-picture }}",
            "",
            f'<p class="az-caption" markdown>No map picture: this module {why}. Its cost against resolution '
            f"instead: forward FLOPs (counted) and forward latency from the committed bench run ({bench.label(name)}).</p>",
        ]
    out += ["", "## Paper", "", f"- **Paper:** {paper}", f"- **Official code:** {official_code(prov)}", ""]
    out += ["## What it computes", "", head, ""]
    if computes:
        out += [computes, ""]
    args = arguments(cls, arg_docs)
    out += ["## Arguments", "", "| argument | default | type | meaning |", "|---|---|---|---|"]
    for a, d, t, desc in args:
        out.append(f"| `{a}` | {d} | {t} | {desc.replace('|', '&#124;')} |")  # pipes in code spans are safe
    out += [
        "",
        "## Input and output",
        "",
        f"- **Layout** `{info.layout}`: {LAYOUT_TEXT[info.layout]}",
        f"- **Default input** (channels `{m.channels!r}`): `{'`, `'.join(m.inputs)}`",
        f"- **Output**: `{m.output}`",
        f"- **Smallest input** ({'N, T' if info.layout == 'temporal' else 'H, W'}) with the default arguments: "
        f"{info.min_size}",
    ]
    if info.maps:
        out.append(f"- **Captured maps** (`attnzoo.capture_attention`): {', '.join(f'`{k}`' for k in info.maps)}")
    if info.identity_at_init:
        out.append(
            "- **Identity at initialisation** (as the paper): inserting it does not change a pretrained network."
        )
    out += [
        "",
        "## Cost",
        "",
        f"- **Complexity** in the number of positions N: {info.complexity}",
        f"- **Parameters** at the default input: {_fmt_int(m.params)}",
        f"- **FLOPs** at the default input ({', '.join(m.inputs)}): {_fmt_flops(m.flops)} "
        "(counted by `torch.utils.flop_counter`; 1 multiply-add = 2 FLOPs; elementwise ops not counted)",
        "",
        f"Forward latency on {bench.label(name)}: batch 2, default arguments, median of the timed blocks.",
        "",
        "| input size | positions N | FLOPs | forward (ms) | IQR (ms) | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in bench.rows[name]:
        ms = "—" if r.get("fwd_ms") is None else f"{r['fwd_ms']:.3g}"
        iqr = "—" if r.get("fwd_ms_iqr") is None else f"{r['fwd_ms_iqr']:.2g}"
        note = (r.get("error") or "").replace("|", "\\|").replace("\n", " ")[:120]
        out.append(f"| {_size(r)} | {r['positions']:,} | {_fmt_flops(r.get('flops'))} | {ms} | {iqr} | {note} |")
    out += ["", "## Deployment", "", deployment_section(name, deployment)]
    out += ["## Example", "", "```python", example_code(name, info, m), "```", ""]
    out += [
        "## Provenance: official code and community copies",
        "",
        f"From [provenance/{name}.md](../provenance/{name}.md):",
        "",
        _demote(prov),
        "",
    ]
    out += [
        "## API reference",
        "",
        f"::: {cls.__module__}.{cls.__qualname__}",
        "    options:",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "",
    ]
    return "\n".join(out)


def _card(name: str, info: Any) -> str:
    summary = html.escape(info.summary)
    return (
        f'<div class="az-card" data-family="{info.family}" data-layout="{info.layout}" data-name="{name}" markdown>\n\n'
        f"[![{name}](modules/img/{name}-card.png)](modules/{name}.md)\n\n"
        f"[**{name}**](modules/{name}.md){{ .az-name }}\n"
        f'<span class="az-tags">{info.complexity} · {info.layout}</span>\n\n'
        f"{summary}\n\n"
        f"</div>\n"
    )


def gallery_page(by_family: dict[str, list[str]], infos: dict[str, Any]) -> str:
    attnzoo = _attnzoo()
    fam_opts = "".join(f'<option value="{f}">{FAMILY_TITLES[f]}</option>' for f in by_family)
    lay_opts = "".join(f'<option value="{lay}">{lay}</option>' for lay in attnzoo.LAYOUTS)
    out = [
        "---",
        "hide:",
        "  - toc",
        "---",
        "",
        "# Gallery",
        "",
        f"{sum(len(v) for v in by_family.values())} modules, one card each. The picture is the module's attention or "
        "gate map on a photograph, from an **untrained, freshly initialised** resnet18 with the module inserted: it "
        "shows where the module can look, not what it learned. Modules without a map (or that do not fit in a "
        "ResNet block) show their cost against resolution. Filter by family and layout; "
        "[Which module?](which-module.md) puts each family on one cost chart.",
        "",
        '<div class="az-filters">',
        f'<label>Family <select id="az-family"><option value="">all families</option>{fam_opts}</select></label>',
        f'<label>Layout <select id="az-layout"><option value="">all layouts</option>{lay_opts}</select></label>',
        '<span id="az-count"></span>',
        "</div>",
        "",
    ]
    for family, names in by_family.items():
        out += [
            f'<section class="az-family" data-family="{family}" markdown>',
            "",
            f"## {FAMILY_TITLES[family]} {{ #{family} }}",
            "",
            '<div class="az-grid" markdown>',
            "",
        ]
        out += [_card(n, infos[n]) for n in names]
        out += ["</div>", "", "</section>", ""]
    return "\n".join(out)


def which_page(by_family: dict[str, list[str]], infos: dict[str, Any], bench: Bench, measured: dict) -> str:
    out = [
        "---",
        "hide:",
        "  - toc",
        "---",
        "",
        "# Which module?",
        "",
        "Accuracy-free: what each module **costs** as the input grows, every module of a family on one chart. "
        "FLOPs are counted by `torch.utils.flop_counter` (matrix products, convolutions and attention; "
        "elementwise operations not counted), latency is the median forward time, both at batch 2 with the "
        f"module's default arguments, from one `attnzoo bench` run: {bench.label()}. Positions N = H·W of the input "
        "(S×S for S = 14, 28, 56, 112; tokens: S·S tokens; temporal: 8 series × S steps). Whether a module *helps* your "
        "model is a different question: [`attnzoo compare`](compare.md) trains and measures it.",
        "",
        f"Regenerate the data: `{BENCH_COMMAND}`.",
        "",
    ]
    if bench.labels:
        later = ", ".join(f"`{n}`" for n in sorted(bench.labels) if n in infos)
        out += [f"Measured in later runs of their own (each module page names its run): {later}.", ""]
    for family, names in by_family.items():
        out += [
            f"## {FAMILY_TITLES[family]} {{ #{family} }}",
            "",
            f"![{family}: FLOPs and latency against resolution](which/{family}.png)",
            "",
            "| module | layout | cost | params | FLOPs (default input) | "
            + " | ".join(f"ms S={sz}" for sz in SWEEP)
            + " |",
            "|---|---|---|---:|---:|" + "---:|" * len(SWEEP),
        ]
        for n in names:
            info, m = infos[n], measured[n]
            rows = bench.rows[n]
            lat = [f"{r['fwd_ms']:.3g}" if r.get("fwd_ms") is not None else "—" for r in rows]
            lat = lat if len(rows) == len(SWEEP) else ["—"] * len(SWEEP)
            out.append(
                f"| [{n}](modules/{n}.md) | {info.layout} | {info.complexity} | {_fmt_int(m.params)} | "
                f"{_fmt_flops(m.flops)} | " + " | ".join(lat) + " |"
            )
        out.append("")
    return "\n".join(out)


def modules_index(by_family: dict[str, list[str]], infos: dict[str, Any]) -> str:
    out = [
        "# Modules",
        "",
        "Every registered module, by family; each page has the paper, the formula, the arguments, the cost, the "
        "deployment status, the provenance, an example and a picture. The [gallery](../gallery.md) shows them as cards.",
        "",
    ]
    for family, names in by_family.items():
        out += [
            f"## {FAMILY_TITLES[family]} {{ #{family} }}",
            "",
            "| module | class | layout | cost | what it does |",
            "|---|---|---|---|---|",
        ]
        for n in names:
            i = infos[n]
            summary = i.summary.replace("|", "&#124;")
            out.append(f"| [`{n}`]({n}.md) | `{i.cls.__name__}` | {i.layout} | {i.complexity} | {summary} |")
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------------
# the whole site


def _fork_map(fn: Any, jobs: list, workers: int) -> list:
    """``[fn(job) for job in jobs]`` in ``workers`` forked processes with one torch thread each.  Forked, so
    neither ``fn`` (a function of this hook file, which mkdocs loads by path) nor the jobs are pickled; only the
    results travel back."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child(part: list[int]) -> None:
        import torch

        torch.set_num_threads(1)
        for i in part:
            queue.put((i, fn(jobs[i])))

    procs = [ctx.Process(target=child, args=(list(range(w, len(jobs), workers)),)) for w in range(workers)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    try:
        while len(results) < len(jobs):
            if not any(p.is_alive() for p in procs) and queue.empty():
                raise DocsError(f"a generator process died (exit codes {[p.exitcode for p in procs]})")
            try:
                i, result = queue.get(timeout=1.0)
            except Exception:  # noqa: BLE001  queue.Empty: check the workers again
                continue
            results[i] = result
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return [results[i] for i in range(len(jobs))]


def _document(job: tuple) -> tuple[str, dict[str, bytes], dict | None, str | None]:
    """One module's page and pictures: (name, files, measured default input as a dict, error or None)."""
    name, pictures, bench, deployment = job
    try:
        info = _attnzoo().info(name)
        if not bench.rows.get(name):
            raise DocsError(f"{name}: no row in the bench data; rerun `{BENCH_COMMAND}`")
        m = measure_default(name)
        if pictures and has_map_picture(info):
            page_png, card_png, constant = map_pictures(name)
            kind = "map-constant" if constant else "map"
        elif pictures:
            page_png, card_png = cost_curve(name, bench), cost_curve(name, bench, small=True)
            kind = "cost"
        else:
            page_png = card_png = b""
            kind = "map" if has_map_picture(info) else "cost"
        files = {
            f"modules/img/{name}.png": page_png,
            f"modules/img/{name}-card.png": card_png,
            f"modules/{name}.md": module_page(name, bench, deployment, m, kind).encode(),
        }
        return name, files, vars(m), None
    except Exception as exc:  # noqa: BLE001  every problem is reported, not only the first
        return name, {}, None, f"{type(exc).__name__}: {exc}" if not isinstance(exc, DocsError) else str(exc)


@dataclass
class Site:
    files: dict[str, bytes] = field(default_factory=dict)  # path under docs/ -> content
    nav: list = field(default_factory=list)  # the "Modules" section for mkdocs' nav
    seconds: float = 0.0


def families() -> dict[str, list[str]]:
    attnzoo = _attnzoo()
    return {f: attnzoo.list_modules(f) for f in attnzoo.FAMILIES if attnzoo.list_modules(f)}


def generate(
    *,
    names: list[str] | None = None,
    pictures: bool = True,
    bench_path: Path = BENCH_JSON,
    deployment_path: Path = DEPLOYMENT_JSON,
    workers: int | None = None,
) -> Site:
    """Every generated file of the site; ``names`` restricts the module pages (tests); ``workers`` processes
    document the modules (default: the CPU count, at most 4)."""
    import os

    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    t0 = time.perf_counter()
    attnzoo = _attnzoo()
    bench = load_bench(bench_path)
    deployment = load_deployment(deployment_path)
    by_family = families()
    if names is not None:
        by_family = {f: [n for n in ns if n in names] for f, ns in by_family.items()}
        by_family = {f: ns for f, ns in by_family.items() if ns}
    infos = {n: attnzoo.info(n) for ns in by_family.values() for n in ns}
    site = Site()
    problems: list[str] = []
    measured: dict[str, Measured] = {}
    jobs = [(n, pictures, bench, deployment) for n in infos]
    if workers > 1 and len(jobs) > 2:
        # fork before this process runs any torch op (OpenMP and fork do not mix); 1 torch thread per worker
        results = _fork_map(_document, jobs, workers)
    else:
        results = [_document(job) for job in jobs]
    for name, files, m, error in results:
        if error is not None:
            problems.append(error if error.startswith(name) else f"{name}: {error}")
            continue
        site.files.update(files)
        measured[name] = Measured(**m)
    if problems:
        raise DocsError("cannot document these modules:\n  " + "\n  ".join(problems))
    site.files["modules/index.md"] = modules_index(by_family, infos).encode()
    site.files["gallery.md"] = gallery_page(by_family, infos).encode()
    site.files["which-module.md"] = which_page(by_family, infos, bench, measured).encode()
    if pictures:
        for family, ns in by_family.items():
            site.files[f"which/{family}.png"] = family_chart(family, ns, bench)
    site.nav = ["modules/index.md"] + [
        {FAMILY_TITLES[f]: [{n: f"modules/{n}.md"} for n in ns]} for f, ns in by_family.items()
    ]
    site.seconds = time.perf_counter() - t0
    return site


# ----------------------------------------------------------------------------------------------------------------
# mkdocs hooks


_site: Site | None = None


def on_config(config: Any) -> Any:
    """Generate once per build and expand the nav's "Modules" entry into one page per module."""
    global _site
    import os

    only = os.environ.get("ATTNZOO_DOCS_ONLY")  # a quick partial build while writing: ATTNZOO_DOCS_ONLY=cbam,se
    bench = os.environ.get("ATTNZOO_DOCS_BENCH")  # another bench JSON (tests)
    _site = generate(names=only.split(",") if only else None, bench_path=Path(bench) if bench else BENCH_JSON)
    if only:
        log.warning(f"gen_site: ATTNZOO_DOCS_ONLY={only}: a partial site (strict builds fail on purpose)")
    log.info(f"gen_site: {len(_site.files)} generated files in {_site.seconds:.1f} s")
    nav = config.get("nav") or []
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and entry.get("Modules") == "modules/index.md":
            nav[i] = {"Modules": _site.nav}
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    assert _site is not None
    for path, content in _site.files.items():
        old = files.get_file_from_path(path)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, path, content=content))
    return files


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="write the generated files under this directory")
    p.add_argument("--modules", default=None, help="comma-separated names (default: every module)")
    p.add_argument("--no-pictures", action="store_true")
    args = p.parse_args(argv)
    names = args.modules.split(",") if args.modules else None
    site = generate(names=names, pictures=not args.no_pictures)
    for path, content in site.files.items():
        dest = args.out / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
    print(f"{len(site.files)} files in {site.seconds:.1f} s under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
