"""Is a run's result worth comparing?  Flags for runs that did not train properly.

A comparison against a baseline that never trained (or a module whose run diverged) says nothing about the
module: ``attnzoo compare`` flags such runs in its live output, its table and results.json/md, leaves them out
of the Pareto front and says that the comparison is not meaningful for them.

Flags of one run:

``diverged``
    the training loss became NaN or infinite (training stops there).
``loss_rose``
    the mean training loss of the last epoch is above the first epoch's, or some epoch's mean training loss is
    above ``1.5 · ln(C)`` (well above the loss of a uniform guess over C classes): the optimisation is unstable.
``near_chance``
    the final top-1 accuracy is below ``2.5 ×`` chance (25 % for 10 classes).

Detection (``attnzoo compare --task detect``, :func:`detect_flags`): ``diverged`` (a non-finite training loss in any
batch, or Ultralytics stopped the run on a NaN), ``loss_rose`` (the last epoch's mean training loss, box + cls + dfl
as Ultralytics logs it, above the first epoch's) and ``near_zero`` (the final mAP50-95 below :data:`NEAR_ZERO_MAP`).
"""

from __future__ import annotations

import math

__all__ = ["FLAG_TEXT", "NEAR_ZERO_MAP", "run_flags", "detect_flags", "chance_accuracy", "describe_flags"]

FLAG_TEXT = {
    "diverged": "training diverged (non-finite loss)",
    "loss_rose": "training loss rose / exploded",
    "near_chance": "ends near chance",
    "near_zero": "mAP50-95 near zero",
}

#: A detector whose final mAP50-95 is below this found (almost) nothing: its Δ against another run means nothing.
NEAR_ZERO_MAP = 0.01


def chance_accuracy(num_classes: int) -> float:
    """Top-1 accuracy (%) of a uniform guess."""
    return 100.0 / max(1, num_classes)


def run_flags(history: list[dict], test_acc: float, num_classes: int, diverged: bool = False) -> list[str]:
    """Flags (see module docstring) of a run with per-epoch ``history`` rows and final ``test_acc`` (%)."""
    flags = []
    if diverged or any(not math.isfinite(r["train_loss"]) for r in history):
        flags.append("diverged")
    losses = [r["train_loss"] for r in history if math.isfinite(r["train_loss"])]
    ceiling = 1.5 * math.log(max(2, num_classes))
    if "diverged" not in flags and losses and ((len(losses) >= 2 and losses[-1] > losses[0]) or max(losses) > ceiling):
        flags.append("loss_rose")
    if not math.isfinite(test_acc) or test_acc < 2.5 * chance_accuracy(num_classes):
        flags.append("near_chance")
    return flags


def detect_flags(epoch_losses: list[float], map50_95: float | None, nonfinite_batches: int = 0) -> list[str]:
    """Flags (see module docstring) of a detection run: per-epoch mean training losses, its final mAP50-95 (in
    [0, 1], Ultralytics' value; ``None`` when training failed) and the number of batches whose loss was not finite."""
    flags = []
    if nonfinite_batches or any(not math.isfinite(v) for v in epoch_losses) or map50_95 is None:
        flags.append("diverged")
    elif len(epoch_losses) >= 2 and epoch_losses[-1] > epoch_losses[0]:
        flags.append("loss_rose")
    if map50_95 is None or not math.isfinite(map50_95) or map50_95 < NEAR_ZERO_MAP:
        flags.append("near_zero")
    return flags


def describe_flags(flags: list[str], test_acc: float | None = None, num_classes: int | None = None) -> str:
    parts = []
    for f in flags:
        text = FLAG_TEXT.get(f, f)
        if f == "near_chance" and test_acc is not None and num_classes:
            text += f" ({test_acc:.1f} %, chance {chance_accuracy(num_classes):.0f} %)"
        elif f == "near_zero":
            text += f" (< {NEAR_ZERO_MAP} in a run)"  # (a row's value is a mean over seeds: it may be above)
        parts.append(text)
    return "; ".join(parts)
