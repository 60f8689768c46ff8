"""Constants, errors and the data the site is generated from: the bench run(s), the deployment matrix, the
provenance pages, and each module measured on its default input."""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
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
    "pair": "`forward(query_map, context)`: query B×C×H×W, context B×C×h×w (another resolution)",
    "pair_same": "`forward(x, y)`: two maps of one shape B×C×H×W fused into one",
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
    """The deployment matrix (`attnzoo deploy --output docs/deployment.json`) as ``{"runtimes": {...}, "by_module": {module: {runtime: row}}}``, or
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
    return {"attnzoo": doc.get("attnzoo"), "size": doc.get("size"), "runtimes": doc["runtimes"], "by_module": by_module}


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
