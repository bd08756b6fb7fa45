"""Untrusted checkpoints: pickled code is refused before it runs; no shell command takes config text.

The fixtures are checkpoints whose payload, when unpickled without weights_only, creates a marker
file. Every loader must refuse them with an error naming the file, and the marker must not exist.
"""

from __future__ import annotations

import ast
import io
import os
import pathlib
import re
import shlex
import tokenize
from pathlib import Path

import pytest
import torch

from unit_ablation.files.safe_load import UnsafeCheckpointError
from unit_ablation.files.torch_files import load_torch_file
from unit_ablation.models.checkpoint import load_model, save_checkpoint
from unit_ablation.models.fashion_alexnet import build_model
from unit_ablation.models.torchvision_classifier import TorchvisionClassifier, load_weights
from unit_ablation.stages.extract import extract_to_file
from unit_ablation.stages.prepare_model import prepare_pretrained_to_file

from support.paths import PROJECT_ROOT


class TouchOnUnpickle:
    """Unpickling this calls pathlib.Path.touch(marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class ShellOnUnpickle:
    """Unpickling this runs `touch marker` through os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


PAYLOADS = {"path_touch": TouchOnUnpickle, "os_system": ShellOnUnpickle}
FORMATS = {"zip": True, "legacy": False}  # torch.save's zip format, and the pre-1.6 one of Places365 files


def save(payload, path: Path, zip_format: bool, protocol: int = 2) -> Path:
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format, pickle_protocol=protocol)
    return path


def assert_refused(error: pytest.ExceptionInfo, path: Path, marker: Path) -> None:
    message = str(error.value)
    assert str(path) in message
    assert "refused as unsafe" in message and "truncated" not in message
    assert "carries pickled code or objects" in message and "weights_only=True" in message
    assert "weights_only=False" not in message  # torch's own advice is not passed on for untrusted files
    assert not marker.exists(), "the pickled callable ran"


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_fixture_payload_really_runs_when_unpickled_unsafely(tmp_path, payload, fmt):
    """Without weights_only the fixture creates its marker: so the refusal tests below can fail."""
    marker = tmp_path / "marker"
    path = save({"x": PAYLOADS[payload](marker)}, tmp_path / "evil.pt", FORMATS[fmt])
    torch.load(path, weights_only=False)  # this test's own file, loaded unsafely on purpose
    assert marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_workflow_checkpoint_with_pickled_code_is_refused(tmp_path, payload, fmt):
    marker = tmp_path / "marker"
    model = build_model(width=0.25)
    save_checkpoint(model, tmp_path / "good.pt", {})
    good = torch.load(tmp_path / "good.pt", weights_only=True)
    path = save({**good, "metadata_json": PAYLOADS[payload](marker)}, tmp_path / "evil.pt", FORMATS[fmt])
    with pytest.raises(UnsafeCheckpointError) as error:
        load_model(path)
    assert_refused(error, path, marker)
    assert isinstance(error.value, ValueError)


def test_extract_refuses_the_checkpoint_and_writes_nothing(tmp_path, idx_folder):
    from unit_ablation.data.fashion_mnist import prepare_fashion_mnist

    dataset = tmp_path / "data.npz"
    prepare_fashion_mnist(idx_folder, dataset, heldout_size=50, seed=0)
    marker = tmp_path / "marker"
    path = save({"model_config": TouchOnUnpickle(marker), "state_dict": {}}, tmp_path / "evil.pt", True)
    output = tmp_path / "out" / "conv5.npz"
    with pytest.raises(UnsafeCheckpointError) as error:
        extract_to_file(path, dataset, output, "conv5", "heldout")
    assert_refused(error, path, marker)
    assert not output.exists()
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


# torch.save's default, and two that add opcodes (FRAME, STACK_GLOBAL) torch's loader refuses
PROTOCOLS = [2, 4, 5]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_payload_in_any_pickle_protocol_is_refused_as_unsafe(tmp_path, protocol, fmt):
    """Whatever the protocol, the refusal says unsafe and names the payload's callable."""
    marker = tmp_path / "marker"
    payload = {"weight": torch.zeros(2), "x": TouchOnUnpickle(marker)}
    path = save(payload, tmp_path / "evil.pt", FORMATS[fmt], protocol)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_torch_file(path)
    assert_refused(error, path, marker)
    message = str(error.value)
    assert "pathlib.Path.touch" in message or "getattr" in message  # the global that would have run
    assert ("protocol" in message) == (protocol > 2)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_raw_pickle_payload_is_refused_as_unsafe(tmp_path, protocol):
    """A plain pickle file (not torch.save's layout) with a payload: refused as unsafe, not 'corrupt'."""
    import pickle

    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": ShellOnUnpickle(marker)}, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError) as error:
        load_torch_file(path)
    assert_refused(error, path, marker)
    assert "system" in str(error.value)  # os.system (posix.system), the callable of the payload


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [4, 5])
def test_plain_weights_in_a_protocol_torch_cannot_check_are_refused_as_unsafe(tmp_path, protocol):
    """No payload, but torch's loader cannot check protocol 4 and 5 pickles: refused, and said why."""
    path = save({"weight": torch.zeros(2)}, tmp_path / "plain.pt", True, protocol)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_torch_file(path)
    message = str(error.value)
    assert str(path) in message and "refused as unsafe" in message
    assert f"pickle protocol {protocol}" in message and "FRAME" in message
    assert "carries pickled code" not in message and "truncated" not in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_checkpoint_is_still_reported_as_truncated(tmp_path, fmt):
    path = save({"weight": torch.arange(1000.0)}, tmp_path / "w.pt", FORMATS[fmt])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(Exception) as error:
        load_torch_file(path)
    assert not isinstance(error.value, UnsafeCheckpointError)
    assert str(path) in str(error.value) and "truncated or corrupt" in str(error.value)


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return TorchvisionClassifier("resnet18", 10).net.state_dict()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layout", ["state_dict", "places365"])
def test_weights_file_with_pickled_code_is_refused(tmp_path, resnet_state, payload, fmt, layout):
    marker = tmp_path / "marker"
    evil = PAYLOADS[payload](marker)
    if layout == "state_dict":  # a plain state_dict with one entry that is not a tensor
        content, path = {**resnet_state, "fc.extra": evil}, tmp_path / "resnet18.pth"
    else:  # the Places365 .pth.tar layout: epoch, arch, DataParallel-prefixed state_dict
        state = {f"module.{key}": value for key, value in resnet_state.items()}
        content, path = (
            {"epoch": 90, "arch": evil, "state_dict": state},
            tmp_path / "resnet18_places365.pth.tar",
        )
    save(content, path, FORMATS[fmt])
    model = TorchvisionClassifier("resnet18", 10)
    before = {key: value.clone() for key, value in model.net.state_dict().items()}
    with pytest.raises(UnsafeCheckpointError) as error:
        load_weights(model, path)
    assert_refused(error, path, marker)
    assert all(torch.equal(before[key], value) for key, value in model.net.state_dict().items())


def test_prepare_model_refuses_the_weights_and_writes_nothing(tmp_path, idx_folder, resnet_state):
    from unit_ablation.data.fashion_mnist import prepare_fashion_mnist

    dataset = tmp_path / "data.npz"
    prepare_fashion_mnist(idx_folder, dataset, heldout_size=50, seed=0)
    marker = tmp_path / "marker"
    path = save({"state_dict": {**resnet_state, "x": ShellOnUnpickle(marker)}}, tmp_path / "w.pth.tar", False)
    checkpoint, metadata = tmp_path / "out" / "m.pt", tmp_path / "out" / "m.json"
    with pytest.raises(UnsafeCheckpointError) as error:
        prepare_pretrained_to_file(
            "m", "resnet18", 10, path, "test", dataset, checkpoint, metadata, device="cpu"
        )
    assert_refused(error, path, marker)
    assert not checkpoint.exists() and not metadata.exists()
    assert not checkpoint.parent.exists() or list(checkpoint.parent.iterdir()) == []


def test_plain_tensors_still_load(tmp_path, resnet_state):
    """The refusal is of pickled objects, not of checkpoints: a clean file of tensors loads."""
    path = save(
        {"state_dict": resnet_state, "epoch": 3, "arch": "resnet18"}, tmp_path / "clean.pth.tar", False
    )
    assert set(load_torch_file(path)["state_dict"]) == set(resnet_state)
    load_weights(TorchvisionClassifier("resnet18", 10), path)


# --------------------------------------------------------------------------- source checks


def _python_sources() -> list[Path]:
    files = sorted((PROJECT_ROOT / "src").rglob("*.py")) + sorted((PROJECT_ROOT / "scripts").glob("*.py"))
    assert len(files) > 20, "the source tree was not found"
    return files


def _is_torch_load(node: ast.Call) -> bool:
    func = node.func
    return isinstance(func, ast.Attribute) and func.attr == "load" and ast.unparse(func.value) == "torch"


def _torch_load_tokens(text: str) -> int:
    """How often the code (strings and comments left out) names torch.load."""
    names = [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type in (tokenize.NAME, tokenize.OP)
    ]
    return sum(names[i : i + 3] == ["torch", ".", "load"] for i in range(len(names)))


def test_every_torch_load_uses_weights_only():
    found = []
    for path in _python_sources():
        text = path.read_text()
        tree = ast.parse(text)
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and _is_torch_load(node)]
        for call in calls:
            keywords = {kw.arg: kw.value for kw in call.keywords}
            value = keywords.get("weights_only")
            assert isinstance(value, ast.Constant) and value.value is True, (
                f"{path.relative_to(PROJECT_ROOT)}:{call.lineno}: torch.load without weights_only=True"
            )
            found.append(f"{path.name}:{call.lineno}")
        # every `torch.load` in the code (not in strings or comments) is one of the calls checked
        assert _torch_load_tokens(text) == len(calls), f"{path}: torch.load used other than as a call"
        assert not re.search(r"from\s+torch(\.serialization)?\s+import\s+[^\n]*\bload\b", text), path
        assert "torch.serialization.load" not in text, path
        assert not re.search(r"\bpickle\.loads?\(|\bdill\b|\bjoblib\.load\(", text), path
    assert found, "no torch.load found at all: the check looks in the wrong place"


def test_every_np_load_refuses_pickles():
    for path in _python_sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
                keywords = {kw.arg: kw.value for kw in node.keywords}
                value = keywords.get("allow_pickle")
                assert isinstance(value, ast.Constant) and value.value is False, (
                    f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}: np.load without allow_pickle=False"
                )


def test_no_subprocess_goes_through_a_shell():
    for path in _python_sources():
        text = path.read_text()
        assert not re.search(r"shell\s*=\s*True", text), f"{path}: subprocess with shell=True"
        assert not re.search(r"\bos\.(system|popen)\(", text), f"{path}: os.system / os.popen"


# placeholders that carry config text into a command: params, config, wildcards (from config names)
_PLACEHOLDER = re.compile(r"(?<!\{)\{(\s*(?:params|config|wildcards)\b[^{}]*)\}(?!\})")


def unquoted_shell_placeholders(text: str, name: str = "<rules>") -> list[str]:
    """`{params...}`, `{config...}` and `{wildcards...}` in `shell:` directives or shell() calls
    of a Snakemake file that are not quoted with `:q`."""
    problems = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"(\s*)shell\s*:(.*)$", line)
        if match:
            indent, body = len(match.group(1)), [match.group(2)]
            for following in lines[number + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                body.append(following)
        elif re.search(r"\bshell\s*\(", line):
            body = [line[line.index("shell") :]]
            depth = body[0].count("(") - body[0].count(")")
            for following in lines[number + 1 :]:
                if depth <= 0:
                    break
                body.append(following)
                depth += following.count("(") - following.count(")")
        else:
            continue
        for placeholder in _PLACEHOLDER.findall("\n".join(body)):
            if not placeholder.rstrip().endswith(":q"):
                problems.append(
                    f"{name}:{number + 1}: {{{placeholder}}} in a shell command is not quoted (:q)"
                )
    return problems


def test_the_shell_checker_finds_unquoted_config():
    """The checker itself: it flags unquoted placeholders and accepts quoted ones."""
    bad = 'rule a:\n    params:\n        x=1,\n    shell:\n        "tool --name {params.x} {output}"\n'
    assert len(unquoted_shell_placeholders(bad)) == 1
    assert len(unquoted_shell_placeholders('rule b:\n    shell: "echo {config[name]}"\n')) == 1
    multi = 'rule c:\n    shell:\n        """\n        a {output}\n        b {wildcards.model}\n        """\n'
    assert len(unquoted_shell_placeholders(multi)) == 1
    assert len(unquoted_shell_placeholders('    run:\n        shell("x {params.y}")\n')) == 1
    assert (
        unquoted_shell_placeholders('rule d:\n    shell: "tool {params.x:q} {config[a]:q} {{literal}}"\n')
        == []
    )
    assert unquoted_shell_placeholders('rule e:\n    script: "../scripts/x.py"\n') == []


def test_no_shell_directive_puts_config_text_into_a_command_unquoted():
    files = [PROJECT_ROOT / "Snakefile", *sorted((PROJECT_ROOT / "rules").glob("*.smk"))]
    assert len(files) > 5, "the rule files were not found"
    problems = []
    for path in files:
        problems += unquoted_shell_placeholders(path.read_text(), str(path.relative_to(PROJECT_ROOT)))
    assert problems == []
