"""The machine record of the metadata: CPU identity and numeric features, torch's build, GPU."""

from __future__ import annotations

import torch

from unit_ablation.report.summary import machine_line, machine_lines
from unit_ablation.runtime.machine import cpu_description, machine_description

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
stepping\t: 8
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 hypervisor

processor\t: 1
model name\t: another block, not read
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm sve
CPU implementer\t: 0x41
"""


def test_cpu_description_reads_the_first_processor_and_its_numeric_flags():
    intel = cpu_description(INTEL)
    assert intel == {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "cpu_id": "GenuineIntel family 6 model 143 stepping 8",
        "cpu_flags": "sse4_2 avx avx2 fma avx512f avx512_bf16 amx_tile amx_bf16",
    }
    arm = cpu_description(ARM)
    assert arm["cpu_flags"] == "asimd sve"
    assert arm["cpu_model"] and arm["cpu_id"]  # platform's names where /proc/cpuinfo has none


def test_machine_description_of_this_machine():
    found = machine_description("cpu")
    assert found["torch_build"].startswith(torch.__version__)
    assert found["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert all(isinstance(value, str) and value for value in found.values())
    assert not any(key.startswith("gpu") for key in found)  # a CPU job records no GPU
    if torch.cuda.is_available():
        gpu = machine_description("cuda")
        assert gpu["gpu_model"] == torch.cuda.get_device_name(0) and gpu["gpu_driver"] != "unknown"


def test_summary_lines_group_models_by_machine():
    a = {**cpu_description(INTEL), "torch_build": "2.14.1", "blas": "mkl", "mkl": "2024.2", "onednn": "v3.12"}
    b = {**a, "cpu_model": "AMD EPYC 9654", "mkl": "unknown"}
    lines = machine_lines(
        [
            {"model": "m0", "machine": a},
            {"model": "m1", "machine": b},
            {"model": "m2", "machine": a},
            {"model": "p"},
        ]
    )
    assert len(lines) == 3
    assert lines[0].startswith("Intel(R) Xeon(R) Platinum 8480+ (GenuineIntel family 6 model 143")
    assert lines[0].endswith("2 model(s), m0, m2") and "BLAS mkl 2024.2, oneDNN v3.12" in lines[0]
    assert "AMD EPYC 9654" in lines[1] and "BLAS mkl," in lines[1]
    assert lines[2] == "not recorded (older metadata): 1 model(s), p"
    assert "GPU Tesla (driver 550.54, CUDA 12.4)" in machine_line(
        {**a, "gpu_model": "Tesla", "gpu_driver": "550.54", "cuda": "12.4"}
    )
