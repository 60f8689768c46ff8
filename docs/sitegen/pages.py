"""The Markdown pages: one per module, the gallery, "which module?" and the module index."""

from __future__ import annotations

import html
import inspect
import json
import re
from typing import Any

from .data import (
    BENCH_COMMAND,
    CAPTION,
    FAMILY_TITLES,
    LAYOUT_TEXT,
    PHOTO_SIZE,
    SWEEP,
    Bench,
    DocsError,
    Measured,
    _attnzoo,
    official_code,
    provenance_text,
)
from .pictures import has_map_picture
from .trained import caption as trained_caption

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
        f"Measured with attnzoo {deployment.get('attnzoo') or '?'} at batch 1, input {deployment.get('size') or 'of the default size'}"
        f" (`attnzoo deploy`); see the [deployment guide](../deployment.md).\n",
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
    if has_map_picture(info) or info.same_shape_nchw(ch):
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


def module_page(
    name: str, bench: Bench, deployment: dict | None, m: Measured, picture: str, trained: dict | None = None
) -> str:
    """The module's page; ``picture``: ``"trained"`` (``trained`` is the sidecar of its trained-detector picture),
    ``"map"`` / ``"map-constant"`` (maps in an untrained resnet18) or ``"cost"`` (its cost curve)."""
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
        f"{ranks_text(info.dims, bold=True)} · cost **{info.complexity}** · class `attnzoo.{cls.__name__}`</div>",
        "",
        info.summary,
        "",
    ]
    if picture == "trained":
        if trained is None:
            raise DocsError(f"{name}: a trained-detector picture without its sidecar")
        out += [
            f"![{name}: attention maps of a trained detector on a validation image](img/{name}.png){{ .az-picture }}",
            "",
            '<p class="az-caption" markdown>'
            + trained_caption(trained)
            + " Each panel is titled with the stage, capture key, shape and value range; channel gates are bars.</p>",
        ]
    elif picture.startswith("map"):
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
            else f"does not fit in a ResNet residual block: it {info.shape_change(m.channels)}"
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
    if info.dims != (2,):
        shapes = {1: "B×C×L", 2: "B×C×H×W", 3: "B×C×D×H×W"}
        ranks = ", ".join(f"{d} ({shapes[d]})" for d in info.dims)
        out.append(f"- **Spatial ranks** (`dims=`, default 2): {ranks}; e.g. `attnzoo.create({name!r}, 64, dims=3)`")
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
        f"- **Complexity** in the number of positions N{COMPLEXITY_SYMBOLS if info.dims != (2,) else ''}: "
        f"{info.complexity}",
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


#: How the complexity strings of modules with several spatial ranks read (``"O(N·k^d)"``).
COMPLEXITY_SYMBOLS = " (over every spatial axis; d is the spatial rank, k a kernel side)"


def ranks_text(dims: tuple[int, ...], bold: bool = False) -> str:
    """The spatial ranks a module supports, as its page header and gallery card show them: ``"dims 1, 2, 3"``."""
    ranks = ", ".join(str(d) for d in dims)
    return f"dims **{ranks}**" if bold else f"dims {ranks}"


def _card(name: str, info: Any) -> str:
    summary = html.escape(info.summary)
    dims = " ".join(str(d) for d in info.dims)
    return (
        f'<div class="az-card" data-family="{info.family}" data-layout="{info.layout}" data-dims="{dims}" '
        f'data-name="{name}" markdown>\n\n'
        f"[![{name}](modules/img/{name}-card.png)](modules/{name}.md)\n\n"
        f"[**{name}**](modules/{name}.md){{ .az-name }}\n"
        f'<span class="az-tags">{info.complexity} · {info.layout} · {ranks_text(info.dims)}</span>\n\n'
        f"{summary}\n\n"
        f"</div>\n"
    )


def gallery_page(by_family: dict[str, list[str]], infos: dict[str, Any]) -> str:
    attnzoo = _attnzoo()
    fam_opts = "".join(f'<option value="{f}">{FAMILY_TITLES[f]}</option>' for f in by_family)
    lay_opts = "".join(f'<option value="{lay}">{lay}</option>' for lay in attnzoo.LAYOUTS)
    ranks = sorted({d for info in infos.values() for d in info.dims})
    dims_opts = "".join(f'<option value="{d}">{d}-D (dims={d})</option>' for d in ranks)
    out = [
        "---",
        "hide:",
        "  - toc",
        "---",
        "",
        "# Gallery",
        "",
        f"{sum(len(v) for v in by_family.values())} modules, one card each. A module that records an attention or "
        "gate map and fits a detector's backbone shows that map from a **trained** detector: an Ultralytics yolo11n "
        "trained on attnzoo's **synthetic** shapes set, with the module inserted in its backbone and trained inside "
        "it, on a validation image of that set (ground-truth boxes in white), so the card shows whether the module "
        "looks at the objects; its page says how it was trained and the detector's mAP. Modules without a map (or that do not fit in a backbone) show their "
        "inputs and outputs with shapes and their cost class; their page has the cost against resolution. "
        "Filter by family, layout and spatial rank (`dims`: 1 = B×C×L signals, 3 = B×C×D×H×W "
        "volumes and clips, see [1-D and 3-D](nd.md)); "
        "[Which module?](which-module.md) puts each family on one cost chart.",
        "",
        '<div class="az-filters">',
        f'<label>Family <select id="az-family"><option value="">all families</option>{fam_opts}</select></label>',
        f'<label>Layout <select id="az-layout"><option value="">all layouts</option>{lay_opts}</select></label>',
        f'<label>Rank <select id="az-dims"><option value="">any rank</option>{dims_opts}</select></label>',
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
