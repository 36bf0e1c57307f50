"""Numeric precision of inference: the choices and what ``auto`` means on this machine (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "mixed", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` is a CPU that computes bfloat16 natively (AVX-512 BF16 or AMX)."""
    return device.type == "cpu" and cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    """Whether this machine's CPU computes bfloat16 natively (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to run: ``auto`` is ``bf16`` on a CPU with native bf16 (elsewhere emulated and slow), else ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision
