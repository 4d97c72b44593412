"""The dtype an engine computes in on a CPU, chosen per CPU class by measurement.

Why a table and not one rule: whether bf16 beats fp32 on a CPU depends on its vector extensions and
on the engine's kernels. Measured on a Qwen3-0.6B-shaped model (``scripts/measure_cpu_dtype.py``,
which makes and checks a row): on AVX2, bf16 halves the bytes read per decoded token but has no
bf16 arithmetic, so vLLM's batch-1 decode gains 12% while its time to first token is 5x and its
batched decode a third of fp32's; on AVX-512 without the BF16 extension vLLM's bf16 is 2.1x faster
at batch 1 and 1.7x under concurrency. Each engine declares its own table
(:attr:`harness.core.engine.Engine.cpu_dtypes`); this module only tells the CPU's class and picks.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


class CpuClass(enum.Enum):
    """What a CPU offers for bf16 and wide vectors, best first."""

    AMX = "amx"  #: AMX tiles with bf16 (Sapphire Rapids and later)
    AVX512_BF16 = "avx512_bf16"  #: AVX-512 with bf16 dot products (Cooper Lake, Zen 4 and later)
    AVX512 = "avx512"  #: AVX-512 without bf16 arithmetic
    AVX2 = "avx2"  #: AVX2 and FMA only
    OTHER = "other"  #: none of the above (or not an x86 CPU)


#: the flag that marks each class in /proc/cpuinfo, checked best first
_CLASS_FLAGS = ((CpuClass.AMX, "amx_bf16"), (CpuClass.AVX512_BF16, "avx512_bf16"), (CpuClass.AVX512, "avx512f"),
                (CpuClass.AVX2, "avx2"))
#: the vector extensions worth naming on a published page
NAMED_EXTENSIONS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype an engine computes in, and why (the measurement behind it, an option, a kernel's need)."""

    dtype: str
    reason: str


@lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The CPU's flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_class(features: frozenset[str] | None = None) -> CpuClass:
    """The best class whose flag the CPU has."""
    flags = cpu_features() if features is None else features
    return next((cls for cls, flag in _CLASS_FLAGS if flag in flags), CpuClass.OTHER)


def vector_extensions(features: frozenset[str] | None = None) -> list[str]:
    """The CPU's vector extensions a reader of a latency figure needs, in a fixed order."""
    flags = cpu_features() if features is None else features
    return [name for name in NAMED_EXTENSIONS if name in flags]


def choose(table: Mapping[CpuClass, DtypeChoice], cpu: CpuClass | None = None) -> DtypeChoice:
    """The table's choice for ``cpu`` (this machine's class when None); a class the table lacks takes the
    next lower class's entry (a CPU is at least as capable as every class below it), else float32."""
    here = cpu_class() if cpu is None else cpu
    order = list(CpuClass)
    for cls in order[order.index(here):]:
        if cls in table:
            return table[cls]
    return DtypeChoice("float32", f"{here.value}: not measured, float32 (every CPU computes it natively)")
