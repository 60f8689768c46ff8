"""Honesty checks of ``attnzoo bench``: the thread count, implausible timings and the run-time estimate.

Imports neither torch nor the library's modules (the parent side of the CLI uses it).  Everything here works on
plain rows (dicts of :data:`attnzoo.bench.report.ROW_FIELDS`) and on the module infos the worker lists, so it
can be tested on synthetic records without timing anything.

* :func:`resolve_threads`: ``--threads`` default is 1 (a busy or small machine is not oversubscribed, and one
  thread's figures compare across machines); ``auto`` takes the cores the 1-minute load average leaves free.
* :func:`implausible`: the reasons a row's latency cannot be trusted (forward slower than forward+backward,
  an inter-quartile range wider than the median, a figure from a single timed block).
* :func:`estimate_case_seconds` / :func:`long_run_warning`: a rough, deliberately pessimistic estimate of a
  run's wall time from the sizes and the modules' complexity, printed before a run that will be long.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence, TypeGuard

#: Marker put in the tables next to a row whose timings look implausible.
MARK = "⚠"


# ------------------------------------------------------------------------------------------------------ threads
def free_cores(cpu_count: int | None = None, load: float | None = None) -> int:
    """Cores the 1-minute load average leaves free (at least 1)."""
    cpus = cpu_count or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on every platform
            load = 0.0
    return max(1, min(cpus, int(cpus - load + 0.5)))


def resolve_threads(spec: str | int | None, cpu_count: int | None = None, load: float | None = None) -> tuple[int, str]:
    """``(threads, why)`` for ``--threads``: None → 1 (the default), ``"auto"`` → :func:`free_cores`, N → N."""
    if spec is None:
        return 1, "default; --threads N or --threads auto for more"
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        cpus = cpu_count or os.cpu_count() or 1
        n = free_cores(cpus, load)
        return n, f"auto: the cores of {cpus} that the load average leaves free"
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ValueError(f"--threads: expected a positive integer or 'auto', got {spec!r}") from None
    if n < 1:
        raise ValueError(f"--threads: expected a positive integer or 'auto', got {spec!r}")
    return n, "--threads"


def oversubscribed(threads: int, cpu_count: int | None = None, load: float | None = None) -> bool:
    """Whether ``threads`` torch threads exceed the cores the load average leaves free."""
    return threads > free_cores(cpu_count, load)


# -------------------------------------------------------------------------------------------- implausible rows
def implausible(row: dict) -> list[str]:
    """Short reasons why a row's latency figures cannot be trusted (empty if they look plausible).

    * ``fwd > fwd+bwd``: an inference forward cannot take longer than a training forward plus its backward;
      the machine was busier during one of the two figures.
    * ``IQR > median``: the spread of the timed blocks is wider than the figure itself.
    * ``1 timed block``: nothing to take a median of (a call longer than ``--max-time``).
    """
    reasons = []
    fwd, both = row.get("fwd_ms"), row.get("fwd_bwd_ms")
    if _num(fwd) and _num(both) and fwd > both:
        reasons.append("fwd > fwd+bwd")
    for prefix in ("fwd", "fwd_bwd"):
        median, iqr = row.get(f"{prefix}_ms"), row.get(f"{prefix}_ms_iqr")
        if _num(median) and _num(iqr) and iqr > median:
            reasons.append("IQR > median")
            break
    for prefix in ("fwd", "fwd_bwd"):
        blocks = row.get(f"{prefix}_blocks")
        if _num(row.get(f"{prefix}_ms")) and _num(blocks) and blocks < 2:
            reasons.append("1 timed block")
            break
    return reasons


def implausible_warning(rows: Sequence[dict]) -> str | None:
    """The warning line printed after a table with implausible rows (None if every row looks plausible)."""
    bad = [r for r in rows if implausible(r)]
    if not bad:
        return None
    reasons = sorted({why for r in bad for why in implausible(r)})
    return (
        f"warning: {len(bad)} of {len(rows)} rows have implausible timings (marked {MARK}: {', '.join(reasons)}). "
        "The CPU was probably busy with other work or oversubscribed: rerun those modules with --threads 1 on a "
        "quieter machine, or with a longer --min-time / --max-time."
    )


def zero_flops(row: dict) -> bool:
    """A measured row whose counted FLOPs are 0: element-wise, pooling or softmax only, which the counter skips."""
    return row.get("flops") == 0 and not row.get("error_stage") == "flops"


ZERO_FLOPS_NOTE = (
    "— FLOPs: only element-wise operations, pooling or softmax, which the counter does not count (not free: "
    "see the latency)."
)


def _num(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


# ------------------------------------------------------------------------------------------------- estimate
#: Rough single-thread CPU costs (ms) per call at batch 2 and 64 channels, fitted pessimistically to the committed
#: sweep (docs/data/bench.json): a linear module per position, and plain O(N^2) attention per pair of positions
#: (global_attention at 112×112 takes about 10 s a forward).
MS_PER_POSITION = 4e-4
MS_PER_PAIR = 6.6e-5
#: Reduced quadratic attention (O(N^2/a), windows, strides, agents): a sixteenth of the plain cost.
REDUCED_QUADRATIC = 1 / 16
#: Process start, build, FLOP count and memory bookkeeping per case (s).
CASE_OVERHEAD_S = 0.7
#: A run (or one case) longer than this gets a warning first.
LONG_RUN_S = 600.0
LONG_CASE_S = 60.0


def resolve_size(layout: str, spec: Any, default: Sequence[int]) -> tuple[int, int]:
    """(H, W) — (series, steps) for the temporal layout — from a size: None (the layout's ``default``), S or [H, W].

    A single S means S×S, except for the temporal layout where it means S time steps of the default number
    of series.
    """
    if spec is None:
        return int(default[0]), int(default[1])
    if isinstance(spec, int):
        return (int(default[0]), spec) if layout == "temporal" else (spec, spec)
    h, w = spec
    return int(h), int(w)


def quadratic_factor(complexity: str) -> float:
    """1 for plain O(N^2), :data:`REDUCED_QUADRATIC` for a reduced quadratic term, 0 for sub-quadratic costs."""
    text = complexity.replace("²", "^2").replace(" ", "")
    if "N^2" not in text:
        return 0.0
    return 1.0 if text == "O(N^2)" else REDUCED_QUADRATIC


def estimate_call_ms(complexity: str, positions: int, batch: int = 2, channels: int = 64) -> float:
    """Rough single-thread forward time (ms) of one call."""
    scale = max(batch, 1) * max(channels, 1) / 128
    return scale * (MS_PER_POSITION * positions + quadratic_factor(complexity) * MS_PER_PAIR * positions**2)


def estimate_case_seconds(
    complexity: str,
    positions: int,
    *,
    batch: int = 2,
    channels: int = 64,
    threads: int = 1,
    min_time: float = 0.25,
    max_time: float = 2.0,
    backward: bool = True,
    memory: bool = True,
) -> float:
    """Rough wall time (s) of one case: overhead, then per figure the untimed calls (FLOP-counting warm-up, the
    memory call, the timer's block-size estimate) and the timed blocks (at least one call, else between
    ``min_time`` and ``max_time``).  Forward+backward counts as three forwards."""
    call = estimate_call_ms(complexity, positions, batch, channels) / 1e3 / max(1.0, threads**0.5)
    total = CASE_OVERHEAD_S
    for cost in (call, 3 * call) if backward else (call,):
        untimed = (3 if memory else 2) * cost
        timed = max(cost, min(max(min_time, 4 * cost), max(max_time, min_time)))
        total += untimed + timed
    return total


def estimate_run(
    infos: Iterable[dict], sizes: Sequence[Any], settings: dict
) -> tuple[float, list[tuple[str, Any, float]]]:
    """(total seconds, [(module, size, seconds) per case, longest first]) for a run of ``infos`` × ``sizes``.

    ``settings``: batch, channels (None = each module's default), threads, min_time, max_time, backward, memory.
    Each info needs ``name``, ``layout``, ``complexity``, ``default_size`` and ``default_channels``.
    """
    cases = []
    for info in infos:
        channels = settings.get("channels") or info.get("default_channels") or 64
        for size in sizes:
            h, w = resolve_size(info["layout"], size, info.get("default_size") or (56, 56))
            seconds = estimate_case_seconds(
                info["complexity"],
                h * w,
                batch=int(settings.get("batch") or 2),
                channels=int(channels),
                threads=int(settings.get("threads") or 1),
                min_time=float(settings.get("min_time", 0.25)),
                max_time=float(settings.get("max_time", 2.0)),
                backward=bool(settings.get("backward", True)),
                memory=bool(settings.get("memory", True)),
            )
            cases.append((info["name"], size, seconds))
    cases.sort(key=lambda c: -c[2])
    return sum(c[2] for c in cases), cases


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def long_run_warning(total: float, cases: Sequence[tuple[str, Any, float]]) -> str | None:
    """The warning printed before a run estimated to be long (None for a short one)."""
    if total < LONG_RUN_S and not (cases and cases[0][2] >= LONG_CASE_S):
        return None
    slow = [c for c in cases if c[2] >= LONG_CASE_S][:3]
    where = ""
    if slow:
        parts = [f"{name} @ {_size_text(size)} ~{_duration(s)}" for name, size, s in slow]
        where = f"; the slowest: {', '.join(parts)}"
    return (
        f"note: this run may be long: roughly {_duration(total)} for {len(cases)} cases{where} (a rough estimate "
        "from sizes × modules; a busy machine takes longer).  Fewer or smaller --sizes, --forward-only or "
        "--no-memory shorten it; Ctrl-C stops it."
    )


def _size_text(size: Any) -> str:
    if size is None:
        return "default size"
    return str(size) if isinstance(size, int) else "x".join(map(str, size))
