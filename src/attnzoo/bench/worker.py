"""Child side of ``attnzoo bench``: a server that forks one fresh process per measured case.

``python -m attnzoo.bench.worker [--import MODULE_OR_FILE ...]`` is started by the CLI (which never imports
torch itself for the measurements).  The server imports torch, attnzoo and the plugins once, runs no
computation itself, and then answers JSON lines on stdin:

* ``{"op": "list", "modules": [...] | null, "family": str | null}`` → ``{"ok": true, "modules": [info...]}``
* ``{"op": "probe", "device": "cpu" | "cuda"}`` → environment (forked child, so CUDA is never initialised here)
* ``{"op": "run", "job": {...}, "timeout": seconds}`` → ``{"ok": true, "row": {...}}``

Every ``run`` (and ``probe``) forks a child from this clean server: the child starts with no measured work in
its heap, measures its case (:func:`attnzoo.bench.measure.measure_case`), streams the row after every stage
through a pipe and exits.  A child that raises, crashes (signal, out-of-memory kill) or exceeds the timeout
still yields a row with the figures measured so far and the error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable


def import_plugin(spec: str) -> None:
    """Import a module by dotted name, or a ``.py`` file by path (it may ``attnzoo.register`` modules)."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).resolve()
        mod_spec = importlib.util.spec_from_file_location(f"attnzoo_bench_plugin_{path.stem}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError(f"cannot import plugin file {spec!r}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_spec.name] = module
        mod_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


def _module_infos(names: list[str] | None, family: str | None) -> list[dict]:
    import attnzoo
    from attnzoo.layouts import DEFAULT_SIZE, example_channels

    if names is None:
        names = attnzoo.list_modules(family)
    out = []
    for name in names:
        e = attnzoo.info(name)  # ValueError with close matches for an unknown name
        if family is not None and e.family != family:
            continue
        out.append(
            {
                "name": e.name,
                "family": e.family,
                "layout": e.layout,
                "complexity": e.complexity,
                "class": e.cls.__name__,
                "min_size": list(e.min_size),
                "default_size": list(DEFAULT_SIZE[e.layout]),
                "default_channels": _first(example_channels(e.name)),
            }
        )
    return out


def _first(channels: Any) -> int:
    return int(channels[0] if isinstance(channels, (list, tuple)) else channels)


def _probe(device: str) -> dict:
    import platform

    import torch

    import attnzoo

    env = {
        "torch": torch.__version__,
        "attnzoo": getattr(attnzoo, "__version__", "?"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "default_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": _load_average(),
    }
    if device == "cuda":
        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def run_forked(work: Callable[[Callable[[dict], None]], dict], timeout: float | None) -> dict:
    """Run ``work(emit)`` in a forked child; return its final row (or the last emitted row plus an error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)

            def emit(row: dict) -> None:
                os.write(w, (json.dumps(row) + "\n").encode())

            row = work(emit)
            emit({**row, "final": True})
        except BaseException as exc:  # noqa: BLE001 - report anything, then leave without cleanup
            try:
                os.write(
                    w, (json.dumps({"error": f"worker: {type(exc).__name__}: {exc}", "final": True}) + "\n").encode()
                )
            except Exception:  # noqa: BLE001
                pass
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    started = time.monotonic()
    buf, last, final, timed_out = b"", {}, False, False
    try:
        while True:
            wait = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            ready, _, _ = select.select([r], [], [], wait)
            if not ready:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    last = json.loads(line)
                    final = final or bool(last.get("final"))
            if final:  # done: do not wait for EOF, a grandchild (e.g. a library's telemetry process) may hold the pipe
                break
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    last.pop("final", None)
    if timed_out:
        last["error"] = f"{last.get('stage', 'start')}: timeout: no result after {timeout:g} s (process killed)"
        last.setdefault("error_stage", last.get("stage", "start"))
    elif not final:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            why = " (out of memory?)" if sig == signal.SIGKILL else ""
            text = f"process killed by {_signal_name(sig)}{why}"
        else:
            text = f"process exited with code {os.WEXITSTATUS(status)}"
        last["error"] = f"{last.get('stage', 'start')}: crash: {text}"
        last.setdefault("error_stage", last.get("stage", "start"))
    return last


def serve(proto_in, proto_out) -> None:
    for line in proto_in:
        if not line.strip():
            continue
        msg = json.loads(line)
        op = msg.get("op")
        try:
            if op == "exit":
                reply: dict[str, Any] = {"ok": True}
            elif op == "list":
                reply = {"ok": True, "modules": _module_infos(msg.get("modules"), msg.get("family"))}
            elif op == "probe":
                reply = {"ok": True, "env": run_forked(lambda emit: _probe(msg.get("device", "cpu")), timeout=120)}
            elif op == "run":
                from .measure import (
                    measure_case,  # imports torch: already loaded by the server
                )

                job = msg["job"]
                reply = {"ok": True, "row": run_forked(lambda emit: measure_case(job, emit), msg.get("timeout"))}
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as exc:  # noqa: BLE001
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        proto_out.write(json.dumps(reply) + "\n")
        proto_out.flush()
        if op == "exit":
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnzoo.bench.worker")
    parser.add_argument("--import", dest="imports", action="append", default=[])
    args = parser.parse_args(argv)
    # The protocol owns the original stdout; anything a module prints goes to stderr instead.
    proto_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import torch  # noqa: F401  (loaded once here; every forked case shares the loaded libraries)

        import attnzoo  # noqa: F401

        for spec in args.imports:
            import_plugin(spec)
        from . import measure

        measure.preload()
    except Exception as exc:  # noqa: BLE001
        proto_out.write(
            json.dumps({"ok": False, "fatal": True, "error": f"import: {type(exc).__name__}: {exc}"}) + "\n"
        )
        proto_out.flush()
        return 1
    proto_out.write(json.dumps({"ok": True, "ready": True}) + "\n")
    proto_out.flush()
    serve(sys.stdin, proto_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
