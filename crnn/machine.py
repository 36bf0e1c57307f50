"""Facts about this machine that pick defaults (torch-free, so `crnn ocr` can ask before importing torch)."""

from __future__ import annotations

import os


def cpu_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS has one, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
