"""Shared test setup, loaded by pytest before any test module.

- ``tests/`` is put on ``sys.path`` explicitly, so ``helpers`` and the oracles of ``reference/`` import the same
  way under any rootdir or import mode (benchmarks/_common.py adds the same directory).
- One thread count for every test module: the cores shared out between pytest-xdist's workers (one each for
  CI's ``pytest -n 2`` on 2 cores), at most 2 (small tensors).  Two workers of two threads on two cores wait on
  each other's spinning threads: the contract's gradcheck cases took 2× (loaded machine: up to 9×) as long.
- Shared helpers live in ``helpers.py`` (importable by any test module): ``build``/``inputs`` of a registered
  module, ``rand`` (seeded inputs), ``randomize``, and ``require`` for the peers and runtimes of the dev extra,
  which fails (never skips) when one is missing.  test_environment.py checks the whole dev extra at once.
- glibc's allocator raises its mmap threshold each time a large block is freed, after which large tensors come
  from the heap and stay in the process's resident memory: a test worker that runs the whole registry grew past
  20 GB.  A fixed threshold (1 MiB) keeps large tensors mmapped, so freeing them returns the memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _threads_per_worker() -> int:
    """The cores left to each pytest-xdist worker (``PYTEST_XDIST_WORKER_COUNT`` is set in the workers), at most 2."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, torch.get_num_threads() // max(1, workers)))


torch.set_num_threads(_threads_per_worker())


def _fixed_mmap_threshold(nbytes: int = 1 << 20) -> None:
    """``mallopt(M_MMAP_THRESHOLD, nbytes)`` (glibc; elsewhere nothing): also turns off the dynamic threshold."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, nbytes)  # M_MMAP_THRESHOLD


_fixed_mmap_threshold()
