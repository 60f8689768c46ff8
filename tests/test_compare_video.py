"""``attnzoo compare --model r3d_18``: a video ResNet on the synthetic ``video_shapes`` clips (its default
dataset), one module against none, one seed, one tiny epoch; the clip dataset itself; the model / data rank check."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import require

require("torchvision")
require("rich")
require("matplotlib")
require("sklearn")

from attnzoo.cli import main as cli_main  # noqa: E402
from attnzoo.compare import runner  # noqa: E402
from attnzoo.compare.data import DataBundle, load_dataset  # noqa: E402


def small(n_train: int, n_test: int):
    def load(*args, **kwargs) -> DataBundle:
        b = load_dataset(*args, **kwargs)
        sub = torch.utils.data.Subset
        return DataBundle(
            b.name, sub(b.train, range(n_train)), sub(b.test, range(n_test)), b.num_classes, b.image_size, True
        )

    return load


def test_compare_r3d_18_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "load_dataset", small(32, 16))
    out = tmp_path / "video"
    args = ["compare", "--model", "r3d_18", "--modules", "none,se", "--seeds", "1", "--epochs", "1", "--image-size", "8",
            "--batch-size", "16", "--threads", "1", "--quiet", "--output", str(out)]  # fmt: skip
    assert cli_main(args) == 0, capsys.readouterr().err
    for name in ("results.csv", "results.json", "results.md", "compare.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "compare.json").read_text())["dataset"] == "video_shapes"  # the video default
    res = json.loads((out / "results.json").read_text())
    runs = {r["module"]: r for r in res["runs"]}
    assert set(runs) == {"none", "se"}
    assert runs["none"]["inserted"] == 0 and runs["se"]["inserted"] == 8  # one SE per residual block
    assert all(n.endswith(".conv2.1.attn") for n in runs["se"]["inserted_at"])
    assert runs["se"]["params"] > runs["none"]["params"] and runs["se"]["flops"] > runs["none"]["flops"] > 0
    assert all(r["test_acc"] is not None and 0 <= r["test_acc"] <= 100 for r in runs.values())
    assert (out / "runs" / "se" / "seed0" / "model.pt").is_file()


def test_video_shapes_clips_and_labels():
    b = load_dataset("video_shapes", 16)
    x, y = b.test[0]
    assert b.sample_shape == (3, 4, 16, 16) == tuple(x.shape) and b.num_classes == 4
    labels = torch.tensor([b.test[i][1] for i in range(len(b.test))])
    assert torch.bincount(labels).tolist() == [32] * 4
    # the label is the direction of motion: the shape's centre of mass moves that way from frame to frame
    clips = b.test.images
    mass = (clips.mean(1) - clips.mean(1).amin((-1, -2), keepdim=True)).clamp(min=0) ** 8  # N×T×H×W, the shape
    grid = torch.arange(16.0)
    cx = (mass.sum(-2) * grid).sum(-1) / mass.sum((-1, -2))
    cy = (mass.sum(-1) * grid).sum(-1) / mass.sum((-1, -2))
    vx, vy = (cx[:, -1] - cx[:, 0]), (cy[:, -1] - cy[:, 0])
    guess = torch.where(vx.abs() > vy.abs(), torch.where(vx > 0, 0, 1), torch.where(vy > 0, 2, 3))
    assert (guess == b.test.labels).float().mean() > 0.9
    assert torch.equal(load_dataset("video_shapes", 16).test.images, clips)  # fixed seed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "r3d_18", "--dataset", "digits"], "takes clips B×3×T×H×W, but dataset 'digits' holds images"),
        (["--model", "cifar_resnet8", "--dataset", "video_shapes"], "takes images B×3×H×W, but dataset 'video_shapes'"),
    ],
)
def test_model_and_dataset_ranks_must_match(tmp_path, capsys, args, message):
    assert cli_main(["compare", *args, "--output", str(tmp_path / "x"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
