"""What a module needs to know about graph capture: FX leaves, export targets and their portable forms.

This module sits at the bottom of the package (it imports only torch), so ``layers`` and ``functional`` both
build on it without importing each other.

**Export targets.**  Some modules compute their result in a fast eager form that a deployment runtime cannot
hold (a fused kernel, a 6-axis view, a B×C vector path that ncnn places on the wrong axis, ``topk``).  Such a
module also has a *portable form*: the same values with operators the runtime has.  The portable form is taken
only when it is asked for::

    with attnzoo.export_target("ncnn"):
        traced = torch.jit.trace(model, x)        # pnnx / ncnn get the portable forms

``torch.compile``, ``torch.export``, FX and eager code always get the eager forms.  Two fallbacks keep hand-made
exports working without the context: inside ``torch.jit.trace`` (what pnnx and OpenVINO's PyTorch frontend
record) the target is ``"ncnn"``; inside ``torch.onnx.export`` it is ``"onnx"``.  A module declares each form
in the registry (``register(..., forms=(PortableForm(...),))``) with the targets that need it and an operator
that only that form records, so one test checks every form against its eager twin (docs/exports.md).

**Eager-only kernels.**  :func:`eager_only` is true in plain eager execution only: custom autograd functions
and in-place tricks that no graph should record.  :func:`inplace_ok` narrows it to "no autograd".

**Grad-mode forms.**  A module that computes the same values another way under autograd (a leaner backward)
asks :func:`for_runtime` too: a graph recorded for a runtime takes the grad-independent form, so it is the same
whichever grad mode the recording (or ``torch.jit.trace``'s check run) is in.

**Size-specialised schedules.**  An eager schedule built from the sizes as plain numbers (tiles, chunks) asks
:func:`for_export`: an exported graph (``torch.export``, whose sizes may stay symbolic, or a runtime) takes the
one-piece form, ``torch.compile`` keeps the eager schedule.
"""

from __future__ import annotations

import functools
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import torch
import torch.fx

__all__ = [
    "EXPORT_TARGETS",
    "PortableForm",
    "export_target",
    "current_export_target",
    "portable",
    "eager_only",
    "for_runtime",
    "for_export",
    "inplace_ok",
    "is_tracing",
    "traced_size",
    "fx_leaf",
]

#: The runtimes a portable form can be written for.
EXPORT_TARGETS = ("onnx", "openvino", "ncnn")

_target: str | None = None  # a plain global: torch.compile guards on it instead of breaking the graph


@contextmanager
def export_target(target: str) -> Iterator[None]:
    """Within the block, modules take the portable forms that ``target`` needs.

    ``target`` is one of :data:`EXPORT_TARGETS`.  Use it around the call that records the graph
    (``torch.jit.trace`` for pnnx/ncnn, ``openvino.convert_model``, ``torch.onnx.export``); ``attnzoo deploy``
    does.  The setting is process-wide for the duration of the block (not per thread).
    """
    global _target
    if target not in EXPORT_TARGETS:
        raise ValueError(f"export_target: target must be one of {EXPORT_TARGETS}, got {target!r}")
    previous, _target = _target, target
    try:
        yield
    finally:
        _target = previous


def current_export_target() -> str | None:
    """The export target in force: the innermost :func:`export_target`, else ``"ncnn"`` inside
    ``torch.jit.trace`` and ``"onnx"`` inside ``torch.onnx.export``, else ``None`` (eager, FX, ``torch.compile``,
    ``torch.export``)."""
    if _target is not None:
        return _target
    if torch.onnx.is_in_onnx_export():  # first: the TorchScript ONNX exporter runs inside a jit trace
        return "onnx"
    if torch.jit.is_tracing():
        return "ncnn"
    return None


def portable(*targets: str) -> bool:
    """The one predicate of portable forms: True when the export target in force is one of ``targets``.

    A module writes ``if portable("ncnn", "openvino"): <portable form>`` and declares that form in the registry
    (:class:`PortableForm`) with the same targets.
    """
    target = current_export_target()
    return target is not None and target in targets


def for_runtime() -> bool:
    """True while a graph is recorded for a deployment runtime: an export target is in force
    (:func:`export_target`, or the ``torch.jit.trace`` / ``torch.onnx.export`` fallbacks of
    :func:`current_export_target`).  For forms chosen by grad mode (module docstring); FX, ``torch.compile`` and
    ``torch.export`` keep the eager choice."""
    return current_export_target() is not None


def for_export() -> bool:
    """True while a graph is recorded for export: ``torch.export`` (also under ``torch.onnx.export(dynamo=True)``),
    ``torch.jit.trace``, ``torch.onnx.export`` or an :func:`export_target`.  For eager schedules built from the
    sizes as plain numbers (module docstring): the exported graph takes the one-piece form that keeps sizes
    symbolic; ``torch.compile`` (which specialises and guards on sizes) and FX keep the eager schedule."""
    # the tracers too, not only through for_runtime(): a trace with every portable form off keeps the one-piece form
    if for_runtime() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    compiler = getattr(torch, "compiler", None)
    return compiler is not None and compiler.is_exporting()


def eager_only(x: Any = None) -> bool:
    """True in plain eager execution: no tracer, scripting, compiler, exporter or FX proxy (``x``, when given,
    is a real tensor).  For custom autograd functions and other kernels that no graph should record."""
    if x is not None and not isinstance(x, torch.Tensor):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    compiler = getattr(torch, "compiler", None)
    return not (compiler is not None and (compiler.is_compiling() or compiler.is_exporting()))


def is_tracing() -> bool:
    """True inside ``torch.jit.trace``.  For input checks only (a trace bakes the shapes in; the check ran when
    the trace was recorded), never for choosing a form (that is :func:`portable`)."""
    return torch.jit.is_tracing()


def inplace_ok() -> bool:
    """True when a module may overwrite its own intermediate in place: no autograd and no ``torch.jit.trace``
    (a trace must record the same graph whatever the grad mode of its sanity re-run).  Never overwrite a
    tensor that was passed to ``record`` or that the caller owns."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing()


def traced_size(x: torch.Tensor) -> tuple[int, int]:
    """(H, W) of ``x``; plain ints under ``torch.jit.trace``, so paddings and window counts derived from them are
    constants of the traced graph (pnnx hands size arithmetic to ncnn, which cannot evaluate it).  Symbolic sizes
    under ``torch.export`` / ``torch.compile`` stay symbolic (dynamic shapes keep working)."""
    return traced_dim(x, -2), traced_dim(x, -1)


def traced_dim(x: torch.Tensor, dim: int) -> int:
    """``x.shape[dim]``; a plain int under ``torch.jit.trace`` (see :func:`traced_size`).  The conversion is the
    point, so its ``TracerWarning`` ("Converting a tensor to a Python integer ...") is silenced here, and only here."""
    n = x.shape[dim]
    if not torch.jit.is_tracing():
        return n
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Converting a tensor to a Python integer", category=torch.jit.TracerWarning
        )
        return int(n)


@dataclass(frozen=True)
class PortableForm:
    """A module's second form for export targets, declared in the registry.

    Attributes:
        targets: the export targets that take this form (names from :data:`EXPORT_TARGETS`).
        marker: an operator (as ``torch.jit.trace`` names it, e.g. ``"aten::adaptive_avg_pool2d"``) that the
            portable form records and the eager form does not: the proof that a graph took the form.
        reason: why the eager form does not run there (one sentence, named in docs/exports.md).
        cases: constructor arguments (beyond the contract's ``test_kwargs``) under which the form is tested,
            one mapping per configuration; ``({},)`` tests the contract configuration only.
        grad: the form is also taken with autograd on (False: an inference-only form, tested without grad).
        eval_only: the form is taken in eval mode only (a training graph keeps the eager form).
    """

    targets: tuple[str, ...]
    marker: str
    reason: str
    cases: Sequence[Mapping[str, Any]] = field(default_factory=lambda: ({},))
    grad: bool = True
    eval_only: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(EXPORT_TARGETS))
        if not self.targets or unknown:
            raise ValueError(
                f"PortableForm: targets must be a non-empty subset of {EXPORT_TARGETS}, got {self.targets}"
            )
        if not self.marker.startswith(("aten::", "prim::")):
            raise ValueError(f"PortableForm: marker must be a traced operator name ('aten::…'), got {self.marker!r}")
        if len(self.reason.strip()) < 10:
            raise ValueError(f"PortableForm: reason must say why the eager form does not export, got {self.reason!r}")


F = TypeVar("F", bound=Callable[..., Any])


def _has_proxy(args: Sequence[Any]) -> torch.fx.Proxy | None:
    for a in args:
        for t in a if isinstance(a, (list, tuple)) else (a,):
            if isinstance(t, torch.fx.Proxy):
                return t
    return None


def fx_leaf(fn: F) -> F:
    """Make ``fn`` a single node in ``torch.fx.symbolic_trace`` graphs (a leaf), wherever it is called from.

    Works like ``torch.fx.wrap`` without its rule that callers must look the function up through its defining
    module: when any argument (or a list element) is an FX proxy, the call is recorded as a node instead of
    being traced into.  Eager calls cost one scan of the arguments.
    """

    @functools.wraps(fn)
    def leaf(*args: Any, **kwargs: Any) -> Any:
        proxy = _has_proxy((*args, *kwargs.values()))
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", leaf, args, kwargs)
        return fn(*args, **kwargs)

    return leaf  # type: ignore[return-value]
