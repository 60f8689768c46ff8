"""Shared plumbing of the benchmark scripts: peak memory in a fresh child process, byte formatting, the dated
machine header of a results section, and the community code's naive attention block (the reference of two scripts).

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
import torch.nn as nn

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


class SeedAttentionBlock(nn.Module):
    """the community ``AttentionBlock``: LayerNorm, qkv without bias, explicit softmax(q kᵀ · d^-0.5) v, output Linear."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        q, k, v = (t.reshape(n, length, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1))
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(n, length, -1))
