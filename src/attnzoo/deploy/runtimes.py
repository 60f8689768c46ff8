"""The deployment runtimes: ONNX Runtime, OpenVINO and ncnn (through pnnx).

Each runtime turns an eval-mode module with flat tensor inputs (:class:`attnzoo.testing.FlatIO`) into a
callable on NumPy arrays, the way its users do it:

* ``onnxruntime``: ``torch.onnx.export(dynamo=True)``, then an ``InferenceSession`` on the CPU provider.
* ``openvino``: ``openvino.convert_model(module, example_input=...)`` (the PyTorch frontend, no ONNX in
  between), compiled for the CPU with ``INFERENCE_PRECISION_HINT=f32`` (the CPU plugin's default is bf16 on
  CPUs that have it, which moves outputs by up to 1e-1 … 2 and is not what a deployment check compares).
* ``ncnn``: ``torch.jit.trace`` + the ``pnnx`` converter (``fp16=0``: weights stay f32) to ``.ncnn.param`` /
  ``.ncnn.bin``, run by ``ncnn.Net`` with fp16/bf16 storage and arithmetic off.  ncnn has no batch axis: the
  check runs batch 1 and drops the leading axis of every input.

A runtime whose package is not installed is reported as ``missing``; nothing here imports it eagerly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..tracing import export_target

__all__ = ["RUNTIMES", "CONTRACT_CHECK", "TOLERANCE", "Runtime", "runtime", "available", "version"]

RunFn = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


@dataclass
class Run:
    """A prepared runtime: call it on NumPy arrays; ``inputs`` / ``outputs`` are the graph's tensor names and
    ``files`` the deployable artefacts written to the work directory (relative names)."""

    fn: RunFn
    inputs: list[str]
    outputs: list[str]
    files: list[str]

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.fn(arrays)


class ConversionError(RuntimeError):
    """The runtime's converter or loader rejected the module; the message names the first reason it gave."""


@dataclass(frozen=True)
class Runtime:
    name: str
    packages: tuple[str, ...]  # import names that must all be installed
    dist: str  # distribution whose version is reported
    tolerance: float  # atol = rtol of the comparison with eager PyTorch (f32)
    needs_batch1: bool = False
    extra: str = "deploy"

    def available(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def version(self) -> str | None:
        try:
            return importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    def prepare(
        self, module: nn.Module, inputs: Sequence[torch.Tensor], workdir: Path, threads: int, save: bool = False
    ) -> Run:
        """Export ``module`` into ``workdir`` and load it.  ``save``: also write the artefacts a deployment
        loads (OpenVINO's IR ``model.xml`` / ``model.bin``; ONNX and ncnn files are written anyway) and remove
        the converter's intermediates."""
        run = _PREPARE[self.name](module, list(inputs), workdir, threads)
        if isinstance(run, Run):
            if save:
                _keep_only(workdir, run, module, inputs)
            return run
        return Run(run, [], [], [])  # a replacement prepare (tests) that returns a bare callable


def _onnxruntime(module: nn.Module, inputs: list[torch.Tensor], workdir: Path, threads: int) -> Run:
    import onnxruntime as ort

    path = workdir / "model.onnx"
    with export_target("onnx"):
        torch.onnx.export(module, tuple(inputs), str(path), dynamo=True, verbose=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(inputs):
        raise ConversionError(f"the ONNX graph has {len(names)} inputs, the module {len(inputs)}")
    files = sorted(p.name for p in workdir.iterdir() if p.name.startswith("model.onnx"))  # + external data
    return Run(lambda arrays: list(sess.run(None, dict(zip(names, arrays)))), names,
               [o.name for o in sess.get_outputs()], files)  # fmt: skip


def _openvino(module: nn.Module, inputs: list[torch.Tensor], workdir: Path, threads: int) -> Run:
    import openvino as ov

    with export_target("openvino"):
        ov_model = ov.convert_model(module, example_input=tuple(inputs))
    # no CPU pinning: pinned to a core another process keeps busy, a 0.6 ms model read 7 ms (se, 1×64×56×56)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False}
    compiled = ov.Core().compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        result = request.infer(list(arrays))
        return [np.asarray(result[o]) for o in outputs]

    def names(ports: Any) -> list[str]:
        return [next(iter(p.get_names()), f"{i}") for i, p in enumerate(ports)]

    prepared = Run(run, names(compiled.inputs), names(outputs), [])
    prepared.ov_model = ov_model  # type: ignore[attr-defined]  # for save: the IR is written from it
    return prepared


def _pnnx_messages(text: str) -> list[str]:
    """The lines of pnnx's log that say what ncnn cannot run."""
    keys = ("not supported", "unsupported", "not implemented", "error", "fallback", "ignore")
    return [ln.strip() for ln in text.splitlines() if any(k in ln.lower() for k in keys)]


def _stderr_of(fn: Callable[[], Any]) -> tuple[Any, str]:
    """``fn()`` and what native code printed to file descriptor 2 meanwhile (ncnn reports load errors there)."""
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            result = fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return result, f.read().decode(errors="replace")


def _numbered(names: Sequence[str]) -> list[str]:
    """pnnx names blobs in0, in1, … and out0, out1, …; ncnn lists them in graph order, which can differ."""
    return sorted(names, key=lambda n: (len(n), n))


def _ncnn(module: nn.Module, inputs: list[torch.Tensor], workdir: Path, threads: int) -> Run:
    import ncnn
    import pnnx

    pt = workdir / "model.pt"
    with export_target("ncnn"):
        torch.jit.trace(module, tuple(inputs), check_trace=False).save(str(pt))
    shapes = ",".join("[" + ",".join(str(d) for d in t.shape) + "]f32" for t in inputs)
    cmd = [pnnx.EXEC_PATH, str(pt), f"inputshape={shapes}", "device=cpu", "fp16=0"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600)
    log = done.stdout + done.stderr
    (workdir / "pnnx.log").write_text(log)
    param, weights = workdir / "model.ncnn.param", workdir / "model.ncnn.bin"
    messages = _pnnx_messages(log)
    if done.returncode != 0 or not param.exists():
        raise ConversionError(messages[0] if messages else f"pnnx exited with {done.returncode}: {log[-300:]}")
    net = ncnn.Net()
    for opt in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed"):
        setattr(net.opt, opt, False)
    net.opt.num_threads = threads
    net.opt.use_vulkan_compute = False
    (ret_param, ret_model), ncnn_log = _stderr_of(lambda: (net.load_param(str(param)), net.load_model(str(weights))))
    if ret_param != 0 or ret_model != 0:
        said = messages or [ln.strip() for ln in ncnn_log.splitlines() if ln.strip()]
        raise ConversionError(said[0] if said else "ncnn could not load the converted model")
    in_names, out_names = _numbered(net.input_names()), _numbered(net.output_names())
    if len(in_names) != len(inputs):
        raise ConversionError(f"the ncnn graph has {len(in_names)} inputs, the module {len(inputs)}")

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        ex = net.create_extractor()
        # ncnn.Mat(array) wraps the array's memory and in-place layers write into it: give ncnn its own copies,
        # kept alive until the extraction is done (a temporary array freed early was a segmentation fault).
        mats = [ncnn.Mat(np.ascontiguousarray(a[0])).clone() for a in arrays]  # ncnn has no batch axis
        for name, mat in zip(in_names, mats):
            ex.input(name, mat)
        outs = []
        for name in out_names:
            ret, mat = ex.extract(name)
            if ret != 0:
                msg = messages[0] if messages else f"extract({name!r}) returned {ret}"
                raise ConversionError(f"ncnn could not compute {name}: {msg}")
            outs.append(np.array(mat)[None])
        return outs

    return Run(run, in_names, out_names, [param.name, weights.name])


def _keep_only(workdir: Path, run: Run, module: nn.Module, inputs: Sequence[torch.Tensor]) -> None:
    """For ``--save``: write OpenVINO's IR (``model.xml`` / ``model.bin``, f32 weights) and delete what is not a
    deployable artefact (pnnx's TorchScript, its pnnx-format graph and Python script)."""
    ov_model = getattr(run, "ov_model", None)
    if ov_model is not None:
        import openvino as ov

        ov.save_model(ov_model, str(workdir / "model.xml"), compress_to_fp16=False)
        run.files = ["model.xml", "model.bin"]
    keep = set(run.files)
    for p in workdir.iterdir():
        if p.is_file() and p.name not in keep:
            p.unlink()


_PREPARE: dict[str, Callable[[nn.Module, list[torch.Tensor], Path, int], Run | RunFn]] = {
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
    "ncnn": _ncnn,
}

#: The runtimes, in report order.
RUNTIMES: dict[str, Runtime] = {
    "onnxruntime": Runtime("onnxruntime", ("onnxruntime", "onnx", "onnxscript"), "onnxruntime", 1e-4),
    "openvino": Runtime("openvino", ("openvino",), "openvino", 1e-4),
    "ncnn": Runtime("ncnn", ("ncnn", "pnnx"), "ncnn", 1e-3, needs_batch1=True),
}

#: The ``ModuleInfo.exceptions`` key a module declares a runtime under.
CONTRACT_CHECK = {"onnxruntime": "onnx", "openvino": "openvino", "ncnn": "ncnn"}
TOLERANCE = {k: r.tolerance for k, r in RUNTIMES.items()}


#: What each runtime imports: imported once in the parent, every forked case starts with them loaded.
_IMPORTS = {
    "onnxruntime": (
        "onnxruntime",
        "onnxscript",
        "torch.onnx._internal.exporter._core",
        "torch.export",
        "torch._dynamo",
    ),
    "openvino": ("openvino", "openvino.frontend.pytorch"),
    "ncnn": ("ncnn", "pnnx"),
}


def preload(names: Sequence[str]) -> None:
    """Import the installed runtimes' packages (seconds each) before the per-case processes are forked, and build
    the ONNX exporter's operator registry once (:func:`_reuse_torchlib_registry`)."""
    for name in names:
        if RUNTIMES[name].available():
            for mod in _IMPORTS[name]:
                try:
                    importlib.import_module(mod)
                except ImportError:  # a private module path moved: the case imports what it needs itself
                    pass
            if name == "onnxruntime":
                _reuse_torchlib_registry()


def _reuse_torchlib_registry() -> None:
    """``torch.onnx.export(dynamo=True)`` rebuilds its ATen → ONNX registry from torchlib on every call: it parses
    the source of ~500 onnxscript functions, 1–5 s per export, more than the export of a small module itself.
    Within the deploy tool (never on ``import attnzoo``) build it once per opset and give each export a copy whose
    per-operator lists are its own (an export registers custom translations into its registry).  Skipped when the
    private API is not there: exports then build their own registry as before."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return
    cls = getattr(_registration, "ONNXRegistry", None)
    build = getattr(cls, "from_torchlib", None)
    if cls is None or build is None or getattr(build, "_attnzoo_reused", False):
        return
    default = inspect.signature(build).parameters["opset_version"].default
    built: dict[Any, Any] = {}

    def from_torchlib(opset_version: Any = default) -> Any:
        if opset_version not in built:
            built[opset_version] = build(opset_version=opset_version)
        reg = cls.__new__(cls)
        reg.__dict__.update(built[opset_version].__dict__)
        reg.functions = {op: list(metas) for op, metas in built[opset_version].functions.items()}
        return reg

    from_torchlib()  # built now, in the parent of the forked cases
    from_torchlib._attnzoo_reused = True  # type: ignore[attr-defined]
    cls.from_torchlib = staticmethod(from_torchlib)


def runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"deploy: runtime must be one of {list(RUNTIMES)}, got {name!r}") from None


def available() -> dict[str, bool]:
    return {k: r.available() for k, r in RUNTIMES.items()}


def version() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        **{k: r.version() for k, r in RUNTIMES.items()},
    }
