"""``python -m attnzoo.dev sync``: the repository is in sync, and on a temporary copy of the checkout a new module
file is wired in (export blocks, README table, snapshot, provenance stub, slow commands) and a removed one is
wired out, with generated code that ruff leaves as it is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import attnzoo
from attnzoo import dev
from attnzoo.deploy import report

ROOT = Path(__file__).resolve().parents[1]

NEW_MODULE = '''"""Zz test gate: a throwaway module written by tests/test_dev.py."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..layers import Gate
from ..registry import register

__all__ = ["ZzTestGate"]


@register("zz_test_gate", family="channel", paper="Nobody, 2026", complexity="O(N)", maps=("gate",))
class ZzTestGate(Gate):
    """A throwaway gate; B×C×H×W → B×C×H×W."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.fc = nn.Conv2d(channels, channels, 1)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
'''


def test_the_repository_is_in_sync(capsys):
    """Fails when a module was added, renamed or removed without running ``python -m attnzoo.dev sync``."""
    status = dev.main(["sync", "--check"])
    assert status == 0, capsys.readouterr().out


@pytest.fixture()
def checkout(tmp_path):
    """A copy of the files sync reads and writes; the throwaway module is unregistered afterwards."""
    (tmp_path / "src").mkdir()
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "README.md", tmp_path)
    shutil.copytree(ROOT / "src" / "attnzoo", tmp_path / "src" / "attnzoo", ignore=shutil.ignore_patterns("__pycache__"))
    benches = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs" / "data").glob("bench*.json"))]
    for rel in ("tests/data/state_dict_keys.json", "docs/deployment.json", "docs/deployment.md", *benches):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / "docs" / "provenance", tmp_path / "docs" / "provenance")
    assert not dev.sync(tmp_path, check=True).stale  # the copy starts in sync
    yield tmp_path
    if "zz_test_gate" in attnzoo.list_modules():
        attnzoo.registry.unregister("zz_test_gate")
    sys.modules.pop("attnzoo.channel.zz_test_gate", None)


#: The shared files a new (or removed) module changes, all written by sync.
SHARED = ("src/attnzoo/channel/__init__.py", "src/attnzoo/__init__.py", "README.md", "tests/data/state_dict_keys.json")


def add_deploy_rows(checkout: Path) -> None:
    """What ``attnzoo deploy --modules zz_test_gate --merge`` writes, with the rows of ``se`` as the figures."""
    rows, meta = report.from_json((checkout / "docs/deployment.json").read_text())
    merged = report.merge(rows, [type(r)(**dict(r.to_dict(), module="zz_test_gate")) for r in rows if r.module == "se"])
    (checkout / "docs/deployment.json").write_text(report.to_json(merged, meta))
    md = checkout / "docs/deployment.md"
    md.write_text(report.render_doc(md.read_text(), merged, meta))


def ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True)


def test_a_new_module_file_is_wired_in(checkout):
    (checkout / "src/attnzoo/channel/zz_test_gate.py").write_text(NEW_MODULE)
    res = dev.sync(checkout)
    assert set(res.writes) == {*SHARED, "docs/provenance/zz_test_gate.md"}
    family = (checkout / "src/attnzoo/channel/__init__.py").read_text()
    package = (checkout / "src/attnzoo/__init__.py").read_text()
    assert "from .zz_test_gate import ZzTestGate\n" in family and '    "ZzTestGate",\n' in family
    assert "    ZzTestGate,\n" in package and '    "ZzTestGate",\n' in package
    assert "| `zz_test_gate` | `ZzTestGate` | channel |" in (checkout / "README.md").read_text()
    snapshot = json.loads((checkout / "tests/data/state_dict_keys.json").read_text())
    assert snapshot["zz_test_gate"] == {"fc.bias": [64], "fc.weight": [64, 64, 1, 1]}
    stub = (checkout / "docs/provenance/zz_test_gate.md").read_text()
    assert stub.startswith("# `zz_test_gate` — ZzTestGate\n") and dev.STUB_MARK in stub
    assert "`attnzoo/channel/zz_test_gate.py`" in stub
    assert res.commands == [
        "attnzoo deploy --modules zz_test_gate --size 13x11 --merge --output docs/deployment.json "
        "--update-doc docs/deployment.md",
        f"attnzoo bench --modules zz_test_gate {dev.BENCH_ARGS} --output docs/data/bench-zz_test_gate.json",
    ]
    # the generated code is already what ruff (lint with isort, format) wants
    lint = ruff("check", "src/attnzoo/__init__.py", "src/attnzoo/channel/__init__.py", cwd=checkout)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = ruff("format", "--check", "src/attnzoo/__init__.py", "src/attnzoo/channel/__init__.py", cwd=checkout)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr

    # a second run writes nothing; --check stays stale while the stub is unfilled and the slow rows are missing
    again = dev.sync(checkout, check=True)
    assert not again.writes and again.stale
    assert again.problems == ["docs/provenance/zz_test_gate.md is still the stub: fill in its TODOs and delete the stub line"]
    (checkout / "docs/provenance/zz_test_gate.md").write_text(stub.replace(dev.STUB_MARK + "\n\n", ""))
    bench = json.loads((checkout / "docs/data/bench.json").read_text())
    bench["results"] = [dict(r, module="zz_test_gate") for r in bench["results"] if r["module"] == "se"]
    (checkout / "docs/data/bench-zz_test_gate.json").write_text(json.dumps(bench))
    add_deploy_rows(checkout)
    final = dev.sync(checkout, check=True)
    assert not final.problems and not final.commands


def test_a_removed_module_is_wired_out(checkout):
    (checkout / "src/attnzoo/channel/zz_test_gate.py").write_text(NEW_MODULE)
    dev.sync(checkout)
    add_deploy_rows(checkout)
    assert "zz_test_gate" in (checkout / "docs/deployment.md").read_text()

    (checkout / "src/attnzoo/channel/zz_test_gate.py").unlink()
    (checkout / "docs/provenance/zz_test_gate.md").unlink()
    attnzoo.registry.unregister("zz_test_gate")
    res = dev.sync(checkout)
    assert set(res.writes) == {*SHARED, "docs/deployment.json", "docs/deployment.md"}
    for rel in res.writes:
        assert (checkout / rel).read_text() == (ROOT / rel).read_text(), rel
    assert not dev.sync(checkout, check=True).stale


def test_sync_refuses_a_file_without_its_generated_block(checkout):
    init = checkout / "src/attnzoo/resample/__init__.py"
    init.write_text(init.read_text().replace(dev.BLOCK_END, ""))
    with pytest.raises(ValueError, match="resample/__init__.py needs exactly one generated block"):
        dev.sync(checkout, check=True)
    with pytest.raises(ValueError, match="not an attnzoo source checkout"):
        dev.sync(checkout / "docs")


def test_deploy_merge_keeps_the_other_modules_rows():
    rows, _ = report.from_json((ROOT / "docs/deployment.json").read_text())
    se = [type(r)(**dict(r.to_dict(), latency_ms=1.0)) for r in rows if r.module == "se"]
    merged = report.merge(rows, se)
    assert len(merged) == len(rows)
    assert [r.latency_ms for r in merged if r.module == "se"] == [1.0] * len(se)
    assert [r for r in merged if r.module != "se"] == [r for r in rows if r.module != "se"]
    assert [(r.module, r.runtime) for r in merged] == [(r.module, r.runtime) for r in rows]


def test_deploy_merge_records_the_run_that_added_rows():
    _, meta = report.from_json((ROOT / "docs/deployment.json").read_text())
    new = {**meta, "machine": "Other CPU", "created": "2031-01-02"}
    merged = report.merge_meta(meta, new, ["zz_b", "zz_a", "zz_b"])
    assert merged["created"] == meta["created"] and merged["machine"] == meta["machine"]
    run = {k: v for k, v in new.items() if k not in ("size", "threads", "additions")}
    assert merged["additions"] == [*meta.get("additions", []), {**run, "modules": ["zz_a", "zz_b"]}]
    line = report.to_markdown([], merged).splitlines()[0]
    assert line.endswith("Rows of `zz_a`, `zz_b` added later (Other CPU, 2031-01-02, torch " + str(meta["torch"]) + ").")


def test_bench_args_are_the_documentation_run():
    """The bench command sync prints is the documentation's BENCH_COMMAND (docs/sitegen) for one module."""
    from test_docs_site import load_sitegen

    assert load_sitegen().BENCH_COMMAND == f"attnzoo bench {dev.BENCH_ARGS} --output docs/data/bench.json"
