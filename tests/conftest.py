"""Shared test setup, loaded by pytest before any test module.

- ``tests/`` is put on ``sys.path`` explicitly, so ``helpers`` and the oracles of ``reference/`` import the same
  way under any rootdir or import mode (benchmarks/_common.py adds the same directory).
- One thread count for every test module (at most 2: the suite runs as ``pytest -n 2`` on small tensors);
  a module that wants fewer sets it itself (test_ultralytics.py).
- Shared helpers live in ``helpers.py`` (importable by any test module): ``build``/``inputs`` of a registered
  module, ``rand`` (seeded inputs), ``randomize``, and ``require`` for the peers and runtimes of the dev extra,
  which fails (never skips) when one is missing.  test_environment.py checks the whole dev extra at once.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
