"""Deployment check: export modules to ONNX Runtime, OpenVINO and ncnn, run them, compare with eager PyTorch.

``attnzoo deploy`` on the command line; :func:`deploy`, :func:`deploy_variants` and :func:`check` in Python.
See ``docs/deployment.md``.
"""

from .core import STATUSES, DeployResult, check, deploy, deploy_variants
from .runtimes import CONTRACT_CHECK, RUNTIMES, TOLERANCE

__all__ = ["deploy", "deploy_variants", "check", "DeployResult", "STATUSES", "RUNTIMES", "CONTRACT_CHECK", "TOLERANCE"]
