"""Where a run ran: git commit, machine and hardware descriptions stored in checkpoints and reports."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from crnn.machine import cpu_cores

_HERE = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=_HERE)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str | None:
    """The checkout's full commit hash, if git knows one."""
    return _git("rev-parse", "HEAD") or None


def git_describe() -> str:
    """The short commit hash, marked when the checkout has uncommitted changes ('unknown' outside git)."""
    sha = _git("rev-parse", "--short", "HEAD")
    if not sha:
        return "unknown"
    return sha + (" (with uncommitted changes)" if _git("status", "--porcelain") else "")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device, world: int, workers: int, threads: int) -> dict[str, Any]:
    """A description of the machine a run trains on, stored in checkpoints."""
    hw: dict[str, Any] = {"device": str(device), "cpu_cores": cpu_cores(), "world_size": world,
                          "data_workers": workers, "torch_threads": threads, "torch": torch.__version__,
                          "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw
