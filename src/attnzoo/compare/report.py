"""Summary of a comparison: per module accuracy mean ± std over seeds and cost; table, CSV, JSON, Markdown, plot."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .engine import atomic_write_text
from .health import chance_accuracy, describe_flags

__all__ = [
    "summarise",
    "pareto_front",
    "write_reports",
    "markdown_table",
    "rich_table",
    "plot_accuracy_vs_flops",
    "verdict",
]

CSV_FIELDS = (
    "module",
    "seeds",
    "top1_mean",
    "top1_std",
    "top1_delta",
    "params",
    "params_added",
    "flops",
    "flops_added",
    "inserted",
    "train_img_per_s",
    "time_per_run_s",
    "pareto",
    "flags",
    "meaningful",
    "delta_within_spread",
)


def summarise(results: list[dict], modules: list[str]) -> list[dict]:
    """One row per module that has at least one finished run, in the order of ``modules``."""
    rows = []
    for m in modules:
        rs = sorted((r for r in results if r["module"] == m), key=lambda r: r["seed"])
        if not rs:
            continue
        accs = [r["test_acc"] if r["test_acc"] is not None else float("nan") for r in rs]
        flags = sorted({f for r in rs for f in r.get("flags", [])})
        rows.append(
            {
                "module": m,
                "seeds": len(rs),
                "top1": accs,
                "top1_mean": statistics.fmean(accs),
                "top1_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "params": rs[0]["params"],
                "flops": rs[0]["flops"],
                "inserted": rs[0]["inserted"],
                "train_img_per_s": statistics.fmean(r["train_img_per_s"] for r in rs),
                "time_per_run_s": statistics.fmean(r["wall_time_s"] for r in rs),
                "time_total_s": sum(r["wall_time_s"] for r in rs),
                "flags": flags,
                "flag_text": describe_flags(flags, statistics.fmean(accs), rs[0].get("num_classes")),
                "meaningful": not flags,
                "chance": chance_accuracy(rs[0]["num_classes"]) if rs[0].get("num_classes") else None,
            }
        )
    base = next((r for r in rows if r["module"] == "none"), None)
    for r in rows:
        r["top1_delta"] = r["top1_mean"] - base["top1_mean"] if base else None
        r["params_added"] = r["params"] - base["params"] if base else None
        r["flops_added"] = r["flops"] - base["flops"] if base else None
        # Δ inside the seed-to-seed spread: |Δ| ≤ sqrt(std² + std_base²) (None: one seed, no spread to compare to)
        if base is None or r is base or r["seeds"] < 2 or base["seeds"] < 2:
            r["delta_within_spread"] = None
        else:
            r["delta_within_spread"] = abs(r["top1_delta"]) <= math.hypot(r["top1_std"], base["top1_std"])
        # a Δ against a flagged baseline (or of a flagged row) means nothing
        r["delta_meaningful"] = r["meaningful"] and (base is None or base["meaningful"])
    # the Pareto front is drawn among the runs that trained properly only
    ok = [i for i, r in enumerate(rows) if r["meaningful"]]
    front = pareto_front([(rows[i]["flops"], rows[i]["top1_mean"]) for i in ok])
    for i, r in enumerate(rows):
        r["pareto"] = i in ok and ok.index(i) in front
    return rows


def verdict(rows: list[dict]) -> list[str]:
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
            "⚠ the baseline 'none' did not train properly: no Δ top-1 in this table is meaningful "
            "(lower --lr, add --warmup-epochs or train longer)."
        )
    inside = [r["module"] for r in rows if r.get("delta_within_spread") and r.get("delta_meaningful")]
    if inside:
        lines.append(
            f"Δ top-1 of {', '.join(inside)} is within the seed-to-seed spread (|Δ| ≤ √(std² + std_none²)): "
            f"not a measurable difference."
        )
    if rows and all(r["seeds"] < 2 for r in rows) and len(rows) > 1:
        lines.append("One seed per module: no seed-to-seed spread to judge Δ top-1 against (use --seeds 3 or more).")
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


def _display_rows(rows: list[dict]) -> list[dict[str, str]]:
    scale, unit = _flops_unit(rows)
    out = []
    for r in rows:
        acc = f"{r['top1_mean']:.2f} ± {r['top1_std']:.2f}" if r["seeds"] > 1 else f"{r['top1_mean']:.2f}"
        delta = _fmt_signed(r["top1_delta"], ".2f") if r["module"] != "none" else ""
        if delta and not r.get("delta_meaningful", True):
            delta += " (not meaningful)"
        elif delta and r.get("delta_within_spread"):
            delta += " (within ± std)"
        out.append(
            {
                "module": r["module"] + (" *" if r["pareto"] else ""),
                "status": "ok" if r.get("meaningful", True) else "⚠ " + r.get("flag_text", ""),
                "top-1 (%)": acc,
                "Δ top-1": delta,
                "seeds": str(r["seeds"]),
                "params (M)": f"{r['params'] / 1e6:.3f}",
                "+params": _fmt_signed(r["params_added"], ",d") if r["module"] != "none" else "",
                unit: f"{r['flops'] / scale:.2f}",
                "+FLOPs %": f"{100 * r['flops_added'] / max(1, r['flops'] - r['flops_added']):+.2f}"
                if r["flops_added"] is not None and r["module"] != "none"
                else "",
                "train img/s": f"{r['train_img_per_s']:.0f}",
                "time/run (s)": f"{r['time_per_run_s']:.1f}",
            }
        )
    return out


def markdown_table(rows: list[dict]) -> str:
    disp = _display_rows(rows)
    if not disp:
        return "(no finished runs)\n"
    head = list(disp[0].keys())
    right = {h for h in head if h not in ("module",)}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h in right else "---" for h in head) + "|"]
    lines += ["| " + " | ".join(d[h] for h in head) + " |" for d in disp]
    return "\n".join(lines) + "\n"


def rich_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    disp = _display_rows(rows)
    if not disp:
        return table
    for h in disp[0]:
        table.add_column(h, justify="left" if h == "module" else "right", no_wrap=True)
    for d in disp:
        table.add_row(*d.values())
    return table


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(
            {
                k: ("" if r.get(k) is None else " ".join(r[k]) if isinstance(r.get(k), list) else r.get(k))
                for k in CSV_FIELDS
            }
        )
    return buf.getvalue()


def plot_accuracy_vs_flops(rows: list[dict], path: Path, title: str) -> None:
    """Top-1 (mean ± std over seeds) against forward FLOPs per image; the Pareto front joined and highlighted."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    scale, unit = _flops_unit(rows)
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=120)
    for r in rows:
        x, y = r["flops"] / scale, r["top1_mean"]
        ax.errorbar(
            x,
            y,
            yerr=r["top1_std"] if r["seeds"] > 1 else None,
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
    front = sorted((r["flops"] / scale, r["top1_mean"]) for r in rows if r["pareto"])
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
    ax.set_ylabel("top-1 accuracy (%), mean ± std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_reports(output: Path, rows: list[dict], results: list[dict], meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``results.md`` and ``accuracy_vs_flops.png`` into ``output``."""
    paths = {
        "csv": output / "results.csv",
        "json": output / "results.json",
        "markdown": output / "results.md",
        "plot": output / "accuracy_vs_flops.png",
    }
    atomic_write_text(paths["csv"], _csv_text(rows))
    clean_rows = [{k: v for k, v in r.items()} for r in rows]
    notes = verdict(rows)
    atomic_write_text(
        paths["json"],
        json.dumps({"meta": {**meta, "verdict": notes}, "summary": clean_rows, "runs": results}, indent=2) + "\n",
    )
    title = meta.get("title", "attnzoo compare")
    md = [f"## {title}", "", meta.get("description", ""), "", markdown_table(rows)]
    md += [f"- {line}" for line in notes] + ([""] if notes else [])
    md.append(
        "`*` = on the Pareto front among the rows that trained properly (no other such module is both cheaper "
        "and more accurate); ⚠ rows (diverged, rising loss or near-chance accuracy) are excluded. FLOPs: forward "
        "pass of one image counted by the `attnzoo bench` counter (`torch.utils.flop_counter` plus the CPU "
        "flash-attention kernels; convolutions, matrix products and attention; element-wise gating not counted)."
    )
    atomic_write_text(paths["markdown"], "\n".join(md) + "\n")
    if rows:
        plot_accuracy_vs_flops(rows, paths["plot"], title)
    return paths
