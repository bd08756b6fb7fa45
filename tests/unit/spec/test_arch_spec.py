"""The torch-free parser of `pretrained.<name>.arch` and of `python:` references."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unit_ablation.spec.arch_spec import ArchSpec, needs_units, parse_arch, parse_python_ref


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("alexnet", ArchSpec("torchvision", "alexnet")),
        ("torchvision:vgg16_bn", ArchSpec("torchvision", "vgg16_bn")),
        ("timm:resnet10t", ArchSpec("timm", "resnet10t")),
        ("timm:vit_base_patch16_224.augreg_in21k", ArchSpec("timm", "vit_base_patch16_224.augreg_in21k")),
        ("python:models/net.py:build", ArchSpec("python", "build", "models/net.py", "build")),
        ("python:C:/nets/net.py:make_net", ArchSpec("python", "make_net", "C:/nets/net.py", "make_net")),
    ],
)
def test_the_three_forms_parse(arch, expected):
    spec = parse_arch(arch)
    assert spec == expected
    assert parse_arch(spec.text) == spec  # the canonical text parses to the same spec
    assert needs_units(arch) is (spec.kind != "torchvision")


@pytest.mark.parametrize(
    ("arch", "reason"),
    [
        ("", "is not an architecture"),
        ("keras:resnet50", "unknown kind 'keras'"),
        ("timm:hf-hub:timm/resnet18", "not a timm model name"),
        ("timm:", "not a timm model name"),
        ("torchvision:", "not a torchvision model name"),
        ("python:models/net.py", "is not PATH.py:CALLABLE"),
        ("python:net.py:", "is not a Python name"),
        ("python:net.txt:build", "does not end in .py"),
        ("python:net.py:2build", "is not a Python name"),
    ],
)
def test_bad_arch_strings_are_refused_with_the_reason_and_the_forms(arch, reason):
    with pytest.raises(ValueError, match=reason) as raised:
        parse_arch(arch)
    assert repr(arch) in str(raised.value) or arch == ""


def test_python_references_split_at_the_last_colon():
    assert parse_python_ref("data/sets.py:test_set") == ("data/sets.py", "test_set")
    with pytest.raises(ValueError, match="data.images.test.python 'sets.py' is not PATH.py:CALLABLE"):
        parse_python_ref("sets.py", "data.images.test.python")


def test_the_parser_imports_no_torch():
    code = "import sys, unit_ablation.spec.arch_spec; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
