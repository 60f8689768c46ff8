"""The measurements of ``attnzoo bench``, run inside a fresh child process per case (module × size).

This module imports torch; only :mod:`attnzoo.bench.worker` (the child side) imports it, never the CLI parent.

What is measured (all on one module built with ``attnzoo.create(name, channels, **kwargs)`` and the default
inputs of :func:`attnzoo.inputs.example_inputs`):

* ``params``: number of parameters.
* ``flops``: forward FLOPs counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products,
  convolutions and attention; one multiply-add = 2 FLOPs; elementwise ops, pooling and softmax are not
  counted, as in every FLOP counter of this kind).  ``macs = flops / 2``.  ``flops_fwd_bwd`` adds the
  backward pass (input and weight gradients).  The CPU flash-attention kernels, which torch's counter does
  not know, are counted with the same formula as the CUDA ones.
* ``fwd_*``: inference forward (``eval()``, ``torch.no_grad()``); ``fwd_bwd_*``: a training step's forward
  and backward (``train()``, inputs require grad, ``backward`` with a fixed all-ones output gradient,
  parameter gradients reset to ``None`` every call).
* Latency: ``torch.utils.benchmark.Timer.blocked_autorange`` after warm-up calls (excluded), median and
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
import math
import re
import time
import traceback
from typing import Any, Callable

import torch
import torch.nn as nn

import attnzoo
from attnzoo.inputs import DEFAULT_SIZE, example_channels, example_inputs

__all__ = ["measure_case", "peak_rss_extra", "count_flops", "preload"]

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
def _flash_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _flash_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _custom_flop_mapping() -> dict:
    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _flash_cpu_flop
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _flash_cpu_backward_flop
    return mapping


def count_flops(forward: Callable[[], Any], backward: Callable[[Any], None] | None = None) -> tuple[int, int | None]:
    """(forward FLOPs, forward+backward FLOPs) of one call, counted with ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_custom_flop_mapping()) as counter:
        out = forward()
        fwd = int(counter.get_total_flops())
        total = None
        if backward is not None:
            backward(out)
            total = int(counter.get_total_flops())
    return fwd, total


# -------------------------------------------------------------------------------------------------- timing
#: Timed blocks aimed for per latency figure (median and IQR are over blocks).
TARGET_BLOCKS = 8


def time_call(fn: Callable[[], Any], threads: int, min_time: float, max_time: float) -> dict:
    """Median / IQR (ms per call) of ``fn`` with ``torch.utils.benchmark`` after warm-up.

    ``blocked_autorange`` times blocks of calls (a block lasts at least ~10 ms so that timer overhead is
    negligible); the window is chosen for about :data:`TARGET_BLOCKS` blocks, at least ``min_time`` and at
    most ``max_time`` seconds (a slow case gets fewer blocks rather than a longer run).
    """
    import torch.utils.benchmark as tb

    fn()  # warm-up (blocked_autorange's block-size estimate warms up too; neither is timed)
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    # The block blocked_autorange will pick: the first 10^k calls lasting >= ~10 ms (its overhead rule).
    block = one if one >= 0.01 else one * 10 ** math.ceil(math.log10(0.01 / one))
    window = min(max(min_time, TARGET_BLOCKS * block), max(max_time, min_time))
    m = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(min_run_time=window)
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


class _Case:
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

    def prepare_backward(self) -> None:
        """Build the output gradients once (outside of any measurement)."""
        self.backward(self.train_forward())
        self.zero_grad()


def _error(stage: str, exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{stage}: {type(exc).__name__}: {text}" if text else f"{stage}: {type(exc).__name__}"


def measure_case(job: dict, emit: Callable[[dict], None] | None = None) -> dict:
    """Measure one case; ``emit(row)`` is called after every stage with the row so far.

    ``job`` keys: name, kwargs, batch, channels (int or None for the layout default), size ([H, W] or None),
    device, dtype, threads, min_time, max_time, memory, backward, seed.
    """
    emit = emit or (lambda row: None)
    started = time.perf_counter()
    name = job["name"]
    device = torch.device(job.get("device", "cpu"))
    dtype = job.get("dtype", "float32")
    threads = int(job.get("threads") or torch.get_num_threads())
    torch.set_num_threads(threads)
    entry = attnzoo.info(name)
    row: dict[str, Any] = {"stage": "build", "threads": threads}

    def stage(s: str) -> None:
        row["stage"] = s
        row["seconds"] = round(time.perf_counter() - started, 3)
        emit(row)

    def fail(s: str, exc: BaseException) -> None:
        row.setdefault("error", _error(s, exc))
        row.setdefault("error_stage", s)
        row["traceback"] = traceback.format_exc(limit=-3)

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
        row["params"] = sum(p.numel() for p in module.parameters())
        case = _Case(module, args, device, dtype)
    except Exception as exc:  # noqa: BLE001 - the error goes into the row
        fail("build", exc)
        stage("done")
        return row
    stage("built")

    want_bwd = bool(job.get("backward", True))
    fwd_ok = bwd_ok = False
    # Memory first: the process is fresh, so only the warm-up call has run before.
    peak = (lambda fn: peak_cuda_extra(fn, device)) if device.type == "cuda" else peak_rss_extra
    row["mem_method"] = "cuda_max_memory_allocated" if device.type == "cuda" else "rss_high_water_mark"
    try:
        case.forward()  # warm-up (lazy initialisation of kernels and thread pools is not the module's memory)
        fwd_ok = True
        if job.get("memory", True):
            row["fwd_mem_bytes"] = int(peak(case.forward))
    except Exception as exc:  # noqa: BLE001
        fail("forward", exc)
    stage("fwd_mem")
    if want_bwd:
        try:
            case.prepare_backward()
            bwd_ok = True
            if job.get("memory", True):
                row["fwd_bwd_mem_bytes"] = int(peak(case.forward_backward))
        except Exception as exc:  # noqa: BLE001
            fail("forward_backward", exc)
        stage("fwd_bwd_mem")
    if fwd_ok:
        try:
            if bwd_ok:
                case.zero_grad()
                flops, total = count_flops(case.train_forward, case.backward)
                row["flops_fwd_bwd"] = total
            else:
                flops, _ = count_flops(case.forward)
            row["flops"] = flops
            row["macs"] = flops // 2
        except Exception as exc:  # noqa: BLE001
            fail("flops", exc)
        stage("flops")
    min_time, max_time = float(job.get("min_time", 0.25)), float(job.get("max_time", 2.0))
    if fwd_ok:
        try:
            t = time_call(case.forward, threads, min_time, max_time)
            row.update({f"fwd_{k}": v for k, v in t.items()})
        except Exception as exc:  # noqa: BLE001
            fail("fwd_time", exc)
        stage("fwd_time")
    if bwd_ok:
        try:
            t = time_call(case.forward_backward, threads, min_time, max_time)
            row.update({f"fwd_bwd_{k}": v for k, v in t.items()})
        except Exception as exc:  # noqa: BLE001
            fail("fwd_bwd_time", exc)
        stage("fwd_bwd_time")
    stage("done")
    return row


def resolve_size(layout: str, spec: Any) -> tuple[int, int]:
    """(H, W) — (series, steps) for the temporal layout — from a job's size: None (layout default), S or [H, W].

    A single S means S×S, except for the temporal layout where it means S time steps of the default number
    of series.
    """
    if spec is None:
        return tuple(DEFAULT_SIZE[layout])
    if isinstance(spec, int):
        return (DEFAULT_SIZE["temporal"][0], spec) if layout == "temporal" else (spec, spec)
    h, w = spec
    return int(h), int(w)


def _to(a: Any, device: torch.device) -> Any:
    if isinstance(a, torch.Tensor):
        return a.to(device)
    if isinstance(a, (list, tuple)):
        return type(a)(_to(v, device) for v in a)
    return a

