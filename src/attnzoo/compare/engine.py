"""Training and evaluation of one run (one module, one seed), with checkpoints, exact resume and DDP.

One run lives in its own folder::

    config.json      what the run computes (checked on resume: a different config is an error, never overwritten)
    checkpoint.pt    model, optimizer, scheduler, AMP scaler and metric history after the last finished epoch
    metrics.csv      one row per finished epoch (rewritten from the checkpoint's history, so never out of step)
    model.pt         final weights (written when the run finishes; checkpoint.pt is then removed)
    result.json      final metrics; its presence marks the run as finished (skipped by the next ``compare``)

Resume works at epoch granularity and is exact on CPU: the shuffling (``DistributedSampler`` with the run's
seed, also used with one process) and torch's global generator (augmentation) are reseeded from
``(seed, epoch, rank)`` at the start of every epoch, so an interrupted run that resumes from its last
checkpoint computes the same numbers as an uninterrupted one.

Under ``torchrun`` the model is wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); every rank
takes ``batch_size / world_size`` images of the same global batch that a single process would take, and only
rank 0 writes files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Sized, cast

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .distributed import DistContext
from .health import run_flags

__all__ = [
    "RunSpec",
    "train_run",
    "count_flops",
    "atomic_write_text",
    "read_json",
    "load_checkpoint",
]


# ----------------------------------------------------------------------------------------------------------------
# distributed context


# ----------------------------------------------------------------------------------------------------------------
# small file helpers (atomic: a crash never leaves a half-written file behind)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Any:
    """Load a checkpoint as data: ``torch.load(weights_only=True)`` (tensors and plain containers; never runs
    code from the file).  Everything ``compare`` writes loads this way; any other pickle is refused."""
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"compare: refusing to load {str(path)!r}: it is not a checkpoint written by attnzoo compare (not plain "
            f"tensor data: {first}); loading it would execute code from the file. Delete it to restart that run."
        ) from None


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# cost


def count_flops(model: nn.Module, size: int | Sequence[int], in_chans: int = 3) -> int:
    """Forward FLOPs of one sample, with the counter of ``attnzoo bench`` (:mod:`attnzoo.bench.flops`: matmuls,
    convolutions and attention, the CPU flash-attention kernels included; 1 MAC = 2 FLOPs).  ``size``: the side
    of a square ``in_chans``-channel image, or a sample's whole shape (3×T×H×W for a clip)."""
    from ..bench.flops import model_flops

    p = next(model.parameters())
    shape = (in_chans, size, size) if isinstance(size, int) else tuple(size)
    x = torch.zeros(1, *shape, device=p.device, dtype=p.dtype)
    return model_flops(model, x)


# ----------------------------------------------------------------------------------------------------------------
# one run


@dataclass
class RunSpec:
    """One (module, seed) run: its folder, its training config and a builder for its network."""

    module: str
    seed: int
    run_dir: Path
    config: dict[str, Any]  # training config plus module and seed (written to config.json)
    build: Callable[[], nn.Module]  # returns the network with the module inserted (called after seeding)
    params: int
    flops: int
    inserted: list[str]  # qualified names of the inserted modules
    num_classes: int = 10  # for the health flags (chance level)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**63 - 1)


def _seed_all(s: int) -> None:
    random.seed(s)
    torch.manual_seed(s)
    try:
        import numpy as np

        np.random.seed(s % 2**32)
    except ImportError:  # pragma: no cover
        pass


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors), the usual practice."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg["weight_decay"])
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["momentum"] > 0)
    return torch.optim.AdamW(groups, lr=cfg["lr"])


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 0, evaluated per optimisation step."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


def _loaders(train: Dataset, test: Dataset, ctx: DistContext, cfg: dict, seed: int, workers: int):
    per_rank = cfg["batch_size"] // ctx.world
    sampler: DistributedSampler = DistributedSampler(
        train, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed
    )
    # BatchNorm cannot train on a last batch of one image: drop it only in that case.
    drop_last = len(sampler) % per_rank == 1
    pin = ctx.device.type == "cuda"
    train_loader = DataLoader(
        train, batch_size=per_rank, sampler=sampler, num_workers=workers, drop_last=drop_last, pin_memory=pin
    )
    # Evaluation: every rank takes rank::world of the test set (no padding, no duplicates); sums are all-reduced.
    shard = torch.utils.data.Subset(test, list(range(ctx.rank, len(cast(Sized, test)), ctx.world)))
    test_loader = DataLoader(shard, batch_size=max(per_rank, 256), shuffle=False, num_workers=workers, pin_memory=pin)
    return sampler, train_loader, test_loader


def _amp_setup(device: torch.device, amp: bool):
    if not amp or device.type != "cuda":
        return None, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return dtype, scaler


def evaluate(model: nn.Module, loader: DataLoader, ctx: DistContext, amp_dtype) -> tuple[float, float]:
    """(top-1 accuracy in %, mean cross-entropy) over the whole test set (all ranks' shards)."""
    model.eval()
    correct = loss = 0.0
    n: float = 0
    crit = nn.CrossEntropyLoss(reduction="sum")
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            ac = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else nullcontext()
            with ac:
                out = model(x)
            loss += float(crit(out.float(), y))
            correct += float((out.argmax(1) == y).sum())
            n += y.numel()
    correct, loss, n = ctx.all_sum([correct, loss, float(n)])
    return 100.0 * correct / n, loss / n


def _write_metrics_csv(path: Path, history: list[dict]) -> None:
    if not history:
        return
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0].keys()))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())


@dataclass
class RunHooks:
    """Progress callbacks (all optional): ``start(run, start_epoch, steps_per_epoch)``, ``step()``, ``epoch(row)``."""

    start: Callable[[RunSpec, int, int], None] | None = None
    step: Callable[[], None] | None = None
    epoch: Callable[[dict], None] | None = None


def train_run(
    spec: RunSpec,
    train: Dataset,
    test: Dataset,
    ctx: DistContext,
    amp: bool = False,
    workers: int = 0,
    hooks: RunHooks | None = None,
) -> dict:
    """Train and evaluate one run, resuming from ``spec.run_dir/checkpoint.pt`` if present; returns ``result.json``."""
    hooks = hooks or RunHooks()
    cfg = spec.config
    run_dir = spec.run_dir
    result_path, ckpt_path = run_dir / "result.json", run_dir / "checkpoint.pt"
    if result_path.exists():
        return read_json(result_path)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / "config.json").exists():
            write_json(run_dir / "config.json", cfg)
    ctx.barrier()

    _seed_all(spec.seed)
    raw = spec.build().to(ctx.device)
    optimizer = _make_optimizer(raw, cfg)
    sampler, train_loader, test_loader = _loaders(train, test, ctx, cfg, spec.seed, workers)
    steps = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(cfg["epochs"] * steps, round(cfg.get("warmup_epochs", 0) * steps))
    )
    clip = cfg.get("clip_grad_norm")
    amp_dtype, scaler = _amp_setup(ctx.device, amp)
    history: list[dict] = []
    start_epoch = 0
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, ctx.device)
        raw.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
    model: nn.Module = raw
    if ctx.distributed:
        model = nn.parallel.DistributedDataParallel(
            raw, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    if hooks.start:
        hooks.start(spec, start_epoch, steps)

    diverged = any(not math.isfinite(r["train_loss"]) for r in history)
    for epoch in range(start_epoch, cfg["epochs"] if not diverged else start_epoch):
        t_epoch = time.perf_counter()
        _seed_all(_epoch_seed(spec.seed, epoch, ctx.rank))
        sampler.set_epoch(epoch)
        model.train()
        lr_start = optimizer.param_groups[0]["lr"]
        loss_sum = correct = 0.0
        seen: float = 0
        t0 = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            ac = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else nullcontext()
            with ac:
                out = model(x)
                loss = criterion(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(raw.parameters(), clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(raw.parameters(), clip)
                optimizer.step()
            scheduler.step()
            step_loss = float(loss.detach())
            loss_sum += step_loss * y.numel()
            correct += float((out.detach().argmax(1) == y).sum())
            seen += y.numel()
            if hooks.step:
                hooks.step()
            if not math.isfinite(step_loss) and not ctx.distributed:
                break  # diverged: the rest of the run is pointless (flagged below); under DDP all ranks stop at the epoch end
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        train_time = ctx.all_max(time.perf_counter() - t0)
        loss_sum, correct, seen = ctx.all_sum([loss_sum, correct, float(seen)])
        diverged = not math.isfinite(loss_sum)
        if ctx.distributed:  # evaluate every shard with rank 0's BatchNorm statistics (the ones that get saved)
            for b in raw.buffers():
                dist.broadcast(b, 0)
        test_acc, test_loss = evaluate(raw, test_loader, ctx, amp_dtype)
        row = {
            "epoch": epoch + 1,
            "lr": lr_start,
            "train_loss": loss_sum / seen,
            "train_acc": 100.0 * correct / seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "train_img_per_s": seen / train_time,
            "epoch_time_s": ctx.all_max(time.perf_counter() - t_epoch),
            "world_size": ctx.world,
        }
        history.append(row)
        if ctx.is_main:
            atomic_torch_save(
                {
                    "model": raw.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "epoch": epoch + 1,
                    "history": history,
                    "config": cfg,
                },
                ckpt_path,
            )
            _write_metrics_csv(run_dir / "metrics.csv", history)
        ctx.barrier()
        if hooks.epoch:
            hooks.epoch(row)
        if diverged:
            break  # flagged "diverged" in the result

    last = history[-1]
    speeds = sorted(r["train_img_per_s"] for r in history)
    result = {
        "module": spec.module,
        "seed": spec.seed,
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "params": spec.params,
        "flops": spec.flops,
        "inserted": len(spec.inserted),
        "inserted_at": spec.inserted,
        "train_img_per_s": speeds[len(speeds) // 2],
        "wall_time_s": sum(r["epoch_time_s"] for r in history),
        "epochs": len(history),
        "resumed_at_epoch": start_epoch or None,
        "num_classes": spec.num_classes,
        "flags": run_flags(history, last["test_acc"], spec.num_classes, diverged),
    }
    result = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
    if ctx.is_main:
        atomic_torch_save(raw.state_dict(), run_dir / "model.pt")
        write_json(result_path, result)  # marks the run finished
        ckpt_path.unlink(missing_ok=True)
    ctx.barrier()
    return result
