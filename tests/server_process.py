"""Helpers for tests and benchmarks: a free loopback port and a real `crnn serve` process (not shipped in the wheel)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent  # the clone's root (this file is tests/server_process.py)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """Runs `python -m crnn.cli serve` on a free loopback port until the context exits (SIGTERM)."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, startup_timeout: float = 90.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "crnn.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        # Importable from a plain checkout too, not only after `pip install -e .`.
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), self.env.get("PYTHONPATH", "")) if p)
        self.startup_timeout = startup_timeout
        self._dir = tempfile.TemporaryDirectory(prefix="crnn-serve-")
        self.stdout_path = Path(self._dir.name) / "stdout.log"
        self.stderr_path = Path(self._dir.name) / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        self._dir.cleanup()

    def start(self) -> None:
        """Start the process and wait until /readyz answers 200."""
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, env=self.env, cwd=REPO)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crnn serve exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"crnn serve not ready after {self.startup_timeout:g} s:\n{self.stderr()}")

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; its return code."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stdout(self) -> str:
        """What the server wrote to stdout so far (the JSON access log)."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """What the server wrote to stderr so far (its other logs)."""
        return self.stderr_path.read_text(errors="replace")

    def access_log(self) -> list[dict[str, object]]:
        """The access log lines written so far, parsed."""
        return [json.loads(line) for line in self.stdout().splitlines() if line.startswith("{")]
