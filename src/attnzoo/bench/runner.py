"""Parent side of ``attnzoo bench``: talks to the worker server (:mod:`attnzoo.bench.worker`).

Imports neither torch nor any module of the library's families: the measurements happen in processes forked
by the worker server, which is started with ``subprocess`` (``fork`` + ``exec``: a new address space).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any


class WorkerError(RuntimeError):
    """The worker server could not start or answered with an error."""


class WorkerClient:
    """A ``python -m attnzoo.bench.worker`` server process; use as a context manager."""

    def __init__(self, imports: list[str] | None = None, python: str | None = None) -> None:
        self.imports = list(imports or [])
        self.python = python or sys.executable
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile(mode="w+b")

    def __enter__(self) -> "WorkerClient":
        cmd = [self.python, "-m", "attnzoo.bench.worker"]
        for spec in self.imports:
            cmd += ["--import", spec]
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1, env=env
        )
        hello = self._read()
        if not hello.get("ok"):
            raise WorkerError(hello.get("error", "worker failed to start") + self._log_tail())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            try:
                if self.proc.poll() is None:
                    self._send({"op": "exit"})
                    self.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        self.log.close()

    def _log_tail(self, n: int = 2000) -> str:
        try:
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - n))
            tail = self.log.read().decode(errors="replace").strip()
        except Exception:  # noqa: BLE001
            return ""
        return f"\n--- worker log ---\n{tail}" if tail else ""

    def _send(self, msg: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def _read(self) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise WorkerError(f"worker exited with code {code}" + self._log_tail())
        return json.loads(line)

    def request(self, msg: dict) -> dict:
        self._send(msg)
        reply = self._read()
        if not reply.get("ok"):
            raise WorkerError(reply.get("error", "worker error"))
        return reply

    def list_modules(self, modules: list[str] | None, family: str | None) -> list[dict]:
        return self.request({"op": "list", "modules": modules, "family": family})["modules"]

    def probe(self, device: str) -> dict:
        return self.request({"op": "probe", "device": device})["env"]

    def run(self, job: dict, timeout: float | None) -> dict:
        return self.request({"op": "run", "job": job, "timeout": timeout})["row"]
