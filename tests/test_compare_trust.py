"""Comparisons a user can trust: the default recipe trains every built-in model stably; runs that diverge, whose
loss rises or that end near chance are flagged everywhere and kept off the Pareto front; Δ inside the seed spread is
labelled; ``compare`` and ``bench`` count the same FLOPs; checkpoints are loaded as data, never as code."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from helpers import require

require("sklearn")
require("torchvision")
require("rich")
require("matplotlib")

import attnzoo  # noqa: E402
from attnzoo.cli import main as cli_main  # noqa: E402
from attnzoo.compare import engine, runner  # noqa: E402
from attnzoo.compare.config import CompareConfig, default_lr, default_warmup  # noqa: E402
from attnzoo.compare.data import DataBundle, load_dataset  # noqa: E402
from attnzoo.compare.health import run_flags  # noqa: E402
from attnzoo.compare.models import known_models, model_rank  # noqa: E402
from attnzoo.compare.report import summarise, verdict  # noqa: E402


def tiny_config(out: Path, **kw) -> CompareConfig:
    base = dict(model="cifar_resnet8", dataset="digits", image_size=16, batch_size=32, threads=1, quiet=True,
                modules=["none"], seeds=[0], epochs=2, output=str(out))
    base.update(kw)
    return CompareConfig(**base)


def subset_loader(n_train: int, n_test: int):
    """``load_dataset`` restricted to the first images (the order is a fixed stratified shuffle)."""

    def load(*args, **kwargs) -> DataBundle:
        b = load_dataset(*args, **kwargs)
        return DataBundle(b.name, torch.utils.data.Subset(b.train, range(n_train)),
                          torch.utils.data.Subset(b.test, range(n_test)), b.num_classes, b.image_size, True)

    return load


# ---------------------------------------------------------------------------------------------------- recipe


def test_default_recipe_values():
    assert default_lr("resnet18", "sgd", 64) == pytest.approx(0.05)  # 0.1 per 128 images
    assert default_lr("cifar_resnet20", "sgd", 128) == pytest.approx(0.1)  # He et al.
    assert default_lr("resnet18", "adamw", 64) == pytest.approx(2.5e-4)
    assert default_warmup(2) == pytest.approx(0.4) and default_warmup(15) == 1.0
    c = CompareConfig(model="resnet18", batch_size=64, epochs=2).resolved()
    assert c.lr == pytest.approx(0.05) and c.warmup_epochs == pytest.approx(0.4) and c.zero_init_residual is None
    assert c.clip_grad_norm == 5.0


def test_zero_init_residual_makes_blocks_identity():
    from attnzoo.compare.models import build_model

    model, notes = build_model("cifar_resnet8", 10, 16, zero_init=True)
    assert notes["zero_init_residual"] == 3
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0 for b in (model.layer1[0], model.layer2[0], model.layer3[0]))
    # auto (None): on for the deep networks only
    assert build_model("cifar_resnet110", 10, 16, zero_init=None)[1]["zero_init_residual"] == 54
    assert "zero_init_residual" not in build_model("cifar_resnet20", 10, 16, zero_init=None)[1]


BIG = {"resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"}


# The video ResNets (33 M parameters, 3-D convolutions) take 1–2 minutes each here: their run is the smoke test
# of tests/test_compare_video.py.
@pytest.mark.parametrize("model", [m for m in known_models() if model_rank(m) == 2])
def test_default_recipe_trains_every_builtin_model(model, tmp_path, monkeypatch):
    """Each built-in image model, default recipe (lr scaled with the batch, warm-up, gradient clipping), a few
    steps on a slice of digits: the training loss is finite and falls, and no run is flagged unstable."""
    big = model in BIG
    monkeypatch.setattr(runner, "load_dataset", subset_loader(64 if big else 128, 32))
    # one thread: the share of each of the suite's two pytest-xdist workers on 2 cores (see conftest.py)
    cfg = tiny_config(tmp_path / model, model=model, image_size=8, batch_size=16, epochs=3, threads=1)
    res = runner.run_compare(cfg)["runs"][0]
    metrics = (tmp_path / model / "runs" / "none" / "seed0" / "metrics.csv").read_text().splitlines()
    losses = [float(line.split(",")[2]) for line in metrics[1:]]
    assert all(math.isfinite(v) for v in losses), f"{model}: {losses}"
    assert "diverged" not in res["flags"] and max(losses) <= 1.5 * math.log(10), f"{model}: {res['flags']} {losses}"
    if big:  # 12 steps of a 100-layer network: stable (no blow-up, no rise), not yet learning much
        assert losses[-1] <= losses[0] + 0.05, f"{model}: training loss rises: {losses}"
    else:
        assert losses[-1] < losses[0], f"{model}: training loss does not fall: {losses}"
        assert "loss_rose" not in res["flags"], f"{model}: {res['flags']} {losses}"


# ------------------------------------------------------------------------------------------------- flagging


def test_diverging_run_is_flagged_everywhere(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--modules", "none,se", "--epochs", "2", "--seeds", "1", "--output", str(out),
            "--model", "cifar_resnet8", "--dataset", "digits", "--image-size", "16", "--batch-size", "32",
            "--threads", "1", "--lr", "1e5", "--clip-grad-norm", "0"]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "⚠" in printed and "not meaningful" in printed
    res = json.loads((out / "results.json").read_text())
    for row in res["summary"]:
        assert row["flags"] and not row["meaningful"] and not row["pareto"], row
    assert any("diverged" in r["flags"] or "loss_rose" in r["flags"] for r in res["runs"])
    assert any("baseline" in line for line in res["meta"]["verdict"])
    md = (out / "results.md").read_text()
    assert "⚠" in md and "not meaningful" in md
    csv_text = (out / "results.csv").read_text()
    assert "meaningful" in csv_text.splitlines()[0] and "False" in csv_text


def fake_run(module: str, seed: int, acc: float, flops: int, flags=(), num_classes: int = 10) -> dict:
    return {"module": module, "seed": seed, "test_acc": acc, "test_loss": 0.1, "train_acc": acc, "params": 1000 + flops,
            "flops": flops, "inserted": 1, "inserted_at": [], "train_img_per_s": 1.0, "wall_time_s": 1.0, "epochs": 2,
            "resumed_at_epoch": None, "num_classes": num_classes, "flags": list(flags)}


def test_summary_flags_pareto_and_spread():
    runs = []
    for s, (a, b, c) in enumerate([(90.0, 90.5, 95.0), (92.0, 91.5, 96.0), (91.0, 92.0, 97.0)]):
        runs += [fake_run("none", s, a, 100), fake_run("se", s, b, 110), fake_run("cbam", s, c, 120)]
    runs += [fake_run("eca", s, 20.0, 101, ["near_chance"]) for s in range(3)]
    rows = {r["module"]: r for r in summarise(runs, ["none", "se", "cbam", "eca"])}
    assert rows["se"]["delta_within_spread"] is True  # +0.33 against ±1 std
    assert rows["cbam"]["delta_within_spread"] is False  # +5
    assert rows["eca"]["pareto"] is False and rows["eca"]["meaningful"] is False  # cheap but flagged
    assert rows["none"]["pareto"] and rows["cbam"]["pareto"]
    text = "\n".join(verdict(list(rows.values())))
    assert "eca: ends near chance" in text and "not meaningful" in text and "within the seed-to-seed spread" in text
    assert "se" in text.split("within")[0].split("of")[-1]


def test_run_flags():
    ok = [{"train_loss": 2.0}, {"train_loss": 1.0}]
    assert run_flags(ok, 90.0, 10) == []
    assert run_flags(ok, 21.67, 10) == ["near_chance"]
    assert run_flags([{"train_loss": 7.3}, {"train_loss": 2.9}], 80.0, 10) == ["loss_rose"]  # far above ln(10)
    assert run_flags([{"train_loss": 1.0}, {"train_loss": 1.5}], 80.0, 10) == ["loss_rose"]
    assert run_flags([{"train_loss": float("nan")}], 10.0, 10) == ["diverged", "near_chance"]


# ---------------------------------------------------------------------------------------------------- FLOPs


def test_compare_and_bench_count_the_same_flops():
    """One counter: the model-level count of ``compare`` equals ``attnzoo bench``'s count of the same call,
    attention through SDPA included (torch's counter alone does not know the CPU flash-attention kernel)."""
    from torch.utils.flop_counter import FlopCounterMode

    from attnzoo.bench.measure import measure_module

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 1), attnzoo.create("global_attention", 16, heads=2, dim_head=8)).eval()
    x = torch.zeros(1, 3, 12, 12)
    compare_flops = engine.count_flops(net, 12)
    row = measure_module(net, (x,), memory=False, backward=False, timing=False, threads=1)
    assert row["flops"] == compare_flops
    with torch.no_grad(), FlopCounterMode(display=False) as plain:
        net(x)
    attention = 2 * 2 * (2 * 144 * 144 * 8)  # QK^T and PV: 2 FLOPs per MAC, 2 heads, N = 144, d = 8
    assert compare_flops - plain.get_total_flops() == attention


# ------------------------------------------------------------------------------------------ files are data


class Evil:
    """Unpickling it creates ``path`` (stands for arbitrary code)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_compare_refuses_a_crafted_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path / "cmp", epochs=1)
    run_dir = tmp_path / "cmp" / "runs" / "none" / "seed0"
    run_dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"model": Evil(marker), "epoch": 1}, run_dir / "checkpoint.pt")
    with pytest.raises(ValueError, match="refusing to load"):
        runner.run_compare(cfg)
    assert not marker.exists(), "unpickling the checkpoint ran code"


def test_every_file_compare_writes_loads_as_data(tmp_path, monkeypatch):
    class Stop(Exception):
        pass

    original = engine._write_metrics_csv

    def write_then_stop(path, history):
        original(path, history)
        raise Stop

    monkeypatch.setattr(engine, "_write_metrics_csv", write_then_stop)
    with pytest.raises(Stop):
        runner.run_compare(tiny_config(tmp_path / "cmp", modules=["se"]))
    ckpt = tmp_path / "cmp" / "runs" / "se" / "seed0" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)  # the resume checkpoint: model, optimizer, scheduler, history
    assert state["epoch"] == 1 and "optimizer" in state and "scheduler" in state
    monkeypatch.setattr(engine, "_write_metrics_csv", original)
    runner.run_compare(tiny_config(tmp_path / "cmp", modules=["se"]))  # resumes through the safe loader
    files = list((tmp_path / "cmp").rglob("*.pt"))
    assert files
    for f in files:
        torch.load(f, weights_only=True)


def test_viz_refuses_a_crafted_pickle_unless_told(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    img = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)).save(img)
    marker = tmp_path / "pwned"
    torch.save(Evil(marker), tmp_path / "evil.pt")
    args = ["viz", "--module", "se", "--image", str(img), "--checkpoint", str(tmp_path / "evil.pt"), "--size", "32",
            "--output", str(tmp_path / "o.png")]
    with pytest.raises(SystemExit, match="--unsafe-load-pickle"):
        cli_main(args)
    assert not marker.exists(), "unpickling the checkpoint ran code"
    cli_main(args + ["--unsafe-load-pickle"])  # the flag unpickles, so the file's code runs (here: no model in it)
    assert marker.exists()
    # what compare writes (a state dict) loads in the safe mode
    from attnzoo.compare.models import build_model

    model, _ = build_model("resnet18", 1000, 224)
    attnzoo.insert(model, "se")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    assert cli_main(["viz", "--module", "se", "--image", str(img), "--checkpoint", str(tmp_path / "state.pt"),
                     "--size", "32", "--output", str(tmp_path / "s.png"), "--panel", "32"]) == 0
