"""Facts about the machine a figure was measured on: CPU model, cores, clock, vector flags, nominal peak.

Read from ``/proc/cpuinfo`` once per process (:func:`this_cpu`), with the standard library only (training,
releasing and the benchmark all record them).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8")
"""Instruction-set flags recorded with the results (the ones that matter to fp32 and int8 kernels)."""


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, physical cores, clock (MHz) and vector flags from ``/proc/cpuinfo`` and the kernel's maximum
    clock, or from the ``cpuinfo`` text given alone."""
    max_khz = None if cpuinfo is not None else Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    for block in cpuinfo.strip().split("\n\n"):
        pairs = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        info = {key.strip(): value.strip() for key, value in pairs.items()}
        fields = fields or info
        cores.add((info.get("physical id", "0"), info.get("core id", info.get("processor", "0"))))
    flags = set(fields.get("flags", "").split())
    if max_khz is not None and max_khz.is_file():
        mhz, mhz_source = int(max_khz.read_text()) / 1000, f"{max_khz} (maximum boost clock)"
    elif "cpu MHz" in fields:
        mhz = float(fields["cpu MHz"])
        mhz_source = "/proc/cpuinfo 'cpu MHz' (the reported clock; a boost clock can exceed it)"
    else:
        mhz, mhz_source = None, "unknown"
    return {
        "model": fields.get("model name", platform.processor() or platform.machine()),
        "physical_cores": len(cores) if fields else os.cpu_count(),
        "mhz": mhz,
        "mhz_source": mhz_source,
        "flags": [flag for flag in CPU_FLAGS if flag in flags],
    }


@functools.cache
def this_cpu() -> dict[str, Any]:
    """:func:`cpu_facts` of this machine, read once per process (the result is shared: read it, don't change it)."""
    return cpu_facts()


def peak_fp32(cpu: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """Peak fp32 FLOP/s = cores x GHz x FLOPs per cycle, each number with where it came from."""
    flags = set(cpu["flags"])
    if "avx512f" in flags:
        per_cycle, why = 64, "AVX-512: 2 FMA units x 16 fp32 lanes x 2 FLOPs (halve for one 512-bit FMA unit, Zen 4)"
    elif {"avx2", "fma"} <= flags:
        per_cycle, why = 32, "AVX2 + FMA: 2 FMA units x 8 fp32 lanes x 2 FLOPs (Haswell, Zen 2 and later)"
    elif "avx" in flags:
        per_cycle, why = 16, "AVX without FMA: 1 add + 1 multiply unit x 8 fp32 lanes"
    else:
        per_cycle, why = 8, "no AVX flag found: 1 add + 1 multiply unit x 4 fp32 lanes (SSE/NEON class)"
    cores = min(threads, cpu["physical_cores"]) if threads else cpu["physical_cores"]
    ghz = cpu["mhz"] / 1000 if cpu["mhz"] else None
    return {
        "cores": cores,
        "cores_source": "physical cores in /proc/cpuinfo" + (f", limited to {threads} threads" if threads else ""),
        "ghz": ghz,
        "ghz_source": cpu["mhz_source"],
        "flops_per_cycle": per_cycle,
        "flops_per_cycle_source": why,
        "gflops": cores * ghz * per_cycle if ghz else None,
    }


def machine_info(device: str) -> dict[str, Any]:
    """What a rerun needs to know about where a figure was measured."""
    return {"cpu": this_cpu()["model"], "cores": os.cpu_count(), "device": device, "platform": platform.platform()}
