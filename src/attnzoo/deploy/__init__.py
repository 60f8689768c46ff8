"""Deployment check: export modules to ONNX Runtime, OpenVINO and ncnn, run them, compare with eager PyTorch.

``attnzoo deploy`` on the command line; :func:`deploy`, :func:`deploy_variants`, :func:`deploy_ranks` (1-D and 3-D)
and :func:`check` in Python.
See ``docs/deployment.md``.
"""

from .core import STATUSES, DeployResult, check, deploy, deploy_variants
from .ranks import deploy_ranks
from .runtimes import CONTRACT_CHECK, RUNTIMES, TOLERANCE

__all__ = [
    "deploy",
    "deploy_variants",
    "deploy_ranks",
    "check",
    "DeployResult",
    "STATUSES",
    "RUNTIMES",
    "CONTRACT_CHECK",
    "TOLERANCE",
]
