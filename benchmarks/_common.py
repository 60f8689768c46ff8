"""Shared plumbing of the benchmark scripts: peak memory in a fresh child process, byte formatting, and the
dated machine header of a results section.

Peak memory: the script re-runs itself with ``--child SPEC`` (a fresh interpreter, so no high-water mark is
inherited from the parent); the child builds its case, warms up, and reports
:func:`attnzoo.bench.measure.peak_rss_extra` of one call, the same measurement as ``attnzoo bench``: the resident
high-water mark after resetting it through ``/proc/self/clear_refs``, minus the resident size before the call.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from typing import Any, Callable

import torch

from attnzoo.bench.measure import peak_rss_extra
from attnzoo.bench.worker import cpu_model


def child_peak_bytes(script: str, spec: dict[str, Any]) -> int:
    """Run ``python SCRIPT --child SPEC`` and return the ``extra_bytes`` it printed (see :func:`report_peak`)."""
    out = subprocess.run([sys.executable, script, "--child", json.dumps(spec)], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["extra_bytes"])


def report_peak(run: Callable[[], Any], **extra: Any) -> None:
    """In the child: print the extra peak resident memory of one ``run()`` as the JSON line the parent reads."""
    print(json.dumps({"extra_bytes": peak_rss_extra(run), **extra}))


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def machine_line() -> str:
    """``date, CPU model (cores), threads, torch version; command `...```` for a results section."""
    cmd = "python " + " ".join(sys.argv)
    return (f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {cpu_model()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}; command `{cmd}`")


def append_section(path: str, title: str, body: str) -> None:
    """Append ``### title``, the machine line and ``body`` (a markdown table) to the results file ``path``."""
    with open(path, "a") as f:
        f.write(f"\n### {title}\n\n{machine_line()}\n\n{body}\n")
