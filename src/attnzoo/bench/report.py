"""Output of ``attnzoo bench``: the stable JSON document, CSV, Markdown, the terminal table and the plot.

Imports neither torch nor the library's modules; ``rich`` and ``matplotlib`` (the ``cli`` extra) are imported
lazily, and the table falls back to plain text without ``rich``.  The JSON schema is documented in
``docs/bench-json.md``; :data:`ROW_FIELDS` is its list of per-row fields, in order.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable

from .checks import MARK, ZERO_FLOPS_NOTE, implausible, zero_flops

SCHEMA = "attnzoo-bench"
SCHEMA_VERSION = 1

#: Every field of a result row (one module × size), in output order.  See docs/bench-json.md.
ROW_FIELDS: tuple[str, ...] = (
    "module",
    "family",
    "layout",
    "class",
    "complexity",
    "size",
    "positions",
    "batch",
    "channels",
    "input_shapes",
    "kwargs",
    "device",
    "dtype",
    "threads",
    "params",
    "flops",
    "macs",
    "flops_fwd_bwd",
    "fwd_ms",
    "fwd_ms_iqr",
    "fwd_runs",
    "fwd_blocks",
    "fwd_bwd_ms",
    "fwd_bwd_ms_iqr",
    "fwd_bwd_runs",
    "fwd_bwd_blocks",
    "fwd_mem_bytes",
    "fwd_bwd_mem_bytes",
    "mem_method",
    "seconds",
    "error",
    "error_stage",
)

FLOPS_NOTE = (
    "FLOPs: forward, one multiply-add = 2 FLOPs, matrix products/convolutions/attention only "
    "(torch.utils.flop_counter); MACs = FLOPs / 2."
)
MEM_NOTE = (
    "Memory: extra peak resident memory of one call over the baseline after building module and inputs, "
    "measured in a fresh process per case (CUDA: max_memory_allocated)."
)


def make_row(info: dict, job: dict, measured: dict) -> dict:
    """A result row with every field of :data:`ROW_FIELDS` (``None`` where not measured)."""
    row: dict[str, Any] = {k: None for k in ROW_FIELDS}
    row.update(
        module=info["name"],
        family=info["family"],
        layout=info["layout"],
        complexity=info["complexity"],
        batch=job["batch"],
        channels=job.get("channels"),
        kwargs=job.get("kwargs") or {},
        device=job["device"],
        dtype=job["dtype"],
        threads=job.get("threads"),
    )
    row["class"] = info["class"]
    for k in ROW_FIELDS:
        if k in measured and measured[k] is not None:
            row[k] = measured[k]
    if row["input_shapes"]:
        row["channels"] = _channels_from_shapes(row["layout"], row["input_shapes"])
    return row


def _channels_from_shapes(layout: str, shapes: list) -> Any:
    if layout == "pyramid":
        return [s[1] for s in shapes]
    if layout == "tokens":
        return shapes[0][-1]
    return shapes[0][1]


def document(rows: list[dict], settings: dict, environment: dict, created: str, command: str, duration: float) -> dict:
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "created": created,
        "command": command,
        "duration_seconds": round(duration, 2),
        "environment": environment,
        "settings": settings,
        "notes": {"flops": FLOPS_NOTE, "memory": MEM_NOTE},
        "results": rows,
    }


# --------------------------------------------------------------------------------------------- formatting
def si(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.{digits}g}{unit}"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def ms(median: float | None, iqr: float | None = None) -> str:
    if median is None:
        return "–"
    digits = 3 if median < 1 else (2 if median < 100 else 0)
    text = f"{median:.{digits}f}"
    if iqr is not None:
        text += f" ±{iqr:.{digits}f}"
    return text


def mib(nbytes: int | None) -> str:
    if nbytes is None:
        return "–"
    v = nbytes / 2**20
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def shape_text(row: dict) -> str:
    shapes = row.get("input_shapes")
    if not shapes:
        size = row.get("size")
        return f"{row['layout']} {size[0]}×{size[1]}" if size else row["layout"]
    dims = ["×".join(str(d) for d in s) for s in shapes]
    if row["layout"] == "pyramid" and len(dims) > 2:
        return f"{dims[0]} … {dims[-1]} ({len(dims)} maps)"
    return " + ".join(dims)


COLUMNS = (
    ("module", "module"),
    ("input", "input"),
    ("params", "params"),
    ("FLOPs", "flops"),
    ("MACs", "macs"),
    ("fwd ms", "fwd"),
    ("fwd+bwd ms", "fwd_bwd"),
    ("fwd MiB", "fwd_mem"),
    ("fwd+bwd MiB", "fwd_bwd_mem"),
)


def cells(row: dict) -> list[str]:
    """The table cells of a row: implausible timings mark the module (see :func:`attnzoo.bench.checks.implausible`),
    and 0 counted FLOPs (element-wise-only modules) read "—", not 0."""
    none = zero_flops(row)
    return [
        row["module"] + (f" {MARK}" if implausible(row) else ""),
        shape_text(row),
        si(row["params"]),
        "—" if none else si(row["flops"]),
        "—" if none else si(row["macs"]),
        ms(row["fwd_ms"], row["fwd_ms_iqr"]),
        ms(row["fwd_bwd_ms"], row["fwd_bwd_ms_iqr"]),
        mib(row["fwd_mem_bytes"]),
        mib(row["fwd_bwd_mem_bytes"]),
    ]


def header_line(doc: dict) -> str:
    s, env = doc["settings"], doc["environment"]
    threads = s.get("threads") or env.get("default_threads")
    dev = s["device"] if s["device"] == "cpu" else f"{s['device']} ({env.get('gpu', '?')})"
    return (
        f"attnzoo bench · torch {env.get('torch', '?')} · {dev} · {s['dtype']} · {threads} threads · "
        f"{env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores) · batch {s['batch']}"
    )


def timing_note(doc: dict) -> str:
    return (
        "Latency: median ±IQR (ms) over timed blocks (torch.utils.benchmark, warm-up excluded); fwd = eval() "
        "under no_grad, fwd+bwd = train() forward + backward with input and weight gradients."
    )


def errors_of(rows: Iterable[dict]) -> list[str]:
    return [f"{r['module']} [{shape_text(r)}]: {r['error']}" for r in rows if r.get("error")]


def implausible_of(rows: Iterable[dict]) -> list[str]:
    return [f"{r['module']} [{shape_text(r)}]: {', '.join(implausible(r))}" for r in rows if implausible(r)]


def footnotes(doc: dict) -> list[str]:
    """The notes under a table: FLOPs, timing, memory, and the "—" FLOPs note when a row has one."""
    notes = [FLOPS_NOTE, timing_note(doc), MEM_NOTE]
    if any(zero_flops(r) for r in doc["results"]):
        notes.append(ZERO_FLOPS_NOTE)
    return notes


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return v


def to_csv(doc: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ROW_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in doc["results"]:
        writer.writerow({k: _csv_value(row.get(k)) for k in ROW_FIELDS})
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: dict) -> str:
    names = [c[0] for c in COLUMNS] + ["error"]
    lines = [
        f"_{header_line(doc)}_",
        "",
        "| " + " | ".join(names) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(names) - 3) + ["---"]) + "|",
    ]
    for row in doc["results"]:
        vals = cells(row) + [row["error"] or ""]
        lines.append("| " + " | ".join(_md_escape(str(v)) for v in vals) + " |")
    flagged = implausible_of(doc["results"])
    if flagged:
        lines += ["", f"{MARK} implausible timings (rerun on a quiet machine): " + "; ".join(flagged)]
    lines += ["", " ".join(footnotes(doc)), ""]
    return "\n".join(lines)


def to_text(doc: dict) -> str:
    """Plain-text table (used when ``rich`` is not installed or output is not a terminal table)."""
    names = [c[0] for c in COLUMNS]
    body = [cells(r) for r in doc["results"]]
    widths = [max(len(n), *(len(b[i]) for b in body)) if body else len(n) for i, n in enumerate(names)]

    def line(vals: list[str]) -> str:
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))

    out = [header_line(doc), line(names), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    errs = errors_of(doc["results"])
    if errs:
        out += ["", "errors:"] + [f"  {e}" for e in errs]
    flagged = implausible_of(doc["results"])
    if flagged:
        out += ["", f"{MARK} implausible timings:"] + [f"  {e}" for e in flagged]
    out += ["", *footnotes(doc)]
    return "\n".join(out) + "\n"


def print_table(doc: dict, file: Any = None) -> None:
    """The terminal table: ``rich`` when available, plain text otherwise."""
    import sys

    file = file or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        file.write(to_text(doc))
        return
    console = Console(file=file, width=max(160, Console(file=file).width) if not file.isatty() else None)
    table = Table(title=header_line(doc), title_style="bold", caption="\n".join(footnotes(doc)))
    for i, (name, _) in enumerate(COLUMNS):
        table.add_column(name, justify="left" if i < 2 else "right", no_wrap=i != 1)
    for row in doc["results"]:
        style = "red" if row.get("error") and row.get("fwd_ms") is None else "yellow" if implausible(row) else None
        table.add_row(*cells(row), style=style)
    console.print(table)
    for title, lines in (
        ("[bold red]errors[/]", errors_of(doc["results"])),
        (f"[bold yellow]{MARK} implausible timings[/]", implausible_of(doc["results"])),
    ):
        if lines:
            console.print(title)
            for e in lines:
                console.print(f"  {e}", markup=False, highlight=False)


def render(doc: dict, fmt: str) -> str:
    if fmt == "json":
        return to_json(doc)
    if fmt == "csv":
        return to_csv(doc)
    if fmt == "markdown":
        return to_markdown(doc)
    if fmt == "table":
        return to_text(doc)
    raise ValueError(f"unknown format {fmt!r}")


# --------------------------------------------------------------------------------------------------- plot
def plot(doc: dict, path: str) -> None:
    """Latency and peak memory against the number of positions N (log–log), one line per module."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedFormatter, NullFormatter

    series: dict[str, list[dict]] = {}
    for row in doc["results"]:
        series.setdefault(row["module"], []).append(row)
    panels = (
        ("fwd_ms", "forward latency (ms)"),
        ("fwd_bwd_ms", "forward+backward latency (ms)"),
        ("fwd_mem_bytes", "forward peak memory (MiB)"),
        ("fwd_bwd_mem_bytes", "forward+backward peak memory (MiB)"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    cmap = plt.get_cmap("tab20")
    markers = "osD^v<>ph*"
    handles: dict[str, Any] = {}
    for ax, (key, title) in zip(axes.flat, panels):
        scale = 1 / 2**20 if key.endswith("bytes") else 1.0
        ys_all: list[float] = []
        for i, (name, rows) in enumerate(sorted(series.items())):
            pts = sorted((r["positions"], r[key] * scale) for r in rows if r.get(key) and r.get("positions"))
            if not pts:
                continue
            xs, ys = zip(*pts)
            ys_all += ys
            (h,) = ax.plot(
                xs, ys, marker=markers[(i // 20) % len(markers)], ms=4, lw=1.3, color=cmap(i % 20), label=name
            )
            handles.setdefault(name, h)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        xs_ticks = sorted({r["positions"] for r in doc["results"] if r.get("positions")})
        if 1 <= len(xs_ticks) <= 8:
            ax.set_xticks(xs_ticks)
            ax.xaxis.set_major_formatter(FixedFormatter([f"{x:,}" for x in xs_ticks]))
        ax.set_title(title)
        ax.set_xlabel("positions N (H·W of the finest map)")
        ax.grid(True, which="both", alpha=0.25)
        xs_all = sorted({r["positions"] for r in doc["results"] if r.get("positions")})
        if ys_all and len(xs_all) >= 2:
            x0, x1 = xs_all[0], xs_all[-1]
            y0 = sorted(ys_all)[len(ys_all) // 2]
            for power, style, label in ((1, "k--", "O(N)"), (2, "k:", "O(N²)")):
                ax.plot([x0, x1], [y0, y0 * (x1 / x0) ** power], style, lw=1.2, alpha=0.7, label=label)
                handles.setdefault(label, ax.lines[-1])
    s = doc["settings"]
    fig.suptitle(
        f"attnzoo bench — {s['device']}, {s['dtype']}, batch {s['batch']}, "
        f"torch {doc['environment'].get('torch', '?')}",
        fontsize=12,
    )
    ncol = 1 if len(handles) <= 26 else 2
    width = max(len(h) for h in handles) if handles else 10
    right = 1 - ncol * (0.018 + 0.0068 * width)
    fig.tight_layout(rect=(0, 0, right, 0.96))
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="center left",
        bbox_to_anchor=(right + 0.005, 0.5),
        fontsize=8,
        ncol=ncol,
        frameon=False,
    )  # type: ignore[call-overload]  # matplotlib stubs: list handles
    fig.savefig(path, dpi=110)
    plt.close(fig)


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x))
