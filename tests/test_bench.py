"""End-to-end tests of ``attnzoo bench`` (run as a subprocess, as a user runs it)."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bench-json.md"
BENCH_DIR = ROOT / "src" / "attnzoo" / "bench"
#: Short timing windows: these tests check the plumbing and the figures' meaning, not the speed.
FAST = ["--min-time", "0.01", "--max-time", "0.1", "--threads", "1", "--quiet"]
SIZES = (14, 32)

PLUGIN = '''
"""Deliberately broken modules, registered only inside the bench worker (via --import)."""
import os
import signal
import time

import torch
import torch.nn as nn

import attnzoo


@attnzoo.register("bench_fails_large", family="channel", paper="test plugin", complexity="O(N)", summary="raises above 16x16")
class FailsLarge(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x):
        if x.shape[-1] > 16:
            raise RuntimeError("deliberate failure above 16x16")
        return x * self.scale


@attnzoo.register("bench_crashes", family="channel", paper="test plugin", complexity="O(N)", summary="kills its own process")
class Crashes(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)


@attnzoo.register("bench_hangs", family="channel", paper="test plugin", complexity="O(N)", summary="never returns")
class Hangs(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x):
        time.sleep(3600)
'''


def bench(*args: str, check: bool = True, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = prefix or [sys.executable, "-m", "attnzoo"]
    proc = subprocess.run([*cmd, "bench", *args], capture_output=True, text=True, timeout=900, cwd=ROOT)
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def documented_fields(section: str) -> list[str]:
    """Field names of the table under ``## <section>`` in docs/bench-json.md."""
    text = DOC.read_text()
    part = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", part, re.M)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, Path]:
    """One real measurement of ``se`` and ``eca`` at two sizes, as JSON on stdout."""
    proc = bench("--modules", "se,eca", "--sizes", ",".join(map(str, SIZES)), "--format", "json", *FAST)
    doc = json.loads(proc.stdout)
    path = tmp_path_factory.mktemp("bench") / "run.json"
    path.write_text(proc.stdout)
    return doc, path


def rows_by(doc: dict) -> dict[tuple[str, int], dict]:
    return {(r["module"], r["size"][0]): r for r in doc["results"]}


def test_json_has_every_documented_field(run):
    doc, _ = run
    from attnzoo.bench.report import ROW_FIELDS

    top = documented_fields("Document")
    fields = documented_fields("Result rows")
    assert len(fields) >= 30 and len(top) >= 9
    assert list(doc) == top
    assert tuple(fields) == ROW_FIELDS
    for row in doc["results"]:
        assert list(row) == fields
    settings_doc = DOC.read_text().split("| `settings` |", 1)[1].split("\n", 1)[0]
    for key in doc["settings"]:
        assert f"`{key}`" in settings_doc, f"settings.{key} is not documented"
    assert doc["schema"] == "attnzoo-bench" and doc["version"] == 1


def test_rows_and_figures(run):
    doc, _ = run
    rows = rows_by(doc)
    assert sorted(rows) == sorted((m, s) for m in ("se", "eca") for s in SIZES)
    for (name, s), r in rows.items():
        assert r["error"] is None and r["error_stage"] is None, r["error"]
        assert r["size"] == [s, s] and r["positions"] == s * s
        assert r["input_shapes"] == [[2, 64, s, s]] and r["batch"] == 2 and r["channels"] == 64
        assert r["device"] == "cpu" and r["dtype"] == "float32" and r["threads"] == 1
        assert r["mem_method"] == "rss_high_water_mark"
        for key in ("params", "flops", "macs", "flops_fwd_bwd", "fwd_ms", "fwd_bwd_ms", "fwd_runs", "fwd_blocks",
                    "fwd_bwd_runs", "fwd_bwd_blocks", "fwd_mem_bytes", "fwd_bwd_mem_bytes", "seconds"):
            assert isinstance(r[key], (int, float)) and r[key] > 0, (name, s, key, r[key])
        assert r["fwd_ms_iqr"] >= 0 and r["fwd_bwd_ms_iqr"] >= 0
        assert r["fwd_runs"] >= r["fwd_blocks"] and r["fwd_bwd_ms"] > 0


def test_flops_equal_hand_count(run):
    doc, _ = run
    rows = rows_by(doc)
    b, c = 2, 64
    # se: hidden = max(64 // 16, min(8, 64)) = 8; two 1x1 convs on B×C×1×1, 2 FLOPs per multiply-add;
    # the mean and the x * gate product are not counted (FlopCounterMode counts matmul/conv/attention only).
    hidden = 8
    se_fwd = 2 * b * c * hidden + 2 * b * hidden * c  # = 4096
    # backward of each conv: the input gradient and the weight gradient cost one forward each.
    se_fwd_bwd = 3 * se_fwd  # = 12288
    # eca: adaptive k = 3 for C = 64; Conv1d(1, 1, 3) over the C channels of each sample.
    eca_fwd = 2 * b * c * 3  # = 768
    for s in SIZES:
        assert rows["se", s]["flops"] == se_fwd == 4096
        assert rows["se", s]["macs"] == se_fwd // 2
        assert rows["se", s]["flops_fwd_bwd"] == se_fwd_bwd
        assert rows["se", s]["params"] == (c * hidden + hidden) + (hidden * c + c)
        assert rows["eca", s]["flops"] == eca_fwd
        # backward: at least the weight gradient (one more k-tap product per channel); the input gradient is
        # counted too when the 1-D conv runs as a convolution, not when it is an elementwise outer product.
        assert rows["eca", s]["flops_fwd_bwd"] in (2 * eca_fwd, 3 * eca_fwd)
        assert rows["eca", s]["params"] == 3


def test_memory_is_the_real_peak(run):
    """se's forward allocates its output (B·C·H·W floats) and little else: the figure must say so."""
    doc, _ = run
    r = rows_by(doc)["se", 32]
    out = 2 * 64 * 32 * 32 * 4
    assert 0.9 * out <= r["fwd_mem_bytes"] <= 1.3 * out + 256 * 1024, r["fwd_mem_bytes"]
    # forward+backward holds at least the output and the input gradient.
    assert 1.9 * out <= r["fwd_bwd_mem_bytes"] <= 8 * out, r["fwd_bwd_mem_bytes"]


def test_memory_ignores_the_parents_peak(tmp_path):
    """A parent that held 400 MiB before starting the bench must not leak that into the figures."""
    code = textwrap.dedent(
        """
        import sys
        ballast = bytearray(400 * 2**20)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        from attnzoo.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    proc = bench("--modules", "se", "--sizes", "32", "--forward-only", "--format", "json", *FAST,
                 prefix=[sys.executable, "-c", code])
    r = json.loads(proc.stdout)["results"][0]
    out = 2 * 64 * 32 * 32 * 4
    assert r["error"] is None
    assert r["fwd_mem_bytes"] <= 1.3 * out + 256 * 1024, r["fwd_mem_bytes"]
    assert r["fwd_bwd_ms"] is None and r["fwd_bwd_mem_bytes"] is None and r["flops_fwd_bwd"] is None


def test_every_format_parses(run, tmp_path, capsys, monkeypatch):
    doc, path = run
    n = len(doc["results"])
    # CSV from a real measurement
    proc = bench("--modules", "eca", "--sizes", "20x12", "--kwargs", '{"eca": {"kernel_size": 5}}', "--format", "csv",
                 *FAST)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    from attnzoo.bench.report import ROW_FIELDS

    assert len(rows) == 1 and tuple(rows[0]) == ROW_FIELDS
    assert rows[0]["module"] == "eca" and json.loads(rows[0]["size"]) == [20, 12] and rows[0]["error"] == ""
    assert json.loads(rows[0]["kwargs"]) == {"kernel_size": 5} and rows[0]["params"] == "5"
    assert float(rows[0]["fwd_ms"]) > 0 and int(rows[0]["flops"]) == 2 * 2 * 64 * 5  # k = 5 taps per channel
    # CSV, Markdown and tables re-rendered from the saved JSON (same CLI, in-process: nothing is measured)
    rows = list(csv.DictReader(io.StringIO(render(capsys, "--load", str(path), "--format", "csv"))))
    assert [r["module"] for r in rows] == [r["module"] for r in doc["results"]]
    assert [float(r["fwd_ms"]) for r in rows] == [r["fwd_ms"] for r in doc["results"]]
    md = render(capsys, "--load", str(path), "--format", "markdown")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + n and re.fullmatch(r"\|(-+:?\|)+", table[1])
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:3] == ["module", "input", "params"] and "fwd ms" in header and "fwd+bwd MiB" in header
    assert all(len(line.strip("|").split("|")) == len(header) for line in table)
    assert "MACs = FLOPs / 2" in md
    rich_table = render(capsys, "--load", str(path))
    assert "se" in rich_table and "eca" in rich_table and "fwd+bwd ms" in rich_table and "┃" in rich_table
    # without rich the table degrades to plain text
    for mod in [m for m in sys.modules if m == "rich" or m.startswith("rich.")] + ["rich"]:
        monkeypatch.setitem(sys.modules, mod, None)
    lines = render(capsys, "--load", str(path)).splitlines()
    assert lines[1].split()[:3] == ["module", "input", "params"] and "┃" not in "".join(lines)
    assert sum(1 for line in lines if line.startswith(("se ", "eca "))) == n
    # --output infers the format from the extension and still prints the table
    out = tmp_path / "again.json"
    assert "fwd ms" in render(capsys, "--load", str(path), "--output", str(out))
    assert json.loads(out.read_text()) == doc


def render(capsys, *args: str) -> str:
    from attnzoo.cli import main

    capsys.readouterr()
    assert main(["bench", *args]) == 0
    return capsys.readouterr().out


def test_plot(run, tmp_path, capsys):
    _, path = run
    png = tmp_path / "sweep.png"
    render(capsys, "--load", str(path), "--plot", str(png), "--format", "json")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_failing_module_does_not_stop_the_run(tmp_path):
    plugin = tmp_path / "broken_modules.py"
    plugin.write_text(PLUGIN)
    proc = bench("--modules", "bench_fails_large,se,bench_crashes,bench_hangs,eca", "--sizes", "14,32",
                 "--timeout", "10", "--import", str(plugin), "--format", "json", *FAST)
    rows = rows_by(json.loads(proc.stdout))
    assert len(rows) == 10
    ok = rows["bench_fails_large", 14]
    assert ok["error"] is None and ok["fwd_ms"] > 0
    bad = rows["bench_fails_large", 32]
    assert bad["error"].startswith("forward: RuntimeError: deliberate failure above 16x16"), bad["error"]
    assert bad["error_stage"] == "forward" and bad["params"] == 64 and bad["fwd_ms"] is None
    for s in (14, 32):
        crash = rows["bench_crashes", s]
        assert "crash: process killed by SIGKILL" in crash["error"] and crash["params"] == 64, crash["error"]
        hang = rows["bench_hangs", s]
        assert "timeout: no result after 10 s" in hang["error"], hang["error"]
        for name in ("se", "eca"):
            assert rows[name, s]["error"] is None and rows[name, s]["fwd_bwd_ms"] > 0
    assert proc.returncode == 0
    strict = bench("--modules", "bench_fails_large", "--sizes", "32", "--import", str(plugin), "--strict", *FAST,
                   check=False)
    assert strict.returncode == 1 and "deliberate failure" in strict.stdout


def test_bad_arguments():
    proc = bench("--modules", "see", check=False)
    assert proc.returncode != 0 and "unknown attnzoo module 'see'" in proc.stderr and "'se'" in proc.stderr
    proc = bench("--modules", "se", "--sizes", "14,0", check=False)
    assert proc.returncode != 0 and "--sizes" in proc.stderr


def test_parent_side_stays_light():
    """The CLI modules import neither torch nor rich/matplotlib at import time."""
    for name in ("cli.py", "report.py", "runner.py", "__init__.py"):
        tree = ast.parse((BENCH_DIR / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        mods += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not [m for m in mods if m.split(".")[0] in ("torch", "rich", "matplotlib", "attnzoo")], (name, mods)
    code = "import sys, attnzoo, attnzoo.cli, attnzoo.bench.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'rich'" not in loaded and "'matplotlib'" not in loaded
