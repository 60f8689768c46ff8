"""Shared plumbing of the benchmark scripts: peak memory in a fresh child process, byte formatting, the dated
machine header of a results section; ``tests/`` on the import path, so that scripts import the oracles of
``tests/reference`` rather than copy them.

Peak memory: the script re-runs itself with ``--child SPEC`` (a fresh interpreter, so no high-water mark is
inherited from the parent); the child builds its case, warms up, and reports
:func:`attnzoo.bench.measure.peak_rss_extra` of one call, the same measurement as ``attnzoo bench``: the resident
high-water mark after resetting it through ``/proc/self/clear_refs``, minus the resident size before the call.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.utils.benchmark as tb

from attnzoo.bench.measure import peak_rss_extra
from attnzoo.bench.worker import cpu_model

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def child_peak_bytes(script: str, spec: dict[str, Any]) -> int:
    """Run ``python SCRIPT --child SPEC`` and return the ``extra_bytes`` it printed (see :func:`report_peak`)."""
    out = subprocess.run(
        [sys.executable, script, "--child", json.dumps(spec)], capture_output=True, text=True, check=True
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1])["extra_bytes"])


def report_peak(run: Callable[[], Any], **extra: Any) -> None:
    """In the child: print the extra peak resident memory of one ``run()`` as the JSON line the parent reads."""
    print(json.dumps({"extra_bytes": peak_rss_extra(run), **extra}))


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def machine_line() -> str:
    """``date, CPU model (cores), threads, torch version; command `...```` for a results section."""
    cmd = "python " + " ".join(sys.argv)
    return (
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {cpu_model()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; command `{cmd}`"
    )


def append_section(path: str, title: str, body: str) -> None:
    """Append ``### title``, the machine line and ``body`` (a markdown table) to the results file ``path``."""
    with open(path, "a") as f:
        f.write(f"\n### {title}\n\n{machine_line()}\n\n{body}\n")


def run_once(m: nn.Module, x: torch.Tensor, backward: bool) -> None:
    """One call of ``m`` on ``x``: forward under ``no_grad``, or forward + backward with an input gradient."""
    if backward:
        m.zero_grad(set_to_none=True)
        xg = x.detach().requires_grad_()
        m(xg).sum().backward()
    else:
        with torch.no_grad():
            m(x)


def load_line() -> str:
    """``load average a, b, c (N cores)`` for a results section: every figure on a shared machine says the load."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f}, {five:.1f}, {fifteen:.1f} ({os.cpu_count()} cores)"


def op_table(run: Callable[[], Any], steps: int = 3, top: int = 12) -> tuple[str, float]:
    """``(markdown table, total self CPU ms per call)``: the ``top`` operators of ``run()`` by self CPU time
    (``torch.profiler``, ``steps`` calls after one warm-up, per-call averages), with their share of the total and
    their calls per ``run()``.  Self time counts each operator once (no double counting of nested calls)."""
    from torch.profiler import ProfilerActivity, profile

    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / steps / 1e3
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = ["| operator | self CPU ms per call | share | calls per call |", "|---|---|---|---|"]
    for e in events[:top]:
        ms = e.self_cpu_time_total / steps / 1e3
        lines.append(f"| `{e.key}` | {ms:.2f} | {100 * ms / total:.1f} % | {e.count / steps:g} |")
    rest = total - sum(e.self_cpu_time_total for e in events[:top]) / steps / 1e3
    lines.append(f"| (all other operators) | {rest:.2f} | {100 * rest / total:.1f} % | |")
    lines.append(f"| **total** | **{total:.2f}** | 100 % | |")
    return "\n".join(lines), total


def time_interleaved(
    cases: dict[str, tuple[nn.Module, torch.Tensor]],
    backward: bool,
    repeats: int,
    prepare: Callable[[nn.Module, bool], Any] | None = None,
    budget_s: float = 0.2,
) -> dict[str, tuple[float, float]]:
    """{name: (median wall seconds, median process-CPU seconds)} per call, the cases taking turns ``repeats``
    times (a burst of load hits every case alike), at ``torch.get_num_threads()`` threads.  ``prepare(m, backward)`` defaults to ``m.train(backward)``."""
    numbers = {}
    for name, (m, x) in cases.items():
        (prepare or (lambda mod, b: mod.train(b)))(m, backward)
        run_once(m, x, backward)  # warm-up
        t0 = time.perf_counter()
        run_once(m, x, backward)
        numbers[name] = max(1, round(budget_s / max(time.perf_counter() - t0, 1e-6)))
    wall: dict[str, list[float]] = {n: [] for n in cases}
    cpu: dict[str, list[float]] = {n: [] for n in cases}
    for _ in range(repeats):
        for name, (m, x) in cases.items():
            timer = tb.Timer(
                "run_once(m, x, b)",
                globals={"run_once": run_once, "m": m, "x": x, "b": backward},
                num_threads=torch.get_num_threads(),  # Timer's default is 1 whatever the process's setting
            )
            c0 = time.process_time()
            meas = timer.timeit(numbers[name])
            cpu[name].append((time.process_time() - c0) / numbers[name])
            wall[name].append(meas.mean)
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in cases}


def outputs(out: Any) -> list[torch.Tensor]:
    """A module's output as a list of tensors (one map, or the levels of a pyramid)."""
    return [out] if isinstance(out, torch.Tensor) else list(out)


def runners(m: nn.Module, x: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """(forward, forward+backward) closures for ``m(x)`` (x a tensor or a list of maps): eval + no_grad inference,
    and a train-mode step with input gradients."""
    xs = [x] if isinstance(x, torch.Tensor) else list(x)
    xg = [t.clone().requires_grad_() for t in xs]
    arg_g = xg[0] if isinstance(x, torch.Tensor) else xg

    def fwd() -> None:
        m.eval()
        with torch.no_grad():
            m(x)

    def fwd_bwd() -> None:
        m.train()
        for t in (*m.parameters(), *xg):
            t.grad = None
        sum(o.float().mean() for o in outputs(m(arg_g))).backward()

    return fwd, fwd_bwd


def medians(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median seconds of ``runs`` single calls of each function, the functions interleaved (ABAB, then BABA...)
    so that peers see the same background load; one warm-up call each first."""
    timers = {k: tb.Timer("f()", globals={"f": f}, num_threads=2) for k, f in fns.items()}
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for i in range(runs):
        for k in keys if i % 2 == 0 else keys[::-1]:
            times[k].append(timers[k].timeit(1).median)
    return {k: statistics.median(v) for k, v in times.items()}


PEER_HEADER = (
    "| row | input | fwd attnzoo / peer (ratio) | fwd+bwd attnzoo / peer (ratio) | peak fwd+bwd attnzoo / peer (ratio) |\n"
    "|---|---|---|---|---|"
)


def peer_cells(
    script: str, row: str, ours: nn.Module, theirs: nn.Module, x: torch.Tensor, repeats: int, memory: bool
) -> str:
    """The three ratio cells of a PEER_HEADER row: forward and forward+backward process-CPU medians
    (:func:`time_interleaved`) and the forward+backward peak of each side in a child process (``script --child``
    with ``{"row", "impl": "attnzoo" | "peer", "backward": True}``)."""
    cells = []
    for backward in (False, True):
        t = time_interleaved({"attnzoo": (ours, x), "peer": (theirs, x)}, backward, repeats)
        a, b = t["attnzoo"][1], t["peer"][1]
        cells.append(f"{a * 1e3:.2f} / {b * 1e3:.2f} ms ({a / b:.2f})")
    if memory:
        pa, pb = (child_peak_bytes(script, {"row": row, "impl": i, "backward": True}) for i in ("attnzoo", "peer"))
        cells.append(f"{fmt_bytes(pa)} / {fmt_bytes(pb)} ({pa / max(pb, 1):.2f})")
    else:
        cells.append("—")
    return " | ".join(cells)


def write_results(
    output: str | None, title: str, note: str, parity: tuple[str, dict[str, float]], lines: list[str], data: dict
) -> None:
    """Print a results section: ``### title``, the machine line, ``note``, the parity line (``parity`` = (what was
    compared, {case: max |Δ|})) and the table ``lines``; with ``output``, append it there and write ``data``
    (after the command line and the parity figures) to the file of the same name ending ``.json``."""
    what, figures = parity
    parity_line = f"Parity before timing (max |Δ| of {what}, copied weights, float32): " + ", ".join(
        f"{k} {v:.1e}" for k, v in figures.items()
    )
    body = f"\n### {title}\n\n{machine_line()}; niceness {os.nice(0)}; {note}\n\n{parity_line}\n\n" + "\n".join(lines) + "\n"
    print(body)
    if output:
        with open(output, "a") as f:
            f.write(body)
        with open(output.rsplit(".", 1)[0] + ".json", "w") as f:
            json.dump({"command": "python " + " ".join(sys.argv), "parity_max_abs": figures, **data}, f, indent=1)
