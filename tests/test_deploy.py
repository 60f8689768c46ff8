"""The deployment contract: every registered module runs in ONNX Runtime, OpenVINO and ncnn within tolerance of
eager PyTorch, or declares the runtime unsupported with a reason; plus ``attnzoo deploy`` itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import attnzoo
from attnzoo.cli import main
from attnzoo.deploy import RUNTIMES, check, deploy
from attnzoo.deploy import report as deploy_report
from attnzoo.deploy.runtimes import CONTRACT_CHECK
from helpers import missing, require

NAMES = attnzoo.list_modules()
#: Small odd size: paddings, window counts and poolings that do not divide, and quick exports.
SIZE = (13, 11)


def _need(runtime: str) -> None:
    if not RUNTIMES[runtime].available():
        missing(runtime)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize("name", NAMES)
def test_module_runs_in_runtime(name, runtime):
    _need(runtime)
    res = check(name, runtime, size=SIZE, min_time=0.0, timeout=300)
    declared = attnzoo.info(name).exceptions.get(CONTRACT_CHECK[runtime])
    if declared is not None:
        assert res.status == "exception", f"{name} declares {runtime} unsupported ({declared}) but it runs: {res}"
        return
    assert res.status == "ok", f"{name} in {runtime}: {res.status}: {res.message} (max diff {res.max_abs_diff})"
    assert res.scaled_diff is not None and res.scaled_diff <= RUNTIMES[runtime].tolerance


@pytest.mark.slow
@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_resnet18_with_cbam_runs_in_runtime(runtime):
    _need(runtime)
    require("torchvision")
    res = check(model="resnet18", insert="cbam", runtime_name=runtime, size=(64, 64), min_time=0.0, timeout=600)
    assert res.status == "ok", res
    assert res.module == "resnet18+cbam"


def test_a_broken_export_is_a_mismatch_not_ok(monkeypatch):
    """The comparison can fail: a runtime that returns slightly wrong numbers is reported as a mismatch."""
    _need("onnxruntime")
    from attnzoo.deploy import runtimes as rt_mod

    real = rt_mod._PREPARE["onnxruntime"]

    def wrong(*args):
        run = real(*args)
        return lambda arrays: [a + 1e-2 for a in run(arrays)]

    monkeypatch.setitem(rt_mod._PREPARE, "onnxruntime", wrong)
    res = check("se", "onnxruntime", size=(5, 5), min_time=0.0, isolate=False)
    assert res.status == "mismatch" and res.max_abs_diff == pytest.approx(1e-2, rel=1e-3), res


def test_a_converter_failure_is_reported_with_its_reason(monkeypatch):
    _need("onnxruntime")
    from attnzoo.deploy import runtimes as rt_mod

    def fails(*args):
        raise rt_mod.ConversionError("cat along batch axis 0 is not supported")

    monkeypatch.setitem(rt_mod._PREPARE, "onnxruntime", fails)
    res = check("se", "onnxruntime", size=(5, 5), min_time=0.0, isolate=False)
    assert res.status == "failed" and "batch axis" in res.message


def test_missing_runtime_is_reported(monkeypatch):
    from attnzoo.deploy import runtimes as rt_mod

    monkeypatch.setattr(rt_mod.Runtime, "available", lambda self: False)
    res = deploy(["se"], ["ncnn"])
    assert [r.status for r in res] == ["missing"] and "attnzoo[deploy]" in res[0].message


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="runtime must be one of"):
        deploy(["se"], ["tensorrt"])
    with pytest.raises(ValueError):
        deploy(["not_a_module"], ["onnxruntime"])


def test_cli_json_markdown_and_update_doc(tmp_path, capsys):
    _need("onnxruntime")
    out = tmp_path / "d.json"
    assert main(["deploy", "--modules", "se,cbam", "--runtimes", "onnxruntime", "--size", "9x7", "--min-time", "0",
                 "--output", str(out), "--quiet", "--strict"]) == 0  # fmt: skip
    data = json.loads(out.read_text())
    assert [r["module"] for r in data["rows"]] == ["se", "cbam"]
    assert all(r["status"] == "ok" and r["input_shapes"][0][2:] == [9, 7] for r in data["rows"])
    assert data["runtimes"]["onnxruntime"] and data["threads"] == 1
    doc = tmp_path / "deployment.md"
    doc.write_text(f"# guide\n\n{deploy_report.MARK_START}\nold\n{deploy_report.MARK_END}\n\nafter\n")
    assert main(["deploy", "--load", str(out), "--update-doc", str(doc), "--format", "markdown"]) == 0
    text = doc.read_text()
    assert "old" not in text and "| `se` |" in text and "| `cbam` |" in text and text.endswith("after\n")
    printed = capsys.readouterr().out
    assert "| module | eager | ONNX Runtime |" in printed


def test_markdown_cells():
    from attnzoo.deploy import DeployResult

    rows = [
        DeployResult("se", "onnxruntime", "ok", max_abs_diff=2e-7, latency_ms=0.5, eager_ms=1.0),
        DeployResult("se", "ncnn", "exception", message="6-D permute"),
    ]
    md = deploy_report.to_markdown(rows)
    assert "ok · 2.0e-07 · 0.5 ms (0.5×)" in md and "declared: 6-D permute" in md
    assert "ONNX Runtime 1/1 ok" in md and "ncnn (pnnx) 0/1 ok (1 exception)" in md


def test_flat_io_rebuilds_lists():
    from attnzoo.testing import FlatIO, flatten

    m = attnzoo.create("bifpn", [8, 16, 32]).eval()
    xs = [torch.randn(1, c, s, s) for c, s in ((8, 8), (16, 4), (32, 2))]
    flat_out = FlatIO(m, (xs,))(*xs)
    for a, b in zip(flatten(flat_out), flatten(m(xs))):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_deployment_doc_has_a_current_row_per_module():
    """docs/deployment.md and docs/deployment.json (``attnzoo deploy --update-doc``) cover the whole registry,
    every row ok or a declared exception; a new module without a row fails here."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    text = (docs / "deployment.md").read_text()
    body = text.split(deploy_report.MARK_START)[1].split(deploy_report.MARK_END)[0]
    rows = re.findall(r"^\| `([^`]+)` \|", body, re.M)
    regen = "regenerate: attnzoo deploy --size 13x11 --update-doc docs/deployment.md --output docs/deployment.json"
    assert sorted(rows) == sorted(NAMES), f"docs/deployment.md rows differ from the registry; {regen}"
    results, meta = deploy_report.from_json((docs / "deployment.json").read_text())
    assert {(r.module, r.runtime) for r in results} == {(n, rt) for n in NAMES for rt in RUNTIMES}, regen
    for r in results:
        declared = attnzoo.info(r.module).exceptions.get(CONTRACT_CHECK[r.runtime])
        assert r.status == ("exception" if declared else "ok"), f"{r.module} / {r.runtime}: {r.status} {r.message}"
    assert meta["size"] == "13x11"
    assert "docs/deployment.md" in (docs.parent / "README.md").read_text()
