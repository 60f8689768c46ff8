"""``attnzoo compare``: end to end on digits, exact resume, resume after a killed process, DDP under torchrun,
errors before training, and the pieces (datasets, models, Pareto front)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import require

require("sklearn")
require("torchvision")
require("rich")
require("matplotlib")

from attnzoo.cli import main as cli_main  # noqa: E402
from attnzoo.compare import engine  # noqa: E402
from attnzoo.compare.config import CompareConfig, parse_seeds  # noqa: E402
from attnzoo.compare.data import load_dataset  # noqa: E402
from attnzoo.compare.models import CifarResNet, build_model  # noqa: E402
from attnzoo.compare.report import pareto_front  # noqa: E402
from attnzoo.compare.runner import run_compare  # noqa: E402

# A tiny, fast comparison: ResNet-8 on digits at 16×16, small batches so that one epoch is ~45 steps.
TINY = ["--model", "cifar_resnet8", "--dataset", "digits", "--image-size", "16", "--batch-size", "32", "--lr", "0.05", "--threads", "1"]
TIMING = ("train_img_per_s", "epoch_time_s")


def tiny_config(out: Path, **kw) -> CompareConfig:
    base = dict(model="cifar_resnet8", dataset="digits", image_size=16, batch_size=32, lr=0.05, threads=1, quiet=True,
                modules=["none"], seeds=[0], epochs=2, output=str(out))
    base.update(kw)
    return CompareConfig(**base)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def strip_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def compare_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "attnzoo", "compare", *args]


def sub_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def check_outputs(out: Path, modules: list[str], seeds: list[int]) -> dict:
    """Every summary file and every run folder is there and complete; returns results.json."""
    for name in ("results.csv", "results.json", "results.md", "accuracy_vs_flops.png", "compare.json"):
        assert (out / name).is_file(), name
    import matplotlib.image

    img = matplotlib.image.imread(out / "accuracy_vs_flops.png")
    assert img.shape[0] > 300 and img.shape[1] > 500
    for m in modules:
        for s in seeds:
            run = out / "runs" / m / f"seed{s}"
            for name in ("config.json", "metrics.csv", "model.pt", "result.json"):
                assert (run / name).is_file(), run / name
            assert not (run / "checkpoint.pt").exists(), "the training checkpoint is replaced by model.pt at the end"
    res = json.loads((out / "results.json").read_text())
    assert [r["module"] for r in res["summary"]] == modules
    assert sorted((r["module"], r["seed"]) for r in res["runs"]) == sorted((m, s) for m in modules for s in seeds)
    rows = read_csv(out / "results.csv")
    assert [r["module"] for r in rows] == modules
    md = (out / "results.md").read_text()
    assert "| module | status | top-1 (%)" in md and all(f"| {m}" in md for m in modules)
    return res


def test_end_to_end_digits_two_modules(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli_main(["compare", "--modules", "none,se", "--epochs", "1", "--seeds", "1", "--output", str(out), *TINY]) == 0
    table = capsys.readouterr().out
    assert "none" in table and "se" in table and "top-1" in table
    res = check_outputs(out, ["none", "se"], [0])
    none, se = res["summary"]
    for row in (none, se):
        assert row["top1_mean"] > 25.0, f"{row['module']}: {row['top1_mean']:.1f}% after one epoch is too close to chance (10%)"
        assert row["train_img_per_s"] > 0 and row["time_per_run_s"] > 0 and row["flops"] > 0
    assert none["inserted"] == 0 and se["inserted"] == 3  # ResNet-8: one BasicBlock per stage
    assert se["params"] > none["params"] and se["params_added"] == se["params"] - none["params"]
    assert se["flops"] >= none["flops"]
    assert any(r["pareto"] for r in res["summary"])
    # The runs hold per-epoch metrics and a config; weights load back into a fresh network with the module.
    run = out / "runs" / "se" / "seed0"
    assert json.loads((run / "config.json").read_text())["module"] == "se"
    assert len(read_csv(run / "metrics.csv")) == 1
    import attnzoo

    model, _ = build_model("cifar_resnet8", 10, 16)
    attnzoo.insert(model, "se")
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True))

    # Running it again skips the finished runs and changes nothing they wrote.
    before = {p: p.read_bytes() for p in (out / "runs").rglob("*") if p.is_file()}
    assert cli_main(["compare", "--modules", "none,se", "--epochs", "1", "--seeds", "1", "--output", str(out), *TINY, "--quiet"]) == 0
    assert {p: p.read_bytes() for p in (out / "runs").rglob("*") if p.is_file()} == before


def test_resume_is_exact_and_runs_are_reproducible(tmp_path, monkeypatch):
    """Interrupt a run right after its first checkpoint, resume it: same metrics as an uninterrupted run."""
    straight = run_compare(tiny_config(tmp_path / "a"))
    assert straight["runs"][0]["resumed_at_epoch"] is None

    class Stop(Exception):
        pass

    original = engine._write_metrics_csv

    def write_then_stop(path, history):
        original(path, history)
        raise Stop

    monkeypatch.setattr(engine, "_write_metrics_csv", write_then_stop)
    with pytest.raises(Stop):
        run_compare(tiny_config(tmp_path / "b"))
    run_b = tmp_path / "b" / "runs" / "none" / "seed0"
    assert (run_b / "checkpoint.pt").exists() and not (run_b / "result.json").exists()
    first_epoch = read_csv(run_b / "metrics.csv")
    monkeypatch.setattr(engine, "_write_metrics_csv", original)

    resumed = run_compare(tiny_config(tmp_path / "b"))
    assert resumed["runs"][0]["resumed_at_epoch"] == 1
    rows_a = read_csv(tmp_path / "a" / "runs" / "none" / "seed0" / "metrics.csv")
    rows_b = read_csv(run_b / "metrics.csv")
    assert rows_b[:1] == first_epoch, "the epoch written before the interruption is kept as it was"
    assert strip_timing(rows_a) == strip_timing(rows_b), "a resumed run computes exactly what an uninterrupted one does"
    assert resumed["runs"][0]["test_acc"] == straight["runs"][0]["test_acc"]


def test_resume_after_killed_process(tmp_path):
    out = tmp_path / "cmp"
    cmd = compare_cmd("--modules", "none,se", "--epochs", "2", "--seeds", "1", "--output", str(out), *TINY, "--quiet")
    proc = subprocess.Popen(cmd, env=sub_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done_none = out / "runs" / "none" / "seed0" / "result.json"
    half_se = out / "runs" / "se" / "seed0" / "checkpoint.pt"
    deadline = time.monotonic() + 600
    try:
        se_metrics = out / "runs" / "se" / "seed0" / "metrics.csv"  # written right after the checkpoint
        while not (done_none.exists() and half_se.exists() and se_metrics.exists()):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the first run did not finish in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # as hard as a crash or a lost machine
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (out / "runs" / "se" / "seed0" / "result.json").exists(), "killed too late: se had finished"
    kept = done_none.read_bytes()
    kept_mtime = done_none.stat().st_mtime_ns
    se_epoch1 = read_csv(out / "runs" / "se" / "seed0" / "metrics.csv")
    assert len(se_epoch1) == 1

    again = subprocess.run(cmd, env=sub_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert done_none.read_bytes() == kept and done_none.stat().st_mtime_ns == kept_mtime, "finished run rewritten"
    res = check_outputs(out, ["none", "se"], [0])
    se = next(r for r in res["runs"] if r["module"] == "se")
    assert se["resumed_at_epoch"] == 1 and se["epochs"] == 2
    assert read_csv(out / "runs" / "se" / "seed0" / "metrics.csv")[:1] == se_epoch1
    assert all(r["top1_mean"] > 25.0 for r in res["summary"])


def test_ddp_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "attnzoo",
           "compare", "--modules", "none,se", "--epochs", "1", "--seeds", "1", "--output", str(out), *TINY, "--quiet"]
    r = subprocess.run(cmd, env=sub_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("cifar_resnet8 on digits") == 1, "only rank 0 prints the table"
    res = check_outputs(out, ["none", "se"], [0])
    assert res["meta"]["world_size"] == 2
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("result.json")) == [
        "runs/none/seed0/result.json",
        "runs/se/seed0/result.json",
    ]
    assert not [p for p in out.rglob("*.tmp*")]
    for row in res["summary"]:
        assert row["top1_mean"] > 25.0
    assert {m["world_size"] for m in read_csv(out / "runs" / "se" / "seed0" / "metrics.csv")} == {"2"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--modules", "none,sqeeze"], "unknown module 'sqeeze'"),
        (["--modules", "none,fpn"], "layout 'nchw'"),
        (["--modules", "none,dysample"], "'dysample' (DySample) turns a B×64×56×56 map into B×64×112×112"),
        (["--model", "resnet19"], "model must be one of"),
        (["--dataset", "imagefolder:/no/such/folder"], "must be an existing directory"),
        (["--dataset", "mnist"], "dataset must be one of"),
        (["--seeds", "x"], "seeds must be"),
        (["--epochs", "0"], "epochs must be"),
        (["--pretrained", "/no/such.pt"], "--pretrained must be an existing checkpoint"),
    ],
)
def test_errors_before_training(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    base = ["compare", "--output", str(out), "--model", "cifar_resnet8", "--epochs", "1", "--seeds", "1", "--quiet"]
    assert cli_main(base + args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("attnzoo compare: error:")
    assert not out.exists(), "nothing is written when the configuration is wrong"


def test_empty_imagefolder_and_changed_config_are_errors(tmp_path, capsys):
    (tmp_path / "imgs" / "only_one_class").mkdir(parents=True)
    assert cli_main(["compare", "--dataset", f"imagefolder:{tmp_path / 'imgs'}", "--output", str(tmp_path / "o")]) == 2
    assert "one subfolder of images per class" in capsys.readouterr().err
    # An output folder written with another configuration is never reused or overwritten.
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps({**tiny_config(out).resolved().training_dict(), "epochs": 7, "image_size": 16}))
    before = (out / "compare.json").read_text()
    assert cli_main(["compare", "--modules", "none", "--epochs", "1", "--seeds", "1", "--output", str(out), *TINY]) == 2
    assert "epochs: 7 there, 1 now" in capsys.readouterr().err
    assert (out / "compare.json").read_text() == before and not (out / "runs").exists()


def test_digits_dataset_is_fixed_and_real():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert (len(a.train), len(a.test), a.num_classes, a.image_size) == (1437, 360, 10, 32)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    assert a.train.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(a.test.labels).min() >= 35  # stratified split: every digit in the test set
    x, y = a.train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    with pytest.raises(ValueError, match="image size"):
        load_dataset("digits", image_size=4)


def test_imagefolder_dataset(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 24), (40 * i, 100 if c == "cat" else 0, 0)).save(tmp_path / c / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert d.num_classes == 2 and len(d.train) == 8 and len(d.test) == 2
    x, y = d.train[0]
    assert x.shape == (3, 16, 16) and y in (0, 1)


def test_models_and_insertion_points():
    import attnzoo

    for depth, blocks in ((8, 3), (20, 9)):
        model, notes = build_model(f"cifar_resnet{depth}", 10, 32)
        assert isinstance(model, CifarResNet) and notes["stem"] == "cifar"
        model, report = attnzoo.insert(model, "eca")
        assert len(report) == blocks
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth=10)
    tv, notes = build_model("resnet18", 7, 32)  # small input: CIFAR stem
    assert notes["stem"] == "cifar" and tv.conv1.kernel_size == (3, 3) and isinstance(tv.maxpool, torch.nn.Identity)
    tv, report = attnzoo.insert(tv, "cbam")
    assert len(report) == 8 and tv(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert build_model("resnet18", 7, 224)[1]["stem"] == "imagenet"
    require("timm")
    tm, _ = build_model("resnet10t", 5, 32)
    tm, report = attnzoo.insert(tm, "se")
    assert len(report) == 4 and tm.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_pretrained_checkpoint_loads_matching_tensors(tmp_path):
    src, _ = build_model("cifar_resnet8", 100, 32)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "ck.pt")
    model, notes = build_model("cifar_resnet8", 10, 32, pretrained=tmp_path / "ck.pt")
    assert notes["pretrained"]["skipped"] == ["fc.bias", "fc.weight"]  # 100 classes there, 10 here
    assert torch.equal(model.conv1.weight, src.conv1.weight) and torch.equal(model.layer3[0].bn2.running_var, src.layer3[0].bn2.running_var)
    torch.save({"x": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no tensor matching"):
        build_model("cifar_resnet8", 10, 32, pretrained=tmp_path / "bad.pt")


def test_pareto_front_and_seeds():
    # (cost, accuracy): 0 and 2 are on the front; 1 is dominated by 0; 3 by 2 (same cost, less accurate).
    assert pareto_front([(1.0, 90.0), (1.1, 89.0), (1.2, 95.0), (1.2, 94.0)]) == {0, 2}
    assert pareto_front([(1.0, 90.0), (1.0, 90.0)]) == {0, 1}  # ties dominate nobody
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,5,7") == [0, 5, 7]


def test_where_selects_the_blocks():
    from attnzoo.compare.runner import _build

    cfg = tiny_config("unused", where=["layer3.0"]).resolved()
    model, inserted, _ = _build(cfg, "eca", 10, 16)
    assert inserted == ["layer3.0.bn2.attn"]
    assert _build(cfg, "none", 10, 16)[1] == []


def test_help_flags_read_forwards(capsys):
    """argparse's "(default: True)" after --no-download read as "does not download by default"."""
    with pytest.raises(SystemExit):
        cli_main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-download never download datasets (by default a missing cifar10 / cifar100 is downloaded" in text
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text
    assert "--seeds SEEDS number of seeds (0..N-1) or a comma-separated list (default: 3)" in text  # values keep theirs
