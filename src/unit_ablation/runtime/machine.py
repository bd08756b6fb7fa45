"""The machine and math libraries a result was computed with, for its metadata.

Results are bit-identical on one machine and build only: floating-point kernels (oneDNN, MKL,
cuDNN) pick different code paths on different CPUs and GPUs, and sum in different orders. This
records enough to tell whether two results come from the same machine and build.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

# CPU features that choose the kernels torch's CPU libraries run (and so their rounding)
NUMERIC_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
)

# /proc/cpuinfo fields that identify the CPU, with the word each is written after
CPU_ID_FIELDS = (("", "vendor_id"), ("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))


def machine_description(device: torch.device | str = "cpu") -> dict[str, str]:
    """CPU model and numeric features, torch's build and math libraries, and the GPU when `device`
    is CUDA. Every value is a string; what cannot be found is "unknown"."""
    info = cpu_description()
    build = torch.__config__.show()
    info["torch_build"] = f"{torch.__version__} (git {(torch.version.git_version or 'unknown')[:12]})"
    info["cpu_capability"] = _cpu_capability()
    info["blas"] = _first(r"BLAS_INFO=(\w+)", build)
    info["mkl"] = _first(r"Math Kernel Library Version ([\d.]+)", build)
    info["onednn"] = _first(r"(?:MKL-DNN|oneDNN) (v[\w.]+)", build)
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info["gpu_model"] = torch.cuda.get_device_name(index)
        info["gpu_driver"] = gpu_driver()
        info["cuda"] = str(torch.version.cuda)
        info["cudnn"] = str(torch.backends.cudnn.version())
    return info


def cpu_description(cpuinfo: str | None = None) -> dict[str, str]:
    """The CPU's model name, vendor/family/model/stepping and its NUMERIC_FLAGS present, from
    /proc/cpuinfo (or the given text); platform's names elsewhere."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block describes them all
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    identity = " ".join(
        f"{name} {fields[key]}" if name else fields[key]
        for name, key in (
            ("", "vendor_id"),
            ("family", "cpu family"),
            ("model", "model"),
            ("stepping", "stepping"),
        )
        if key in fields
    )
    return {
        "cpu_model": fields.get("model name") or platform.processor() or platform.machine() or "unknown",
        "cpu_id": identity or platform.machine() or "unknown",
        "cpu_flags": " ".join(flag for flag in NUMERIC_FLAGS if flag in flags) or "unknown",
    }


def gpu_driver() -> str:
    """The NVIDIA kernel driver's version (Linux), else the CUDA driver API version torch reports."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        version = torch._C._cuda_getDriverVersion()  # e.g. 12040 for CUDA 12.4
        return f"CUDA driver API {version // 1000}.{version % 1000 // 10}"
    except (AttributeError, RuntimeError):
        return "unknown"


def _cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        return "unknown"


def _first(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found.group(1) if found else "unknown"
