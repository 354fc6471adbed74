"""What machine a timing was taken on: CPU model, cores, vector extensions, and one
reference convolution timed on it.

Speed targets in this project are met "on this 2-core machine", but hosts of the same kind
differ: one session's lidar_only ran at 19-24 ms a frame, a later one at 45-53 ms on the same
code, with the same core count and flags. A benchmark that records the time of one fixed
convolution beside its own numbers lets a reader tell a slower machine from a slower commit:
ms/frame divided by ``reference_conv_ms`` is comparable across machines, raw ms are not.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

# The reference: one 3x3 convolution, 64 -> 64 channels on a 128 x 128 map, batch 1, one
# thread (the shape and thread count of the tiny preset's LiDAR backbone at inference).
REFERENCE_CONV = {"channels": 64, "hw": 128, "kernel": 3, "threads": 1}
# The vector extensions that decide CPU convolution speed.
_SIMD = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")


def _cpu_info() -> tuple[str, tuple[str, ...]]:
    """CPU model name and the vector extensions of ``_SIMD`` it has (Linux: /proc/cpuinfo;
    elsewhere ``platform.processor()`` and none).
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", ()
    fields: dict[str, str] = {}
    for line in text.splitlines():  # the first CPU's entries are enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    have = set(fields.get("flags", "").split())
    model = fields.get("model name") or platform.processor() or "unknown"
    return model, tuple(f for f in _SIMD if f in have)


def reference_conv_ms(repeats: int = 7) -> float:
    """Median ms of the reference convolution (``REFERENCE_CONV``) after two warm-up runs;
    torch's thread count is restored afterwards.
    """
    import torch

    r = REFERENCE_CONV
    prev = torch.get_num_threads()
    torch.set_num_threads(r["threads"])
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, r["channels"], r["hw"], r["hw"], generator=gen)
        conv = torch.nn.Conv2d(r["channels"], r["channels"], r["kernel"], padding=r["kernel"] // 2)
        times = []
        with torch.inference_mode():
            for i in range(repeats + 2):
                t0 = time.perf_counter()
                conv(x)
                if i >= 2:
                    times.append((time.perf_counter() - t0) * 1e3)
        return float(statistics.median(times))
    finally:
        torch.set_num_threads(prev)


def machine_facts() -> dict:
    """CPU model, logical cores, vector extensions, torch version and ``reference_conv_ms``."""
    import torch

    model, flags = _cpu_info()
    return {
        "cpu": model,
        "cores": os.cpu_count() or 1,
        "simd": list(flags),
        "torch": torch.__version__,
        "reference_conv_ms": round(reference_conv_ms(), 2),
        "reference_conv": dict(REFERENCE_CONV),
    }


def describe(facts: dict) -> str:
    """One line for a report: ``2 cores (AMD EPYC; avx2 fma), reference conv 39.1 ms``."""
    simd = " ".join(facts.get("simd", [])) or "no AVX"
    return (f"{facts['cores']} cores ({facts['cpu']}; {simd}), torch {facts['torch']}, "
            f"reference conv {facts['reference_conv_ms']:.1f} ms (eval.machine)")
