"""Deployment beyond the defaults and ``attnzoo deploy --save``.

- The variants table (:mod:`attnzoo.deploy.variants`) names every mode switch of every registered module, with
  every choice it accepts, and the contract's ``test_kwargs`` of every module.
- CI's bounded subset of the table: every configuration but the defaults (``test_module_runs_in_runtime`` of
  tests/test_deploy.py runs those in all three runtimes; also skipped: an empty ``test_kwargs``, the defaults at
  small channels) is deployed once, in a (runtime, size) pair taken in
  turn over ``CI_RUNTIMES`` (ncnn, OpenVINO) × the two sizes; the full table (every configuration × 3 runtimes × 2 sizes) is
  ``attnzoo deploy --variants``, shown in docs/deployment.md.
- ``--save DIR`` keeps artefacts that load and run in their runtimes and give the manifest's recorded output.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

import attnzoo
from attnzoo.cli import main
from attnzoo.deploy import RUNTIMES, check
from attnzoo.deploy import report as deploy_report
from attnzoo.deploy.runtimes import CONTRACT_CHECK
from attnzoo.deploy.variants import (
    ACTIVATION_ARGS,
    VARIANT_EXCEPTIONS,
    VARIANT_SIZES,
    VARIANTS,
    configurations,
    declared_variant,
)
from helpers import missing

NAMES = attnzoo.list_modules()
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _mode_switches(name: str) -> dict[str, tuple[object, list[str] | None]]:
    """``{argument: (default, choices or None)}``: the string-valued constructor arguments of ``name`` that are
    not activation names; the choices are read from the module's own error for a bad value ("one of 'a', 'b'"
    or "'a', 'b' or 'c'"), independently of the table."""
    info = attnzoo.info(name)
    out: dict[str, tuple[object, list[str] | None]] = {}
    for p in list(inspect.signature(info.cls.__init__).parameters.values())[2:]:
        if p.name in ACTIVATION_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not (isinstance(p.default, str) or "str" in str(p.annotation)):
            continue
        if isinstance(p.default, bool) or p.annotation in (bool, "bool"):
            continue
        try:
            attnzoo.create(name, _channels(name), **{**info.test_kwargs, p.name: "__not_a_choice__"})
            choices = None
        except (ValueError, TypeError) as err:
            text = str(err).split(", got")[0]
            if "unknown activation" in text:
                continue
            listed = text.split(" must be ")[-1].split("(")[0]  # "(or … spellings)": aliases, not choices
            choices = None if " unless " in listed or " with " in listed else re.findall(r"'([^']+)'", listed) or None
        out[p.name] = (p.default, choices)
    return out


def _channels(name: str):
    from attnzoo.deploy.variants import small_channels
    from attnzoo.layouts import example_channels

    return example_channels(name, small_channels(name))


def test_every_module_has_a_variants_entry():
    assert sorted(VARIANTS) == sorted(NAMES), "add the module's configurations to attnzoo/deploy/variants.py"


@pytest.mark.parametrize("name", NAMES)
def test_variants_cover_every_mode_switch_and_test_kwargs(name):
    configs = configurations(name)
    assert configs[0] == ("defaults", {}, None)
    test_kwargs = dict(attnzoo.info(name).test_kwargs)
    assert configs[1][1] == test_kwargs, "the contract's test_kwargs are deployed as they are"
    for arg, (default, choices) in _mode_switches(name).items():
        values = {repr(kw.get(arg, default)) for _, kw, _ in configs}
        values.add(repr(default))
        if choices:
            absent = [c for c in choices if repr(c) not in values]
            assert not absent, f"{name}: mode switch {arg}= choices {absent} are in no configuration of VARIANTS"
        else:  # choices not listed by the module's error: at least one non-default value
            assert len(values) > 1, f"{name}: mode switch {arg}= has no non-default value in VARIANTS"


def test_mode_switch_discovery_can_fail():
    """The coverage check sees the known switches (so an empty discovery does not pass silently)."""
    assert _mode_switches("multipole") == {
        "downsampling": ("avg_pool", ["avg_pool", "conv"]),
        "upsampling": ("nearest", ["nearest", "conv_transpose"]),
    }
    assert _mode_switches("nonlocal")["mode"][1] == ["embedded_gaussian", "gaussian", "dot_product", "concatenation"]
    assert "act" not in _mode_switches("se")


def test_declared_variants_match_by_subset():
    for name, entries in VARIANT_EXCEPTIONS.items():
        for args, runtime, reason in entries:
            assert runtime in RUNTIMES and len(reason) > 20, (name, runtime, reason)
            matched = [kw for _, kw, _ in configurations(name) if declared_variant(name, kw, runtime) == reason]
            assert matched, f"{name}: declared variant {args} in {runtime} matches no configuration of the table"


#: CI's runtimes, in rotation with the two sizes (configuration k: pair k mod 4).  ONNX Runtime's dynamo export
#: costs 3-5x a pnnx / OpenVINO conversion (~5 s a case on this 2-core machine): with it the rotation would add
#: ~6 min to CI; its variants are run by the full table (docs/deployment.md) and its defaults by test_deploy.py.
CI_RUNTIMES = ("ncnn", "openvino")
_PAIRS = [(rt, size) for size in VARIANT_SIZES for rt in CI_RUNTIMES]
CI_CASES = []
for _name in NAMES:
    for _label, _kwargs, _ch in configurations(_name)[1:]:
        if not _kwargs:  # test_kwargs empty: the defaults at small channels, which test_deploy.py runs
            continue
        _rt, _size = _PAIRS[len(CI_CASES) % len(_PAIRS)]
        CI_CASES.append(pytest.param(_name, _kwargs, _ch, _rt, _size, id=f"{_name}-{len(CI_CASES)}-{_rt}"))


@pytest.mark.slow
@pytest.mark.parametrize("name, kwargs, channels, runtime, size", CI_CASES)
def test_variant_runs_in_runtime(name, kwargs, channels, runtime, size):
    if not RUNTIMES[runtime].available():
        missing(runtime)
    res = check(name, runtime, size=size, channels=channels, min_time=0.0, timeout=300, **kwargs)
    declared = attnzoo.info(name).exceptions.get(CONTRACT_CHECK[runtime]) or declared_variant(name, kwargs, runtime)
    if declared is not None:
        assert res.status == "exception", f"{name} {kwargs} declares {runtime} unsupported but it runs: {res}"
        return
    assert res.status == "ok", f"{name} {kwargs} in {runtime} at {size}: {res.status}: {res.message}"
    assert res.scaled_diff is not None and res.scaled_diff <= RUNTIMES[runtime].tolerance


# ---------------------------------------------------------------------------------------------------------------
# --save DIR


def _load_and_run(runtime: str, folder: Path, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Each runtime's own loader on the saved files, as a deployment would."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        return list(sess.run(None, {i.name: a for i, a in zip(sess.get_inputs(), arrays)}))
    if runtime == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled.create_infer_request().infer(arrays)
        return [np.asarray(result[o]) for o in compiled.outputs]
    import ncnn

    manifest = json.loads((folder / "manifest.json").read_text())
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for opt in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic"):
        setattr(net.opt, opt, False)
    assert net.load_param(str(folder / "model.ncnn.param")) == 0 and net.load_model(str(folder / "model.ncnn.bin")) == 0
    ex = net.create_extractor()
    for spec, a in zip(manifest["inputs"], arrays):
        ex.input(spec["name"], ncnn.Mat(np.ascontiguousarray(a[0])).clone())
    outs = []
    for spec in manifest["outputs"]:
        ret, mat = ex.extract(spec["name"])
        assert ret == 0, spec
        outs.append(np.array(mat)[None])
    return outs


@pytest.mark.slow
def test_save_keeps_artefacts_that_load_and_run(tmp_path):
    for runtime in RUNTIMES:
        if not RUNTIMES[runtime].available():
            missing(runtime)
    # cbam: one input, one output; bifpn: a pyramid, three inputs and three outputs (names matter)
    assert main(["deploy", "--modules", "cbam,bifpn", "--size", "9x7", "--min-time", "0", "--quiet", "--strict",
                 "--save", str(tmp_path), "--output", str(tmp_path / "rows.json")]) == 0  # fmt: skip
    expected_files = {"onnxruntime": {"model.onnx"}, "openvino": {"model.xml", "model.bin"},
                      "ncnn": {"model.ncnn.param", "model.ncnn.bin"}}  # fmt: skip
    for name in ("cbam", "bifpn"):
        for runtime in RUNTIMES:
            folder = tmp_path / name / runtime
            manifest = json.loads((folder / "manifest.json").read_text())
            assert manifest["module"] == name and manifest["runtime"] == runtime and manifest["status"] == "ok"
            assert expected_files[runtime] <= set(manifest["files"]) <= {p.name for p in folder.iterdir()}
            assert not list(folder.glob("*.pt")) and not list(folder.glob("*pnnx*")), "converter intermediates kept"
            example = np.load(folder / "example.npz")
            arrays = [example[f"input{i}"] for i in range(len(manifest["inputs"]))]
            assert [list(a.shape) for a in arrays] == [i["shape"] for i in manifest["inputs"]]
            assert all(i["name"] for i in manifest["inputs"] + manifest["outputs"]), manifest
            got = _load_and_run(runtime, folder, arrays)
            assert len(got) == len(manifest["outputs"])
            worst = 0.0
            for g, spec, i in zip(got, manifest["outputs"], range(len(got))):
                ref = example[f"expected{i}"]
                assert list(ref.shape) == spec["shape"]
                worst = max(worst, float(np.abs(g.reshape(ref.shape) - ref).max()))
            assert worst == pytest.approx(manifest["max_abs_diff"], rel=1e-3, abs=1e-9), (name, runtime)
            assert manifest["max_abs_diff"] <= manifest["tolerance"] * max(1.0, manifest["scaled_diff"] or 1.0) * 1e3
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert all(r["artefacts"] for r in rows)


def test_variants_cli_renders_the_table(tmp_path, capsys):
    """--variants --load renders a saved run into the markers (no runtime needed): every failure is numbered with
    its reason, a declared variant is shown as declared."""
    from attnzoo.deploy import DeployResult

    rows = [
        DeployResult("se", "ncnn", "ok", scaled_diff=1e-7, size="16x16", config="defaults"),
        DeployResult("se", "ncnn", "failed", message="convert: boom", size="13x11", config="defaults"),
        DeployResult("se", "openvino", "mismatch", message="max |difference| 0.1", size="16x16", config="defaults"),
    ]
    meta = {"variants": True, "sizes": ["16x16", "13x11"], "runtimes": {}}
    saved = tmp_path / "v.json"
    saved.write_text(deploy_report.to_json(rows, meta))
    doc = tmp_path / "d.md"
    doc.write_text(f"x\n{deploy_report.VARIANTS_START}\nold\n{deploy_report.VARIANTS_END}\ny\n")
    assert main(["deploy", "--load", str(saved), "--update-doc", str(doc), "--format", "markdown"]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("x\n") and text.endswith("y\n")
    assert "| module | configuration | OpenVINO 16×16 | OpenVINO 13×11 | ncnn (pnnx) 16×16 | ncnn (pnnx) 13×11 |" in text
    assert "| `se` | defaults | MISMATCH (1) | – | ok | FAILED (2) |" in text
    assert "1. `se` (defaults) in OpenVINO at 16x16: MISMATCH: max \\|difference\\| 0.1" in text
    assert "2. `se` (defaults) in ncnn (pnnx) at 13x11: FAILED: convert: boom" in text


def test_variants_doc_covers_the_table():
    """docs/deployment.md's variants table (``attnzoo deploy --variants --update-doc``) has a row for every
    configuration of every module, and no row that is failed or mismatched without a declaration."""
    saved = DOCS / "deployment-variants.json"
    results, meta = deploy_report.from_json(saved.read_text())
    results = deploy_report.redeclare(results)
    have = {(r.module, r.config) for r in results}
    want = {(n, label) for n in NAMES for label, _, _ in configurations(n)}
    regen = "regenerate: attnzoo deploy --variants --update-doc docs/deployment.md --output docs/deployment-variants.json"
    assert want <= have, f"{sorted(want - have)[:5]} … missing; {regen}"
    bad = [r for r in results if r.status in ("mismatch", "failed")]
    assert not bad, [(r.module, r.config, r.runtime, r.size, r.message) for r in bad][:5]
    text = (DOCS / "deployment.md").read_text()
    body = text.split(deploy_report.VARIANTS_START)[1].split(deploy_report.VARIANTS_END)[0]
    assert body.count("\n| `") == len({(r.module, r.config) for r in results})


def test_variants_merge_fills_a_column_and_keeps_the_others(tmp_path, monkeypatch):
    """``--variants --merge --output FILE``: the cells (module, configuration, runtime, size) measured now replace
    or join FILE's, every other cell of FILE is kept as it was, the table keeps its row order, and the header
    names the run that added the column (no runtime needed: the run is replaced by fixed rows)."""
    from attnzoo.deploy import DeployResult
    from attnzoo.deploy import core as deploy_core

    def row(module, config, runtime, size, diff):
        return DeployResult(module, runtime, "ok", scaled_diff=diff, size=size, config=config)

    old = [row(m, c, rt, s, 1e-7) for m in ("se", "eca") for c in ("defaults", "k=5")
           for rt in ("openvino", "ncnn") for s in ("16x16", "13x11")]  # fmt: skip
    old = [r for r in old if not (r.runtime == "openvino" and r.size == "16x16" and r.module == "eca")]
    meta = {"variants": True, "rotate": False, "sizes": ["16x16", "13x11"], "runtimes": {}, "size": None,
            "threads": 1, "machine": "old box", "created": "2026-01-01", "torch": "1"}  # fmt: skip
    saved = tmp_path / "v.json"
    saved.write_text(deploy_report.to_json(old, meta))
    calls = []

    def fake(modules, runtimes, *, sizes, **kw):
        calls.append((list(modules), list(runtimes), [tuple(s) for s in sizes]))
        return [row(m, c, rt, "x".join(map(str, s)), 2e-7) for m in modules for c in ("defaults", "k=5")
                for rt in runtimes for s in sizes]  # fmt: skip

    monkeypatch.setattr(deploy_core, "deploy_variants", fake)
    doc = tmp_path / "d.md"
    doc.write_text(f"{deploy_report.VARIANTS_START}\n{deploy_report.VARIANTS_END}\n")
    argv = ["deploy", "--variants", "--modules", "eca,se", "--runtimes", "onnxruntime,openvino", "--sizes", "16",
            "--merge", "--output", str(saved), "--update-doc", str(doc), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert calls == [(["eca", "se"], ["onnxruntime", "openvino"], [(16, 16)])]
    merged, merged_meta = deploy_report.from_json(saved.read_text())
    cells = {(r.module, r.config, r.runtime, r.size): r.scaled_diff for r in merged}
    assert len(cells) == len(merged) == len(old) + 2 * 2 + 2  # ORT 16×16 new; eca's OpenVINO 16×16 new
    for r in old:  # kept unless measured again (OpenVINO 16×16 of se)
        remeasured = r.runtime == "openvino" and r.size == "16x16"
        assert cells[(r.module, r.config, r.runtime, r.size)] == (2e-7 if remeasured else 1e-7)
    assert all(cells[(m, c, "onnxruntime", "16x16")] == 2e-7 for m in ("se", "eca") for c in ("defaults", "k=5"))
    assert [(r.module, r.config) for r in merged][:: len(merged) // 4] == [
        ("se", "defaults"), ("se", "k=5"), ("eca", "defaults"), ("eca", "k=5")]  # fmt: skip
    assert merged_meta["machine"] == "old box" and merged_meta["sizes"] == ["16x16", "13x11"]
    assert merged_meta["additions"][-1]["columns"] == ["onnxruntime 16x16", "openvino 16x16"]
    text = doc.read_text()
    assert "| `eca` | `k=5` | ok | – | ok | ok | ok | ok |" in text  # ORT 13×11 never measured
    assert "Cells of ONNX Runtime 16×16, OpenVINO 16×16 added later (2 modules;" in text
    assert "4 cells (–) were not measured" in text
    # a matrix is not merged into a variants table
    matrix = tmp_path / "m.json"
    matrix.write_text(deploy_report.to_json(old, {**meta, "variants": False}))
    with pytest.raises(SystemExit, match="is a matrix"):
        main([*argv[:-5], "--output", str(matrix), "--quiet"])
