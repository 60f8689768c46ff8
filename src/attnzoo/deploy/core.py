"""``attnzoo.deploy``: export registered modules (or a model with modules inserted) to the deployment runtimes,
run them, and compare with eager PyTorch.

Every (module, runtime) case runs in a forked process (a converter that crashes or hangs costs one row, not the
run).  The module is built with its default arguments, its weights and BN statistics perturbed
(:func:`attnzoo.testing.randomize`: a block that is the identity at initialisation would match any broken
export), in eval mode, at batch 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..bench.worker import run_forked
from .runtimes import CONTRACT_CHECK, RUNTIMES, ConversionError, preload, runtime
from .variants import VARIANT_SIZES, declared_variant

__all__ = ["DeployResult", "deploy", "deploy_variants", "check", "STATUSES"]

#: ok — ran within tolerance; mismatch — ran, outputs differ; failed — did not convert or run;
#: exception — failed and the module declares the runtime unsupported (with the reason); missing — the runtime
#: is not installed.
STATUSES = ("ok", "mismatch", "failed", "exception", "missing")


@dataclass
class DeployResult:
    """One (module, runtime) row."""

    module: str
    runtime: str
    status: str
    max_abs_diff: float | None = None
    scaled_diff: float | None = None  # max |difference| ÷ max(1, max |eager output|): what the tolerance applies to
    latency_ms: float | None = None
    eager_ms: float | None = None
    message: str = ""
    input_shapes: list[list[int]] = field(default_factory=list)
    declared: str | None = None  # the module's declared reason for this runtime, if any
    size: str = ""  # the requested input size, "HxW" ("L" for dims=1, "DxHxW" for dims=3)
    config: str = ""  # the variant's label (``attnzoo deploy --variants``); "" for the default configuration
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments beyond the defaults
    channels: Any = None  # the channels it was built with (None: the layout's default)
    artefacts: list[str] = field(default_factory=list)  # files kept by ``save`` (``--save DIR``)
    dims: int = 2  # the spatial rank the module was built with (``attnzoo deploy --dims``)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "exception", "missing")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median_ms(fn: Callable[[], Any], min_time: float, max_runs: int = 200) -> float:
    fn()  # warm-up (allocations, lazy compilation)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < 5 or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def _first_line(err: BaseException) -> str:
    """A short, actionable reason from an exporter's or runtime's exception."""
    text = str(err).strip() or type(err).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for key in ("not supported", "unsupported", "aten::", "prim::", "Failed", "error"):
        for ln in lines:
            if key in ln and len(ln) > 12:
                return f"{type(err).__name__}: {ln[:300]}"
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__


def _silenced(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """In the forked child: the exporters' and converters' chatter (progress lines, tracer warnings) to /dev/null."""
    import warnings

    # OpenVINO's converter sends telemetry from a forked process that, without network, hangs in getaddrinfo and
    # outlives this child; its telemetry is off where CI=true (only this short-lived process is affected).
    os.environ["CI"] = "true"
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    warnings.simplefilter("ignore")
    return fn(*args)


def _build_case(spec: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(module wrapped with flat inputs, its flat inputs), built in the child from a JSON-able ``spec``."""
    import torch

    import attnzoo
    from attnzoo.layers import AttnModule
    from attnzoo.layouts import example_channels, example_inputs
    from attnzoo.testing import FlatIO, randomize, tensors_of

    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    size = tuple(spec["size"])
    if spec.get("model"):
        from attnzoo.compare.models import build_model

        model, _ = build_model(spec["model"], num_classes=1000, image_size=max(size))
        if spec.get("insert"):
            attnzoo.insert(model, spec["insert"])
        args: tuple = (torch.randn(spec["batch"], 3, *size, generator=gen),)
        # perturb the inserted modules only: a whole perturbed network's activations grow to 1e3+ and hide nothing
        for sub in model.modules():
            if isinstance(sub, AttnModule):
                randomize(sub, seed=spec["seed"])
        return FlatIO(model.eval(), args).eval(), tensors_of(args)[0]
    name, dims = spec["module"], spec.get("dims", 2)
    entry = attnzoo.info(name)
    size = tuple(max(a, b) for a, b in zip(size, entry.min_size if dims == 2 else (max(entry.min_size),) * dims))
    channels = example_channels(name, spec.get("channels"), dims=dims)
    module = attnzoo.create(name, channels, **spec.get("kwargs", {}), **({"dims": dims} if dims != 2 else {}))
    args = example_inputs(name, batch=spec["batch"], channels=channels, size=size, generator=gen, dims=dims)
    randomize(module.eval(), seed=spec["seed"])
    flat, _ = tensors_of(args)
    return FlatIO(module, args).eval(), flat


def _run_case(spec: dict[str, Any], rt_name: str, threads: int, min_time: float) -> dict[str, Any]:
    """Child side: build, export, run, compare, time.  Returns a row dict (status ok / mismatch / failed)."""
    import torch

    from attnzoo.testing import flatten

    torch.set_num_threads(threads)
    rt = runtime(rt_name)
    row: dict[str, Any] = {"stage": "build"}
    module, flat = _build_case(spec)
    row["input_shapes"] = [list(t.shape) for t in flat]
    with torch.no_grad():
        ref = [t.numpy() for t in flatten(module(*flat))]
        row["eager_ms"] = _median_ms(lambda: module(*flat), min_time)
    save = spec.get("save")
    with contextlib.ExitStack() as stack:
        if save:
            workdir = Path(save)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"attnzoo-deploy-{rt_name}-")))
        row = _convert_and_compare(row, module, flat, ref, rt, workdir, threads, min_time, bool(save))
        if save:
            _write_manifest(workdir, spec, rt_name, row, flat, ref)
        return row


def _convert_and_compare(row: dict[str, Any], module: Any, flat: list[Any], ref: list[Any], rt: Any, workdir: Path,
                         threads: int, min_time: float, save: bool) -> dict[str, Any]:  # fmt: skip
    import numpy as np
    import torch

    row["stage"] = "convert"
    try:
        with torch.no_grad():
            run = rt.prepare(module, flat, workdir, threads, save=save)
        arrays = [t.numpy() for t in flat]
        row["stage"] = "run"
        got = run(arrays)
    except Exception as err:  # noqa: BLE001 - every converter/runtime error is a reported row
        reason = str(err) if isinstance(err, ConversionError) else _first_line(err)
        return {**row, "status": "failed", "message": f"{row['stage']}: {reason}"}
    row["io"] = {"inputs": run.inputs, "outputs": run.outputs, "files": run.files}
    if len(got) != len(ref):
        return {**row, "status": "failed", "message": f"run: {len(got)} outputs, eager has {len(ref)}"}
    diff, scaled = 0.0, 0.0
    for g, r in zip(got, ref):
        g = np.asarray(g, dtype=np.float64)
        if g.shape != r.shape:
            if g.size != r.size:
                return {**row, "status": "failed", "message": f"run: output shape {g.shape}, eager {r.shape}"}
            g = g.reshape(r.shape)  # ncnn drops size-1 axes besides the batch
        d = float(np.abs(g - r).max()) if r.size else 0.0
        diff = max(diff, d)
        # f32 rounding grows with the output's magnitude (perturbed deep necks reach 1e5): compare relative to
        # max(1, max |eager|) — an absolute difference for the usual outputs of magnitude ≤ 1.
        scaled = max(scaled, d / max(1.0, float(np.abs(r).max()) if r.size else 1.0))
    row["max_abs_diff"], row["scaled_diff"] = diff, scaled
    row["latency_ms"] = _median_ms(lambda: run(arrays), min_time)
    if not scaled <= rt.tolerance:  # also catches NaN
        return {**row, "status": "mismatch",
                "message": f"max |difference| {diff:.3g} (scaled {scaled:.3g}) above {rt.tolerance:g}"}  # fmt: skip
    return {**row, "status": "ok"}


def _write_manifest(workdir: Path, spec: dict[str, Any], rt_name: str, row: dict[str, Any], flat: list[Any],
                    ref: list[Any]) -> None:  # fmt: skip
    """``manifest.json`` beside the saved artefacts, with the example input and eager output (``example.npz``:
    ``input{i}``, ``expected{i}``) that the measured difference was computed on."""
    import numpy as np

    from .runtimes import version

    io = row.get("io", {})
    in_names, out_names = io.get("inputs") or [], io.get("outputs") or []
    np.savez(workdir / "example.npz", **{f"input{i}": t.numpy() for i, t in enumerate(flat)},
             **{f"expected{i}": r for i, r in enumerate(ref)})  # fmt: skip
    manifest = {
        "module": spec.get("module") or spec.get("model"),
        "insert": spec.get("insert"),
        "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.get("kwargs", {}).items()},
        "channels": spec.get("channels"),
        "runtime": rt_name,
        "versions": version(),
        "files": io.get("files", []),
        "inputs": [
            {"name": in_names[i] if i < len(in_names) else None, "shape": list(t.shape), "dtype": "float32"}
            for i, t in enumerate(flat)
        ],  # fmt: skip
        "outputs": [
            {"name": out_names[i] if i < len(out_names) else None, "shape": list(r.shape), "dtype": str(r.dtype)}
            for i, r in enumerate(ref)
        ],  # fmt: skip
        "example": "example.npz",
        "status": row.get("status"),
        "message": row.get("message", ""),
        "max_abs_diff": row.get("max_abs_diff"),
        "scaled_diff": row.get("scaled_diff"),
        "tolerance": RUNTIMES[rt_name].tolerance,
        "note": "ncnn has no batch axis: feed each input without its leading 1" if rt_name == "ncnn" else "",
    }
    (workdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def check(
    name: str | None = None,
    runtime_name: str = "onnxruntime",
    *,
    model: str | None = None,
    insert: str | None = None,
    size: Sequence[int] | None = None,
    channels: int | None = None,
    seed: int = 0,
    threads: int = 1,
    min_time: float = 0.1,
    timeout: float | None = 600.0,
    isolate: bool = True,
    save: str | Path | None = None,
    config: str = "",
    dims: int = 2,
    **kwargs: Any,
) -> DeployResult:
    """Export one registered module (or ``model`` with ``insert``) to one runtime, run it, compare with eager.

    ``kwargs`` are constructor arguments (default: the module's defaults), ``channels`` its channels.  ``save``:
    a directory that keeps the exported artefacts with ``manifest.json`` (inputs, outputs, shapes, the measured
    difference) and ``example.npz`` (the input and eager output compared).  ``config`` labels the row.  ``dims``:
    the spatial rank to build the module with (``size`` is then (L,) or (D, H, W); one value broadcasts)."""
    from attnzoo.layouts import layout_for

    rt = runtime(runtime_name)
    if (name is None) == (model is None):
        raise ValueError(f"deploy.check: give a module name or a model, got name={name!r}, model={model!r}")
    label = str(name) if model is None else (f"{model}+{insert}" if insert else model)
    if size is None:
        size = (224, 224) if model is not None else layout_for(str(name), dims).default_size
    elif len(size) == 1:
        size = (size[0],) * (2 if model is not None else dims)
    declared = None if name is None else declared_reason(name, runtime_name, dims, kwargs)
    if not rt.available():
        pkgs = ", ".join(rt.packages)
        return DeployResult(
            label,
            runtime_name,
            "missing",
            message=f"not installed ({pkgs}): pip install 'attnzoo[deploy]'",
            declared=declared,
        )
    spec = {"module": name, "model": model, "insert": insert, "size": list(size), "batch": 1, "seed": seed,
            "channels": channels, "kwargs": kwargs, "save": None if save is None else str(save),
            "dims": dims}  # fmt: skip
    if isolate:
        preload([runtime_name])  # once per process: every forked case starts with the runtime imported
        row = run_forked(lambda emit: _silenced(_run_case, spec, runtime_name, threads, min_time), timeout)
    else:
        row = _run_case(spec, runtime_name, threads, min_time)
    if "error" in row:  # crash or timeout in the child
        row = {**row, "status": "failed", "message": row["error"]}
    status = row["status"]
    message = row.get("message", "")
    if declared is not None and status != "ok":
        status, message = "exception", f"{declared} ({message})" if message else declared
    elif declared is not None:
        message = f"declared unsupported ({declared}) but runs: remove the exception"
    return DeployResult(
        module=label,
        runtime=runtime_name,
        status=status,
        max_abs_diff=row.get("max_abs_diff"),
        scaled_diff=row.get("scaled_diff"),
        latency_ms=row.get("latency_ms"),
        eager_ms=row.get("eager_ms"),
        message=message,
        input_shapes=row.get("input_shapes", []),
        declared=declared,
        size="x".join(str(v) for v in size),
        config=config,
        kwargs={k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
        channels=channels,
        artefacts=[] if save is None else sorted(p.name for p in Path(save).iterdir()),
        dims=dims,
    )


def declared_reason(name: str, runtime_name: str, dims: int = 2, kwargs: Any = None) -> str | None:
    """Why ``name`` (built at spatial rank ``dims`` with ``kwargs``) is declared not to run in ``runtime_name``:
    the module's exceptions at that rank (``ModuleInfo.exceptions_at``) or a declared variant; None if neither."""
    import attnzoo

    check_name = CONTRACT_CHECK[runtime_name]
    return attnzoo.info(name).exceptions_at(dims).get(check_name) or declared_variant(name, kwargs or {}, runtime_name)


def deploy(
    modules: Iterable[str] | None = None,
    runtimes: Iterable[str] | None = None,
    *,
    model: str | None = None,
    insert: str | None = None,
    size: Sequence[int] | None = None,
    threads: int = 1,
    min_time: float = 0.1,
    timeout: float | None = 600.0,
    isolate: bool = True,
    progress: Callable[[DeployResult], None] | None = None,
    save: str | Path | None = None,
) -> list[DeployResult]:
    """Export and run every requested module (default: the whole registry) in every requested runtime.

    Returns one :class:`DeployResult` per (module, runtime), modules in registry order.  With ``model`` (a
    torchvision or timm name) the network, with ``insert`` inserted by :func:`attnzoo.insert`, is the one case.
    ``size`` is (H, W) (default: the layout's default size; 224² for a model), batch is 1.  ``threads`` applies to
    eager PyTorch and to every runtime, so latencies compare; ``isolate=False`` runs in this process (faster to
    start, but a crashing converter takes the caller with it).  ``save``: keep every case's artefacts in
    ``save/<module>/<runtime>/`` (see :func:`check`).
    """
    import attnzoo

    names = list(RUNTIMES) if runtimes is None else list(runtimes)
    for r in names:
        runtime(r)
    if model is not None:
        cases: list[dict[str, Any]] = [{"model": model, "insert": insert}]
    else:
        mods = attnzoo.list_modules() if modules is None else list(modules)
        for m in mods:
            attnzoo.info(m)  # unknown names fail here, with close matches
        cases = [{"name": m} for m in mods]
    if isolate:
        preload(names)
    results = []
    for case in cases:
        for r in names:
            label = case.get("name") or (f"{model}+{insert}" if insert else model)
            where = None if save is None else Path(save) / str(label) / r
            res = check(case.get("name"), r, model=case.get("model"), insert=case.get("insert"), size=size,
                        threads=threads, min_time=min_time, timeout=timeout, isolate=isolate, save=where)  # fmt: skip
            results.append(res)
            if progress is not None:
                progress(res)
    return results


def deploy_variants(
    modules: Iterable[str] | None = None,
    runtimes: Iterable[str] | None = None,
    *,
    sizes: Sequence[Sequence[int]] = VARIANT_SIZES,
    rotate: bool = False,
    threads: int = 1,
    min_time: float = 0.0,
    timeout: float | None = 600.0,
    isolate: bool = True,
    progress: Callable[[DeployResult], None] | None = None,
    save: str | Path | None = None,
) -> list[DeployResult]:
    """The variants table: every configuration of :func:`attnzoo.deploy.variants.configurations` (defaults,
    ``test_kwargs``, every mode switch, a small non-default configuration) at every size in every runtime.

    ``rotate=True`` runs each configuration once, in one (runtime, size) pair taken in turn over the whole table
    (configuration k: pair k mod R·S of the sizes × runtimes), so that every configuration is deployed and every
    pair is used.  Rows carry the configuration's label (``config``) and arguments (``kwargs``).
    """
    import attnzoo

    from .variants import configurations

    names = list(RUNTIMES) if runtimes is None else list(runtimes)
    for r in names:
        runtime(r)
    mods = attnzoo.list_modules() if modules is None else list(modules)
    for m in mods:
        attnzoo.info(m)
    if isolate:
        preload(names)
    sizes = [tuple(s) if len(s) == 2 else (s[0], s[0]) for s in sizes]
    everything = [(r, s) for s in sizes for r in names]
    results: list[DeployResult] = []
    k = 0
    for m in mods:
        for i, (label, kwargs, channels) in enumerate(configurations(m)):
            pairs = [everything[k % len(everything)]] if rotate else everything
            k += 1
            for r, size in pairs:
                where = None
                if save is not None:
                    where = Path(save) / m / f"{i:02d}-{_slug(label)}" / "x".join(map(str, size)) / r
                res = check(m, r, size=size, channels=channels, threads=threads, min_time=min_time, timeout=timeout,
                            isolate=isolate, save=where, config=label, **kwargs)  # fmt: skip
                results.append(res)
                if progress is not None:
                    progress(res)
    return results


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")[:60] or "config"
