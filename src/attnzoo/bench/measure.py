"""The measurements of ``attnzoo bench``, run inside a fresh child process per case (module × size).

This module imports torch; only :mod:`attnzoo.bench.worker` (the child side) imports it, never the CLI parent.

What is measured (all on one module built with ``attnzoo.create(name, channels, **kwargs)`` and the default
inputs of :func:`attnzoo.layouts.example_inputs`):

* ``params``: number of parameters.
* ``flops``: forward FLOPs counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products,
  convolutions and attention; one multiply-add = 2 FLOPs; elementwise ops, pooling and softmax are not
  counted, as in every FLOP counter of this kind).  ``macs = flops / 2``.  ``flops_fwd_bwd`` adds the
  backward pass (input and weight gradients).  Matrix-vector products and the CPU flash-attention kernels,
  which torch's counter does not know, are counted too (the latter with the formula of the CUDA kernels).
* The first call of each kind is a warm-up (not timed, not the measured memory) and runs under the FLOP
  counter.
* ``fwd_*``: inference forward (``eval()``, ``torch.no_grad()``); ``fwd_bwd_*``: a training step's forward
  and backward (``train()``, inputs require grad, ``backward`` with a fixed all-ones output gradient,
  parameter gradients reset to ``None`` every call).
* Latency: ``torch.utils.benchmark.Timer.adaptive_autorange`` after warm-up calls (excluded), median and
  inter-quartile range of the per-call time over the timed blocks.
* Peak memory on CPU: after one warm-up call, ``malloc_trim(0)`` hands freed memory back to the OS, the
  resident-set high-water mark is reset (``echo 5 > /proc/self/clear_refs``), the baseline is the resident set
  at that point (module, inputs and output gradient exist); one more call runs and the figure is
  ``VmHWM − baseline`` (the output tensors included).  On CUDA: ``torch.cuda.max_memory_allocated`` minus
  the memory allocated before the call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import time
import traceback
from typing import Any, Callable

import torch
import torch.nn as nn

import attnzoo
from attnzoo.layouts import DEFAULT_SIZE, example_channels, example_inputs

from .checks import resolve_size as _resolve_size
from .flops import count_flops
from .flops import custom_flop_mapping as _custom_flop_mapping

__all__ = ["measure_case", "measure_module", "Case", "peak_rss_extra", "count_flops", "preload"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def preload() -> None:
    """Import the lazily imported parts of torch and run a tiny single-threaded warm-up.

    Called once by the worker server before it forks the cases, so that each case does not pay for importing
    ``torch.utils.flop_counter`` (which pulls in triton) or for the first autograd call.  Single-threaded on
    purpose: no OpenMP thread pool may exist in a process that forks.
    """
    import torch.nn.functional as F
    import torch.utils.benchmark  # noqa: F401
    from torch.utils.flop_counter import FlopCounterMode

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
        x = torch.randn(2, 4, 8, 8, requires_grad=True)
        with FlopCounterMode(display=False, custom_mapping=_custom_flop_mapping()):
            y = net(x)
            q = y.flatten(2).transpose(1, 2).unsqueeze(1).contiguous()
            F.scaled_dot_product_attention(q, q, q).sum().backward()
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------- memory (CPU)
_libc: Any = None


def _malloc_trim() -> None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
    if m is None:
        raise RuntimeError(f"/proc/self/status has no {key}")
    return int(m.group(1))


def reset_peak_rss() -> int:
    """Release freed heap memory, reset the high-water mark to the current resident set; return it (bytes)."""
    _malloc_trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def peak_rss_extra(fn: Callable[[], Any]) -> int:
    """Extra resident memory (bytes) at the peak of one call of ``fn`` over the resident set before it."""
    base = reset_peak_rss()
    fn()
    return max(0, _status_kib("VmHWM") * 1024 - base)


def peak_cuda_extra(fn: Callable[[], Any], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - base)


# --------------------------------------------------------------------------------------------------- FLOPs
# One counter for bench and compare: attnzoo.bench.flops (count_flops, the CPU flash-attention kernels included).


# -------------------------------------------------------------------------------------------------- timing
def time_call(
    fn: Callable[[], Any], threads: int, min_time: float, max_time: float, clock: Callable[[], float] | None = None
) -> dict:
    """Median / IQR (ms per call) of an already warmed-up ``fn`` with ``torch.utils.benchmark``.

    ``Timer.adaptive_autorange`` times blocks of calls (a block lasts at least ~10 ms, so the timer overhead
    is negligible; its block-size estimate is one more untimed warm-up) for at least ``min_time`` seconds and
    at least 4 blocks, then stops as soon as IQR / median < 10 %, or after ``max_time`` seconds.
    ``clock`` replaces the wall clock (e.g. ``time.process_time`` for CPU time on a loaded machine).
    """
    import torch.utils.benchmark as tb

    kwargs = {} if clock is None else {"timer": clock}
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, **kwargs)  # type: ignore[arg-type]  # timer= is a callable
    m = timer.adaptive_autorange(threshold=0.1, min_run_time=min_time, max_run_time=max(max_time, min_time))
    return {
        "ms": m.median * 1e3,
        "ms_iqr": m.iqr * 1e3,
        "runs": int(len(m.raw_times) * m.number_per_run),
        "blocks": len(m.raw_times),
    }


# ---------------------------------------------------------------------------------------------------- case
def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def _detach_inputs(args: tuple, requires_grad: bool) -> tuple:
    def one(a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            t = a.detach()
            return t.requires_grad_(requires_grad and t.is_floating_point())
        if isinstance(a, (list, tuple)):
            return type(a)(one(v) for v in a)
        return a

    return tuple(one(a) for a in args)


def input_shapes(args: tuple) -> list:
    return [list(t.shape) for t in _tensors(args)]


class Case:
    """Closures for the forward and forward+backward calls of one module on one input."""

    def __init__(self, module: nn.Module, args: tuple, device: torch.device, dtype: str) -> None:
        self.module = module
        self.device = device
        self.amp = dtype != "float32"
        self.amp_dtype = DTYPES[dtype]
        self.args_eval = _detach_inputs(args, requires_grad=False)
        self.args_train = _detach_inputs(args, requires_grad=True)
        self.leaves = [t for t in _tensors(self.args_train) if t.requires_grad]
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.grads: list[torch.Tensor] | None = None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def forward(self) -> Any:
        self.module.eval()
        with torch.no_grad(), self._autocast():
            return self.module(*self.args_eval)

    def train_forward(self) -> Any:
        self.module.train()
        with self._autocast():
            return self.module(*self.args_train)

    def backward(self, out: Any) -> None:
        outs = [t for t in _tensors(out) if t.requires_grad]
        if not outs:
            raise RuntimeError("no output requires grad: nothing to backpropagate")
        if self.grads is None:
            self.grads = [torch.ones_like(t) for t in outs]
        torch.autograd.backward(outs, self.grads)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
        for t in self.leaves:
            t.grad = None

    def forward_backward(self) -> None:
        self.zero_grad()
        self.backward(self.train_forward())


def _error(stage: str, exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{stage}: {type(exc).__name__}: {text}" if text else f"{stage}: {type(exc).__name__}"


def measure_case(job: dict, emit: Callable[[dict], None] | None = None) -> dict:
    """Measure one registered module on its default input; ``emit(row)`` is called after every stage.

    ``job`` keys: name, kwargs, batch, channels (int or None for the layout default), size (None, S or
    [H, W]), device, dtype, threads, min_time, max_time, memory, backward, seed.
    """
    started = time.perf_counter()
    name = job["name"]
    device = torch.device(job.get("device", "cpu"))
    threads = int(job.get("threads") or torch.get_num_threads())
    torch.set_num_threads(threads)
    entry = attnzoo.info(name)
    row: dict[str, Any] = {"stage": "build", "threads": threads}
    try:
        torch.manual_seed(int(job.get("seed", 0)))
        channels = example_channels(name, job.get("channels"))
        gen = torch.Generator().manual_seed(int(job.get("seed", 0)) + 1)
        size = resolve_size(entry.layout, job.get("size"))
        row["size"] = list(size)
        row["positions"] = size[0] * size[1]
        args = example_inputs(name, batch=int(job.get("batch", 2)), channels=channels, size=size, generator=gen)
        args = tuple(_to(a, device) for a in args)
        row["input_shapes"] = input_shapes(args)
        module = attnzoo.create(name, channels, **(job.get("kwargs") or {})).to(device)
    except Exception as exc:  # noqa: BLE001 - the error goes into the row
        row.update(error=_error("build", exc), error_stage="build", stage="done")
        row["seconds"] = round(time.perf_counter() - started, 3)
        return row
    return measure_module(
        module,
        args,
        row=row,
        emit=emit,
        started=started,
        device=device,
        dtype=job.get("dtype", "float32"),
        threads=threads,
        min_time=float(job.get("min_time", 0.25)),
        max_time=float(job.get("max_time", 2.0)),
        memory=bool(job.get("memory", True)),
        backward=bool(job.get("backward", True)),
    )


def measure_module(
    module: nn.Module,
    args: tuple,
    *,
    device: torch.device | str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    min_time: float = 0.25,
    max_time: float = 2.0,
    memory: bool = True,
    backward: bool = True,
    flops: bool = True,
    timing: bool = True,
    clock: Callable[[], float] | None = None,
    row: dict | None = None,
    emit: Callable[[dict], None] | None = None,
    started: float | None = None,
) -> dict:
    """Params, peak memory, FLOPs and latency of ``module(*args)`` (any module, not only registered ones).

    Stages run in this order: memory of the forward, memory of forward+backward (the process is fresh, so
    only warm-up calls ran before), FLOPs, forward latency, forward+backward latency.  A stage that raises
    records ``error``/``error_stage`` (the first failure) and the others still run where they can.
    """
    emit = emit or (lambda row: None)
    started = time.perf_counter() if started is None else started
    device = torch.device(device)
    threads = int(threads or torch.get_num_threads())
    torch.set_num_threads(threads)
    row = {} if row is None else row
    row["threads"] = threads
    row.setdefault("input_shapes", input_shapes(args))

    def stage(s: str) -> None:
        row["stage"] = s
        row["seconds"] = round(time.perf_counter() - started, 3)
        emit(row)

    def fail(s: str, exc: BaseException) -> None:
        row.setdefault("error", _error(s, exc))
        row.setdefault("error_stage", s)
        row.setdefault("traceback", traceback.format_exc(limit=-3))

    try:
        row["params"] = sum(p.numel() for p in module.parameters())
        case = Case(module, args, device, dtype)
    except Exception as exc:  # noqa: BLE001
        fail("build", exc)
        stage("done")
        return row
    stage("built")
    fwd_ok = bwd_ok = False
    peak = (lambda fn: peak_cuda_extra(fn, device)) if device.type == "cuda" else peak_rss_extra
    row["mem_method"] = "cuda_max_memory_allocated" if device.type == "cuda" else "rss_high_water_mark"
    # The warm-up calls (lazy initialisation of kernels and thread pools is not the module's memory) run
    # under the FLOP counter, so counting costs no extra call.
    try:
        fwd_ok = _warm_up(case.forward, None, flops, row, "flops", fail)
        if memory:
            row["fwd_mem_bytes"] = int(peak(case.forward))
    except Exception as exc:  # noqa: BLE001
        fail("forward", exc)
    stage("fwd_mem")
    if backward and fwd_ok:
        try:
            bwd_ok = _warm_up(case.train_forward, case, flops, row, "flops_fwd_bwd", fail)
            case.zero_grad()
            if memory:
                row["fwd_bwd_mem_bytes"] = int(peak(case.forward_backward))
        except Exception as exc:  # noqa: BLE001
            fail("forward_backward", exc)
        stage("fwd_bwd_mem")
    if row.get("flops") is not None:
        row["macs"] = row["flops"] // 2
    for prefix, ok, call in (("fwd", fwd_ok, case.forward), ("fwd_bwd", bwd_ok, case.forward_backward)):
        if ok and timing:
            try:
                t = time_call(call, threads, min_time, max_time, clock)
                row.update({f"{prefix}_{k}": v for k, v in t.items()})
            except Exception as exc:  # noqa: BLE001
                fail(f"{prefix}_time", exc)
            stage(f"{prefix}_time")
    stage("done")
    return row


def _warm_up(forward: Callable[[], Any], case: "Case | None", flops: bool, row: dict, key: str, fail) -> bool:
    """One warm-up call (forward, or forward+backward when ``case`` is given), counting FLOPs if asked.

    If the FLOP counter itself fails, the error is recorded under the ``flops`` stage and the call is
    repeated without it; an error of the call itself propagates.
    """
    backward = case.backward if case is not None else None
    if flops:
        try:
            fwd, total = count_flops(forward, backward)
            row[key] = fwd if case is None else total
            if case is not None and row.get("flops") is None:
                row["flops"] = fwd
            return True
        except Exception as exc:  # noqa: BLE001
            err = exc
        try:  # does the module itself fail, or only the counter?
            out = forward()
            if backward is not None:
                backward(out)
        except Exception:  # noqa: BLE001
            raise err from None
        fail("flops", err)
        return True
    out = forward()
    if backward is not None:
        backward(out)
    return True


def resolve_size(layout: str, spec: Any) -> tuple[int, int]:
    """(H, W) — (series, steps) for the temporal layout — from a job's size: None (layout default), S or [H, W]."""
    return _resolve_size(layout, spec, DEFAULT_SIZE[layout])


def _to(a: Any, device: torch.device) -> Any:
    if isinstance(a, torch.Tensor):
        return a.to(device)
    if isinstance(a, (list, tuple)):
        return type(a)(_to(v, device) for v in a)
    return a
