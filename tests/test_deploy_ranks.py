"""``attnzoo deploy --dims 1|3``: the deployment matrix per spatial rank, its tables in docs/deployment.md, and
the per-rank declarations (``ModuleInfo.exceptions_by_dims``)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import attnzoo
from attnzoo.cli import main
from attnzoo.deploy import RUNTIMES, DeployResult, check
from attnzoo.deploy import ranks as deploy_ranks
from attnzoo.deploy import report as deploy_report
from attnzoo.deploy.runtimes import CONTRACT_CHECK
from helpers import missing

DOCS = Path(__file__).resolve().parents[1] / "docs"
REGEN = "regenerate: attnzoo deploy --dims 1,3 --min-time 0 --update-doc docs/deployment.md --output docs/deployment-ranks.json"


def _fake_check(calls, monkeypatch=None):
    """A stand-in for :func:`attnzoo.deploy.check` that records its arguments (no runtime needed, none imported)."""
    if monkeypatch is not None:
        monkeypatch.setattr(deploy_ranks, "preload", lambda names: None)

    def fake(name, runtime_name, *, size, dims, **kwargs):
        calls.append((name, runtime_name, tuple(size), dims))
        return DeployResult(name, runtime_name, "ok", max_abs_diff=1e-7, scaled_diff=1e-7, size="x".join(map(str, size)),
                            dims=dims)  # fmt: skip

    return fake


def test_cli_dims_runs_each_module_at_the_ranks_sizes(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setattr(deploy_ranks, "check", _fake_check(calls, monkeypatch))
    out = tmp_path / "ranks.json"
    assert main(["deploy", "--dims", "1,3", "--modules", "se,cbam", "--runtimes", "ncnn,openvino", "--quiet",
                 "--output", str(out)]) == 0  # fmt: skip
    expected = [(m, rt, s, d) for d in (1, 3) for m in ("se", "cbam") for s in deploy_ranks.RANK_SIZES[d]
                for rt in ("ncnn", "openvino")]  # fmt: skip
    assert calls == expected
    data = json.loads(out.read_text())
    assert data["ranks"] and data["sizes"] == {"1": ["16", "13"], "3": ["4x8x8", "3x7x5"]}
    assert {(r["module"], r["dims"], r["size"]) for r in data["rows"]} == {(m, d, "x".join(map(str, s)))
                                                                           for m, _, s, d in expected}  # fmt: skip


def test_cli_dims_default_modules_and_sizes(monkeypatch):
    calls: list = []
    monkeypatch.setattr(deploy_ranks, "check", _fake_check(calls, monkeypatch))
    assert main(["deploy", "--dims", "3", "--runtimes", "onnxruntime", "--sizes", "5,2x3x4", "--quiet",
                 "--format", "json"]) == 0  # fmt: skip
    assert [c[0] for c in calls[::2]] == attnzoo.list_modules(dims=3)
    assert {(c[2], c[3]) for c in calls} == {((5, 5, 5), 3), ((2, 3, 4), 3)}


@pytest.mark.parametrize(
    "argv",
    [
        ["--dims", "2"],
        ["--dims", "4"],
        ["--dims", "x"],
        ["--dims", "1", "--sizes", "3x4"],  # a 3-axis size at rank 1
        ["--dims", "3", "--size", "8"],
        ["--dims", "3", "--variants"],
        ["--dims", "3", "--modules", "coord"],  # a 2-D only module
    ],
)
def test_cli_dims_rejects_bad_arguments(argv, monkeypatch):
    monkeypatch.setattr(deploy_ranks, "check", _fake_check([], monkeypatch))
    with pytest.raises(SystemExit):
        main(["deploy", *argv, "--runtimes", "ncnn", "--quiet", "--format", "json"])


def test_merge_keeps_the_other_ranks_cells(monkeypatch, tmp_path):
    monkeypatch.setattr(deploy_ranks, "check", _fake_check([], monkeypatch))
    out = tmp_path / "ranks.json"
    main(["deploy", "--dims", "1,3", "--modules", "se", "--runtimes", "ncnn", "--quiet", "--output", str(out)])
    main(["deploy", "--dims", "3", "--modules", "eca", "--runtimes", "ncnn", "--quiet", "--merge", "--output", str(out)])
    data = json.loads(out.read_text())
    assert [(r["module"], r["dims"]) for r in data["rows"]] == [("se", 1)] * 2 + [("se", 3)] * 2 + [("eca", 3)] * 2
    assert data["additions"][0]["modules"] == ["eca"]
    monkeypatch.setattr("attnzoo.deploy.core.deploy", lambda *a, **k: [])
    with pytest.raises(SystemExit, match="per-rank"):  # a 2-D matrix is not a per-rank one
        main(["deploy", "--modules", "se", "--runtimes", "ncnn", "--merge", "--output", str(out), "--quiet"])


def _rows():
    return [
        DeployResult("se", "onnxruntime", "ok", max_abs_diff=2e-7, scaled_diff=2e-7, size="16", dims=1),
        DeployResult("se", "ncnn", "ok", max_abs_diff=3e-5, scaled_diff=3e-5, size="16", dims=1),
        DeployResult("se", "onnxruntime", "ok", max_abs_diff=1e-6, scaled_diff=1e-6, size="4x8x8", dims=3),
        DeployResult("se", "ncnn", "failed", message="layer load_param failed", size="4x8x8", dims=3),
        DeployResult("gc", "onnxruntime", "ok", max_abs_diff=4e-7, scaled_diff=4e-7, size="4x8x8", dims=3),
        DeployResult("gc", "ncnn", "mismatch", max_abs_diff=0.5, scaled_diff=0.5, message="max 0.5", size="4x8x8",
                     dims=3),  # fmt: skip
    ]


def test_rank_tables_render_each_rank_with_numbered_reasons():
    md = deploy_ranks.ranks_markdown(_rows())
    one, three = md.split("### 3-D")
    assert "### 1-D" in one and "| module | ONNX Runtime 16 | ncnn (pnnx) 16 |" in one
    assert "| `se` | ok · 2e-07 | ok · 3e-05 |" in one
    assert "Totals 1-D: ONNX Runtime 1/1 ok (largest scaled difference 2.0e-07); ncnn (pnnx) 1/1 ok (largest scaled difference 3.0e-05)" in one  # fmt: skip
    assert "| module | ONNX Runtime 4×8×8 | ncnn (pnnx) 4×8×8 |" in three
    assert "| `se` | ok · 1e-06 | FAILED (1) |" in three and "| `gc` | ok · 4e-07 | MISMATCH (2) |" in three
    assert "1. `se` 3-D in ncnn (pnnx) at 4×8×8: FAILED: layer load_param failed" in three
    assert "2. `gc` 3-D in ncnn (pnnx) at 4×8×8: MISMATCH: max 0.5" in three
    assert "ncnn (pnnx) 0/2 ok, 1 FAILED, 1 MISMATCH" in three


def test_rank_tables_apply_the_declarations_of_the_rank_only(monkeypatch):
    real = attnzoo.info
    se = dataclasses.replace(real("se"), exceptions_by_dims={3: {"ncnn": "a reason given for the test"}})
    monkeypatch.setattr(attnzoo, "info", lambda n: se if n == "se" else real(n))
    md = deploy_ranks.ranks_markdown(_rows())
    assert "| `se` | ok · 1e-06 | declared (1) |" in md and "MISMATCH (2)" in md  # gc's row is not declared
    assert "1. `se` 3-D in ncnn (pnnx) at 4×8×8: declared: a reason given for the test (layer load_param failed)" in md
    assert deploy_ranks.declared_reason("se", "ncnn", 3) == "a reason given for the test"
    assert deploy_ranks.declared_reason("se", "ncnn", 1) is None and deploy_ranks.declared_reason("se", "ncnn") is None


def test_update_doc_replaces_the_rank_tables_only(tmp_path):
    doc = tmp_path / "deployment.md"
    doc.write_text(f"# guide\n\n{deploy_ranks.RANKS_START}\nold\n{deploy_ranks.RANKS_END}\n\nafter\n")
    deploy_ranks.update_ranks_doc(doc, _rows(), {"sizes": {"1": ["16"], "3": ["4x8x8"]}, "threads": 1})
    text = doc.read_text()
    assert "old" not in text and "### 1-D" in text and "### 3-D" in text and text.endswith("after\n")
    assert "1-D at 16; 3-D at 4×8×8" in text
    (tmp_path / "plain.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="markers"):
        deploy_ranks.update_ranks_doc(tmp_path / "plain.md", _rows(), {})


def test_exceptions_by_dims_are_validated():
    from torch import nn

    class Gate(nn.Module):
        def __init__(self, channels: int, *, dims: int = 2) -> None:
            super().__init__()

    ok = dict(family="channel", paper="test", complexity="O(N)", dims=(1, 2, 3))
    with pytest.raises(ValueError, match="unknown checks"):
        attnzoo.register("rank_test_a", **ok, exceptions_by_dims={3: {"tensorrt": "not a contract check at all"}})(Gate)
    with pytest.raises(ValueError, match="exceptions_by_dims keys"):
        attnzoo.register("rank_test_b", **ok, exceptions_by_dims={2: {"ncnn": "2-D goes in exceptions, not here"}})(Gate)
    with pytest.raises(ValueError, match="real reason"):
        attnzoo.register("rank_test_c", **ok, exceptions_by_dims={3: {"ncnn": "short"}})(Gate)
    assert "rank_test_a" not in attnzoo.list_modules()


def test_deployment_doc_has_the_rank_tables():
    """docs/deployment.md's per-rank tables and docs/deployment-ranks.json cover every (module, rank) of the
    registry at the ranks' two sizes in every runtime, each cell ok or declared for that rank."""
    results, meta = deploy_report.from_json((DOCS / "deployment-ranks.json").read_text())
    sizes = {d: ["x".join(map(str, s)) for s in deploy_ranks.RANK_SIZES[d]] for d in (1, 3)}
    assert meta["sizes"] == {str(d): s for d, s in sizes.items()}, REGEN
    want = {(n, d, rt, s) for d in (1, 3) for n in attnzoo.list_modules(dims=d) for rt in RUNTIMES for s in sizes[d]}
    assert {(r.module, r.dims, r.runtime, r.size) for r in results} == want, REGEN
    for r in results:
        declared = deploy_ranks.declared_reason(r.module, r.runtime, r.dims)
        assert r.status == ("exception" if declared else "ok"), f"{r.module} {r.dims}-D / {r.runtime}: {r.status} {r.message}"
    text = (DOCS / "deployment.md").read_text()
    body = text.split(deploy_ranks.RANKS_START)[1].split(deploy_ranks.RANKS_END)[0]
    assert body == "\n" + deploy_ranks.ranks_markdown(results, meta), REGEN
    for d in (1, 3):
        table = body.split(f"### {d}-D")[1].split("Totals")[0]
        assert sorted(re.findall(r"^\| `([^`]+)` \|", table, re.M)) == sorted(attnzoo.list_modules(dims=d)), REGEN


def _rotation():
    """Each module of some rank once, at one (rank, runtime, size) taken in turn: every module in CI, the turn
    visiting both ranks at both sizes in ncnn and OpenVINO (ONNX Runtime's dynamo export costs 3–5× a pnnx or
    OpenVINO conversion; the full table covers it)."""
    pairs = [(d, rt, s) for d in (1, 3) for rt in ("ncnn", "openvino") for s in deploy_ranks.RANK_SIZES[d]]
    cases = []
    for k, name in enumerate(attnzoo.list_modules(dims=3)):
        dims, rt, size = pairs[(3 * k) % len(pairs)]  # a step coprime with the 8 pairs: all visited
        cases.append(pytest.param(name, dims, rt, size, id=f"{name}-{dims}d-{rt}-{'x'.join(map(str, size))}"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("name, dims, runtime, size", _rotation())
def test_module_runs_in_runtime_at_rank(name, dims, runtime, size):
    if not RUNTIMES[runtime].available():
        missing(runtime)
    res = check(name, runtime, dims=dims, size=size, min_time=0.0, timeout=300)
    declared = attnzoo.info(name).exceptions_at(dims).get(CONTRACT_CHECK[runtime])
    if declared is not None:
        assert res.status == "exception", f"{name} declares {runtime} at {dims}-D unsupported ({declared}) but it runs"
        return
    assert res.status == "ok", f"{name} {dims}-D in {runtime} at {size}: {res.status}: {res.message}"
    assert res.dims == dims and res.input_shapes[0][2:] == list(size)
