"""What this machine's CPU computes natively, read from /proc/cpuinfo (Linux x86)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Flags of native bf16 arithmetic: AVX-512 BF16 (Cooper Lake, Zen 4 and later) and AMX (Sapphire
# Rapids and later). Without them bf16 is emulated and slower than fp32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """Return the first processor's feature flags in ``cpuinfo`` (empty where unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """Return the processor's model name, or 'unknown CPU'."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Return True when the CPU computes bf16 natively (AVX-512 BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


def missing_bf16_reason(flags: frozenset[str] | None = None) -> str:
    """Why bf16 is refused on this CPU ('' where it is native)."""
    if native_bf16(flags):
        return ""
    return (f"this CPU ({cpu_model()}) has neither of the bf16 features "
            f"{' nor '.join(BF16_FLAGS)} in /proc/cpuinfo")
