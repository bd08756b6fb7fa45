"""keep_freed_memory: glibc accepts both settings where there is glibc."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from unit_ablation.runtime.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_accepts_the_settings() -> None:
    # in a child process: the setting lasts for the life of the process
    code = "from unit_ablation.runtime.allocator import keep_freed_memory as k; print(k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_elsewhere_it_declines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
