"""``attnzoo bench``'s honesty checks on synthetic records: implausible timings flagged in every table, 0 counted
FLOPs shown as "—" with a note, the default thread count and the long-run estimate.  Nothing is timed here."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from attnzoo.bench import checks, report
from attnzoo.cli import main

INFO = {"name": "se", "family": "channel", "layout": "nchw", "complexity": "O(N)", "class": "SqueezeExcite"}
JOB = {"batch": 2, "channels": None, "device": "cpu", "dtype": "float32", "threads": 1, "kwargs": {}}


def row(name: str = "se", **measured) -> dict:
    base = dict(size=[56, 56], positions=3136, input_shapes=[[2, 64, 56, 56]], params=100, flops=4096, macs=2048,
                fwd_ms=0.5, fwd_ms_iqr=0.01, fwd_runs=400, fwd_blocks=40,
                fwd_bwd_ms=1.5, fwd_bwd_ms_iqr=0.02, fwd_bwd_runs=100, fwd_bwd_blocks=20)
    base.update(measured)
    return report.make_row({**INFO, "name": name}, JOB, base)


def doc(*rows: dict) -> dict:
    settings = {"device": "cpu", "dtype": "float32", "batch": 2, "threads": 1}
    env = {"torch": "2.x", "cpu": "test cpu", "cpu_count": 2, "default_threads": 2}
    return report.document(list(rows), settings, env, "2026-01-01T00:00:00+00:00", "attnzoo bench", 1.0)


def test_implausible_reasons():
    assert checks.implausible(row()) == []
    assert checks.implausible(row(fwd_ms=2.0)) == ["fwd > fwd+bwd"]
    assert checks.implausible(row(fwd_ms=10.36, fwd_ms_iqr=51.6, fwd_bwd_ms=20.0)) == ["IQR > median"]
    assert checks.implausible(row(fwd_bwd_ms_iqr=1.6)) == ["IQR > median"]
    assert checks.implausible(row(fwd_bwd_blocks=1)) == ["1 timed block"]
    assert checks.implausible(row(fwd_ms=40.0, fwd_ms_iqr=45.0, fwd_bwd_ms=30.0, fwd_blocks=1)) == [
        "fwd > fwd+bwd", "IQR > median", "1 timed block"]
    # forward-only and failed rows: nothing to compare, nothing flagged
    assert checks.implausible(row(fwd_bwd_ms=None, fwd_bwd_ms_iqr=None, fwd_bwd_blocks=None)) == []
    assert checks.implausible(row(fwd_ms=None, fwd_ms_iqr=None, fwd_blocks=None, fwd_bwd_ms=None)) == []


def test_tables_mark_implausible_rows_and_warn():
    d = doc(row("se"), row("cbam", fwd_ms=10.36, fwd_ms_iqr=51.6, fwd_bwd_ms=8.0))
    text = report.to_text(d)
    lines = text.splitlines()
    assert [ln.split()[:2] for ln in lines if ln.startswith(("se ", "cbam "))] == [["se", "2×64×56×56"],
                                                                                  ["cbam", checks.MARK]]
    assert re.search(r"cbam \[2×64×56×56\]: fwd > fwd\+bwd, IQR > median", text)
    md = report.to_markdown(d)
    assert f"| cbam {checks.MARK} |" in md and "| se |" in md and "implausible timings" in md
    warning = checks.implausible_warning(d["results"])
    assert warning is not None and warning.startswith("warning: 1 of 2 rows") and "--threads 1" in warning
    assert checks.implausible_warning([row()]) is None


def test_zero_flops_read_as_a_dash_with_a_note():
    d = doc(row("simam", flops=0, macs=0), row("se"), row("broken", flops=None, macs=None, error="x"))
    cells = {r["module"]: report.cells(r) for r in d["results"]}
    assert cells["simam"][3:5] == ["—", "—"]
    assert cells["se"][3:5] == ["4.1K", "2.05K"]
    assert cells["broken"][3] == "–"  # not measured: the en dash, no note
    for text in (report.to_text(d), report.to_markdown(d)):
        assert checks.ZERO_FLOPS_NOTE in text
    assert checks.ZERO_FLOPS_NOTE not in report.to_text(doc(row("se")))
    # the data keep the count: 0 in JSON and CSV
    assert json.loads(report.to_json(d))["results"][0]["flops"] == 0
    assert next(csv.DictReader(io.StringIO(report.to_csv(d))))["flops"] == "0"


def test_cli_load_prints_marks_and_the_warning(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(report.to_json(doc(row("se"), row("cbam", fwd_ms=2.0, fwd_bwd_ms=1.0), row("simam", flops=0))))
    capsys.readouterr()
    assert main(["bench", "--load", str(path), "--format", "markdown"]) == 0
    out, err = capsys.readouterr()
    assert f"| cbam {checks.MARK} |" in out and "| simam |" in out and checks.ZERO_FLOPS_NOTE in out
    assert "warning: 1 of 3 rows have implausible timings" in err
    assert main(["bench", "--load", str(path)]) == 0  # the rich table (or plain text): same marks
    out, _ = capsys.readouterr()
    assert f"cbam {checks.MARK}" in out and "implausible timings" in out


def test_threads_default_to_one_and_auto_leaves_busy_cores_alone():
    assert checks.resolve_threads(None)[0] == 1
    assert checks.resolve_threads("3")[0] == 3
    assert checks.resolve_threads("auto", cpu_count=2, load=1.9)[0] == 1
    assert checks.resolve_threads("auto", cpu_count=8, load=2.2)[0] == 6
    assert checks.resolve_threads("auto", cpu_count=4, load=0.0)[0] == 4
    assert checks.resolve_threads("auto", cpu_count=2, load=7.0)[0] == 1
    assert checks.oversubscribed(2, cpu_count=2, load=1.5) and not checks.oversubscribed(1, cpu_count=2, load=3.0)
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError, match="--threads"):
            checks.resolve_threads(bad)


INFOS = [
    {"name": "se", "layout": "nchw", "complexity": "O(N)", "default_size": [56, 56], "default_channels": 64},
    {"name": "cbam", "layout": "nchw", "complexity": "O(N)", "default_size": [56, 56], "default_channels": 64},
    {"name": "global_attention", "layout": "nchw", "complexity": "O(N^2)", "default_size": [56, 56],
     "default_channels": 64},
]
DEFAULTS = {"batch": 2, "channels": None, "threads": 1, "min_time": 0.25, "max_time": 2.0, "backward": True,
            "memory": True}


def test_long_run_warning_for_the_readme_sweep():
    total, cases = checks.estimate_run(INFOS, [14, 28, 56, 112], DEFAULTS)
    assert len(cases) == 12 and cases[0][:2] == ("global_attention", 112)
    assert cases[0][2] > 10 * cases[1][2]  # the O(N^2) case at 112×112 dominates
    note = checks.long_run_warning(total, cases)
    assert note is not None and "global_attention @ 112" in note and "12 cases" in note
    # short runs: no warning
    assert checks.long_run_warning(*checks.estimate_run(INFOS[:2], [14, 28, 56, 112], DEFAULTS)) is None
    assert checks.long_run_warning(*checks.estimate_run(INFOS, [None], DEFAULTS)) is None
    # forward-only at small sizes is cheaper than the full run; more threads are not slower
    fwd_only = checks.estimate_run(INFOS, [14, 28], {**DEFAULTS, "backward": False})[0]
    assert fwd_only < checks.estimate_run(INFOS, [14, 28], DEFAULTS)[0]
    assert checks.estimate_run(INFOS, [112], {**DEFAULTS, "threads": 2})[0] <= total


def test_complexity_parsing_and_sizes():
    assert checks.quadratic_factor("O(N^2)") == 1 and checks.quadratic_factor("O(N²)") == 1
    assert checks.quadratic_factor("O(N^2/a)") == checks.quadratic_factor("O(N²·topk/n_win²)") < 1
    assert checks.quadratic_factor("O(N)") == checks.quadratic_factor("O(N·(H+W))") == 0
    assert checks.resolve_size("nchw", None, (56, 56)) == (56, 56)
    assert checks.resolve_size("nchw", 14, (56, 56)) == (14, 14)
    assert checks.resolve_size("temporal", 30, (8, 24)) == (8, 30)
    assert checks.resolve_size("nchw", [20, 12], (56, 56)) == (20, 12)
