"""Deployment check: export modules to ONNX Runtime, OpenVINO and ncnn, run them, compare with eager PyTorch.

``attnzoo deploy`` on the command line; :func:`deploy` and :func:`check` in Python.  See ``docs/deployment.md``.
"""

from .core import STATUSES, DeployResult, check, deploy
from .runtimes import CONTRACT_CHECK, RUNTIMES, TOLERANCE

__all__ = ["deploy", "check", "DeployResult", "STATUSES", "RUNTIMES", "CONTRACT_CHECK", "TOLERANCE"]
