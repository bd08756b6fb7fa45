"""Project hygiene: lint, formatting, the params-only rule, consistent pins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import PROJECT_ROOT

BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean():
    result = run(str(BIN / "snakemake"), "--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_snakefmt_is_clean():
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean():
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_script_reads_the_config():
    offenders = [
        p.name for p in (PROJECT_ROOT / "scripts").glob("*.py") if "snakemake.config" in p.read_text()
    ]
    assert not offenders


def test_parse_time_code_imports_no_torch():
    result = run(
        sys.executable,
        "-c",
        "import sys; sys.path.insert(0, 'src'); "
        "import unit_ablation.spec.architecture, unit_ablation.spec.layer_spec, unit_ablation.data.fetch; "
        "print('torch' in sys.modules)",
    )
    assert result.stdout.strip() == "False"


def pins(text: str, separator: str) -> dict[str, str]:
    pattern = re.compile(rf"^\s*-?\s*([A-Za-z0-9_.-]+){separator}([0-9][^\s#]*)", re.MULTILINE)
    return {name.lower(): version for name, version in pattern.findall(text)}


@pytest.mark.parametrize("env", sorted((PROJECT_ROOT / "envs").glob("*.yaml")), ids=lambda p: p.stem)
def test_conda_envs_pin_what_requirements_pin(env):
    # optional extras of the runtime (timm, for `timm:` models) are pinned with the test tools
    required = {
        **pins((PROJECT_ROOT / "requirements-test.txt").read_text(), "=="),
        **pins((PROJECT_ROOT / "requirements.txt").read_text(), "=="),
    }
    conda_names = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
    env_pins = pins(env.read_text(), "=")
    assert "python" in env_pins, f"{env.name}: no packages read"
    for name, version in env_pins.items():
        name = conda_names.get(name, name)
        if name == "python":
            continue
        assert name in required, f"{env.name}: {name} is not pinned in requirements.txt"
        assert required[name] == version, (
            f"{env.name}: {name}={version}, requirements.txt has {required[name]}"
        )
