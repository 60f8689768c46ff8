"""Summary of a comparison: per module the task's metric (mean ± std over seeds) and cost; table, CSV, JSON,
Markdown, plot.  Task-agnostic: a :class:`ReportSpec` says which result key is the metric and what the extra
columns are (:data:`CLASSIFY`: top-1 accuracy; :data:`DETECT`: Ultralytics' mAP50-95, mAP50, precision, recall)."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import atomic_write_text
from .health import chance_accuracy, describe_flags

__all__ = [
    "ReportSpec",
    "CLASSIFY",
    "DETECT",
    "summarise",
    "pareto_front",
    "write_reports",
    "markdown_table",
    "rich_table",
    "plot_accuracy_vs_flops",
    "verdict",
]


@dataclass(frozen=True)
class ReportSpec:
    """What a comparison reports: the metric (one value per run, mean ± std over seeds, Δ against ``none``, the
    y axis of the plot) and the extra per-run values averaged over seeds."""

    key: str  #: the metric's key in a run's result (``test_acc``)
    name: str  #: its name in the summary rows (``top1`` → ``top1_mean``, ``top1_std``, ``top1_delta``)
    label: str  #: its table column (``top-1 (%)``)
    short: str  #: its name in sentences and in the Δ column (``top-1``)
    fmt: str  #: its number format (``.2f``)
    axis: str  #: the plot's y label
    plot: str  #: the plot's file name
    #: extra values averaged over seeds and shown after ``seeds``: (result key, column, format); their std too
    metrics: tuple[tuple[str, str, str], ...] = ()
    #: extra values averaged over seeds and shown after the FLOPs: (result key, column, format)
    speed: tuple[tuple[str, str, str], ...] = ()
    baseline_advice: str = ""  #: what to do when the baseline is flagged
    flag_words: str = ""  #: the flags, in the Markdown footnote


CLASSIFY = ReportSpec(
    key="test_acc",
    name="top1",
    label="top-1 (%)",
    short="top-1",
    fmt=".2f",
    axis="top-1 accuracy (%), mean ± std over seeds",
    plot="accuracy_vs_flops.png",
    speed=(("train_img_per_s", "train img/s", ".0f"),),
    baseline_advice="lower --lr, add --warmup-epochs or train longer",
    flag_words="diverged, rising loss or near-chance accuracy",
)

DETECT = ReportSpec(
    key="map50_95",
    name="map50_95",
    label="mAP50-95",
    short="mAP50-95",
    fmt=".3f",
    axis="mAP50-95 (Ultralytics val), mean ± std over seeds",
    plot="map50-95_vs_flops.png",
    metrics=(("map50", "mAP50", ".3f"), ("precision", "P", ".3f"), ("recall", "R", ".3f")),
    speed=(("latency_ms", "CPU ms", ".1f"),),
    baseline_advice="train longer, on more images or at a larger --imgsz",
    flag_words="non-finite loss, rising loss or mAP50-95 near zero",
)


def csv_fields(spec: ReportSpec = CLASSIFY) -> list[str]:
    n = spec.name
    return [
        "module",
        "seeds",
        f"{n}_mean",
        f"{n}_std",
        f"{n}_delta",
        *(f for k, _, _ in spec.metrics for f in (k, f"{k}_std")),
        "params",
        "params_added",
        "flops",
        "flops_added",
        "inserted",
        *(k for k, _, _ in spec.speed),
        "time_per_run_s",
        "pareto",
        "flags",
        "meaningful",
        "delta_within_spread",
    ]


CSV_FIELDS = tuple(csv_fields(CLASSIFY))


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _value(r: dict, key: str) -> float:
    v = r.get(key)
    return float("nan") if v is None else float(v)


def summarise(results: list[dict], modules: list[str], spec: ReportSpec = CLASSIFY) -> list[dict]:
    """One row per module that has at least one finished run, in the order of ``modules``."""
    n = spec.name
    rows = []
    for m in modules:
        rs = sorted((r for r in results if r["module"] == m), key=lambda r: r["seed"])
        if not rs:
            continue
        values = [_value(r, spec.key) for r in rs]
        flags = sorted({f for r in rs for f in r.get("flags", [])})
        row: dict[str, Any] = {
            "module": m,
            "seeds": len(rs),
            n: values,
            f"{n}_mean": statistics.fmean(values),
            f"{n}_std": _std(values),
        }
        for k, _, _ in spec.metrics:
            vs = [_value(r, k) for r in rs]
            row[k], row[f"{k}_std"] = statistics.fmean(vs), _std(vs)
        row.update(params=rs[0]["params"], flops=rs[0]["flops"], inserted=rs[0]["inserted"])
        for k, _, _ in spec.speed:
            row[k] = statistics.fmean(_value(r, k) for r in rs)
        row.update(
            time_per_run_s=statistics.fmean(r["wall_time_s"] for r in rs),
            time_total_s=sum(r["wall_time_s"] for r in rs),
            flags=flags,
            flag_text=describe_flags(flags, statistics.fmean(values), rs[0].get("num_classes")),
            meaningful=not flags,
            chance=chance_accuracy(rs[0]["num_classes"]) if rs[0].get("num_classes") else None,
        )
        rows.append(row)
    base = next((r for r in rows if r["module"] == "none"), None)
    for r in rows:
        r[f"{n}_delta"] = r[f"{n}_mean"] - base[f"{n}_mean"] if base else None
        r["params_added"] = r["params"] - base["params"] if base else None
        r["flops_added"] = r["flops"] - base["flops"] if base else None
        # Δ inside the seed-to-seed spread: |Δ| ≤ sqrt(std² + std_base²) (None: one seed, no spread to compare to)
        if base is None or r is base or r["seeds"] < 2 or base["seeds"] < 2:
            r["delta_within_spread"] = None
        else:
            r["delta_within_spread"] = abs(r[f"{n}_delta"]) <= math.hypot(r[f"{n}_std"], base[f"{n}_std"])
        # a Δ against a flagged baseline (or of a flagged row) means nothing
        r["delta_meaningful"] = r["meaningful"] and (base is None or base["meaningful"])
    # the Pareto front is drawn among the runs that trained properly only
    ok = [i for i, r in enumerate(rows) if r["meaningful"]]
    front = pareto_front([(rows[i]["flops"], rows[i][f"{n}_mean"]) for i in ok])
    for i, r in enumerate(rows):
        r["pareto"] = i in ok and ok.index(i) in front
    return rows


def verdict(rows: list[dict], spec: ReportSpec = CLASSIFY) -> list[str]:
    """Sentences on what the table can and cannot say (flagged rows, Δ inside the seed spread, one seed)."""
    lines = []
    base = next((r for r in rows if r["module"] == "none"), None)
    for r in rows:
        if not r["meaningful"]:
            lines.append(
                f"⚠ {r['module']}: {r['flag_text']} — the comparison is not meaningful for this row "
                f"(excluded from the Pareto front)."
            )
    if base is not None and not base["meaningful"] and len(rows) > 1:
        lines.append(
            f"⚠ the baseline 'none' did not train properly: no Δ {spec.short} in this table is meaningful "
            f"({spec.baseline_advice})."
        )
    inside = [r["module"] for r in rows if r.get("delta_within_spread") and r.get("delta_meaningful")]
    if inside:
        lines.append(
            f"Δ {spec.short} of {', '.join(inside)} is within the seed-to-seed spread (|Δ| ≤ √(std² + std_none²)): "
            f"not a measurable difference."
        )
    if rows and all(r["seeds"] < 2 for r in rows) and len(rows) > 1:
        lines.append(
            f"One seed per module: no seed-to-seed spread to judge Δ {spec.short} against (use --seeds 3 or more)."
        )
    return lines


def pareto_front(points: list[tuple[float, float]]) -> set[int]:
    """Indices of the points (cost, accuracy) that no other point dominates (cost ≤ and accuracy ≥, one strictly)."""
    front = set()
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.add(i)
    return front


def _flops_unit(rows: list[dict]) -> tuple[float, str]:
    top = max((r["flops"] for r in rows), default=0)
    return (1e9, "GFLOPs") if top >= 1e9 else (1e6, "MFLOPs")


def _fmt_signed(v: float | None, fmt: str) -> str:
    return "" if v is None else format(v, "+" + fmt)


def _display_rows(rows: list[dict], spec: ReportSpec = CLASSIFY) -> list[dict[str, str]]:
    scale, unit = _flops_unit(rows)
    n = spec.name
    out = []
    for r in rows:
        mean = format(r[f"{n}_mean"], spec.fmt)
        value = f"{mean} ± {r[f'{n}_std']:{spec.fmt}}" if r["seeds"] > 1 else mean
        delta = _fmt_signed(r[f"{n}_delta"], spec.fmt) if r["module"] != "none" else ""
        if delta and not r.get("delta_meaningful", True):
            delta += " (not meaningful)"
        elif delta and r.get("delta_within_spread"):
            delta += " (within ± std)"
        d = {
            "module": r["module"] + (" *" if r["pareto"] else ""),
            "status": "ok" if r.get("meaningful", True) else "⚠ " + r.get("flag_text", ""),
            spec.label: value,
            f"Δ {spec.short}": delta,
            "seeds": str(r["seeds"]),
            **{label: format(r[k], fmt) for k, label, fmt in spec.metrics},
            "params (M)": f"{r['params'] / 1e6:.3f}",
            "+params": _fmt_signed(r["params_added"], ",d") if r["module"] != "none" else "",
            unit: f"{r['flops'] / scale:.2f}",
            "+FLOPs %": f"{100 * r['flops_added'] / max(1, r['flops'] - r['flops_added']):+.2f}"
            if r["flops_added"] is not None and r["module"] != "none"
            else "",
            **{label: format(r[k], fmt) for k, label, fmt in spec.speed},
            "time/run (s)": f"{r['time_per_run_s']:.1f}",
        }
        out.append(d)
    return out


def markdown_table(rows: list[dict], spec: ReportSpec = CLASSIFY) -> str:
    disp = _display_rows(rows, spec)
    if not disp:
        return "(no finished runs)\n"
    head = list(disp[0].keys())
    right = {h for h in head if h not in ("module",)}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h in right else "---" for h in head) + "|"]
    lines += ["| " + " | ".join(d[h] for h in head) + " |" for d in disp]
    return "\n".join(lines) + "\n"


def rich_table(rows: list[dict], title: str, spec: ReportSpec = CLASSIFY):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    disp = _display_rows(rows, spec)
    if not disp:
        return table
    for h in disp[0]:
        table.add_column(h, justify="left" if h == "module" else "right", no_wrap=True)
    for d in disp:
        table.add_row(*d.values())
    return table


def _csv_text(rows: list[dict], spec: ReportSpec = CLASSIFY) -> str:
    buf = io.StringIO()
    fields = csv_fields(spec)
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(
            {
                k: ("" if r.get(k) is None else " ".join(r[k]) if isinstance(r.get(k), list) else r.get(k))
                for k in fields
            }
        )
    return buf.getvalue()


def plot_accuracy_vs_flops(rows: list[dict], path: Path, title: str, spec: ReportSpec = CLASSIFY) -> None:
    """The metric (top-1, mAP50-95: mean ± std over seeds) against forward FLOPs per image; the Pareto front
    joined and highlighted."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    scale, unit = _flops_unit(rows)
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=120)
    for r in rows:
        x, y = r["flops"] / scale, r[f"{spec.name}_mean"]
        ax.errorbar(
            x,
            y,
            yerr=r[f"{spec.name}_std"] if r["seeds"] > 1 else None,
            fmt="o" if r.get("meaningful", True) else "x",
            ms=8,
            capsize=4,
            color="tab:red" if r["pareto"] else "tab:blue" if r.get("meaningful", True) else "tab:gray",
            mfc="tab:red" if r["pareto"] else "white",
            zorder=3,
        )
        ax.annotate(
            r["module"] + ("" if r.get("meaningful", True) else " (⚠ not meaningful)"),
            (x, y),
            textcoords="offset points",
            xytext=(7, 5),
            fontsize=9,
        )
    front = sorted((r["flops"] / scale, r[f"{spec.name}_mean"]) for r in rows if r["pareto"])
    if len(front) > 1:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="post", color="tab:red", lw=1.2, alpha=0.7, label="Pareto front", zorder=2)
    else:
        ax.plot([], [], color="tab:red", marker="o", ls="", label="Pareto front")
    xs_all = [r["flops"] / scale for r in rows]
    if xs_all:
        lo, hi = min(xs_all), max(xs_all)
        pad = max((hi - lo) * 0.15, hi * 0.005, 1e-6)
        ax.set_xlim(lo - pad, hi + 2.5 * pad)
    ax.set_xlabel(f"forward {unit} per image (torch.utils.flop_counter)")
    ax.set_ylabel(spec.axis)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_reports(
    output: Path, rows: list[dict], results: list[dict], meta: dict[str, Any], spec: ReportSpec = CLASSIFY
) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``results.md`` and the plot (``spec.plot``) into ``output``."""
    paths = {
        "csv": output / "results.csv",
        "json": output / "results.json",
        "markdown": output / "results.md",
        "plot": output / spec.plot,
    }
    atomic_write_text(paths["csv"], _csv_text(rows, spec))
    clean_rows = [{k: v for k, v in r.items()} for r in rows]
    notes = verdict(rows, spec)
    atomic_write_text(
        paths["json"],
        json.dumps({"meta": {**meta, "verdict": notes}, "summary": clean_rows, "runs": results}, indent=2) + "\n",
    )
    title = meta.get("title", "attnzoo compare")
    md = [f"## {title}", "", meta.get("description", ""), "", markdown_table(rows, spec)]
    md += [f"- {line}" for line in notes] + ([""] if notes else [])
    md.append(
        "`*` = on the Pareto front among the rows that trained properly (no other such module is both cheaper "
        f"and more accurate); ⚠ rows ({spec.flag_words}) are excluded. FLOPs: forward "
        "pass of one image counted by the `attnzoo bench` counter (`torch.utils.flop_counter` plus the CPU "
        "flash-attention kernels; convolutions, matrix products and attention; element-wise gating not counted)."
    )
    atomic_write_text(paths["markdown"], "\n".join(md) + "\n")
    if rows:
        plot_accuracy_vs_flops(rows, paths["plot"], title, spec)
    return paths
