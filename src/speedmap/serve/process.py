"""``speedmap serve`` in a child process on a free loopback port, for benchmarks and studies that need a
real server apart from the client's process."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from speedmap.errors import SpeedmapError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``with ServerProcess(models) as url: ...`` starts the server, waits for ``/healthz``, stops it."""

    def __init__(self, models_dir: str | Path, *args: str, startup_s: float = 60.0) -> None:
        self.models_dir, self.args, self.startup_s = Path(models_dir), args, startup_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.log: Any = None
        self._output = ""

    def start(self) -> str:
        cmd = [
            sys.executable,
            "-m",
            "speedmap",
            "serve",
            "--models",
            str(self.models_dir),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.args,
        ]
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (a pipe nobody reads could block the server)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.output()
                raise SpeedmapError(f"the server exited at start (code {self.proc.returncode}): {out[-500:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise SpeedmapError(f"the server did not answer /healthz within {self.startup_s:g} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.log is not None:
            self._output = self.output()
            self.log.close()
            self.log = None

    def output(self) -> str:
        """What the server printed so far (kept after :meth:`stop`)."""
        if self.log is None:
            return self._output
        self.log.seek(0)
        return str(self.log.read())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory_mb(self) -> dict[str, float]:
        """``VmRSS`` (now) and ``VmHWM`` (peak) of the server process in MB, from ``/proc`` (Linux)."""
        assert self.proc is not None
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
