"""Warm start: a job process hands its script to the run's server, which forks a child to run it.

The server here preloads only `json`, so it is ready at once; the job is a small script that
reports what its process sees. The workflow's own use is checked on the session's tiny run
(tests/workflow/test_module.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unit_ablation.runtime import shared_folder, warm_start

from support.paths import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not warm_start.enabled(), reason="warm starts need fork and /proc")

SRC = PROJECT_ROOT / "src"
JOB = f"""\
import json, os, sys, time
sys.path.insert(0, {str(SRC)!r})
from unit_ablation.runtime.warm_start import hand_over, is_warm_child

hand_over()
report = {{"warm": is_warm_child(), "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
          "argv": sys.argv, "value": os.environ.get("JOB_VALUE"),
          "trunks": os.environ.get("UNIT_ABLATION_TRUNK_CACHE")}}
with open("report.json", "w") as file:
    json.dump(report, file)
print("to stdout", flush=True)
print("to stderr", file=sys.stderr)
action = os.environ.get("JOB_ACTION", "")
if action == "raise":
    raise ValueError("the job's own error")
if action == "sleep":
    time.sleep(60)
if action == "cache":  # what a job sharing trunk outputs does
    os.makedirs(report["trunks"], exist_ok=True)
    open(os.path.join(report["trunks"], "a-trunk.pt"), "w").close()
sys.exit(int(os.environ.get("JOB_EXIT", "0")))
"""


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    return warm_start._running(pid)  # exists and is no zombie


@pytest.fixture
def server(monkeypatch):
    """A server owned by this test process, ready to fork jobs."""
    monkeypatch.delenv(warm_start.SWITCH_VARIABLE, raising=False)
    assert warm_start.start_server(SRC, ("json",))
    socket_path = json.loads(os.environ[warm_start.SERVER_VARIABLE])["socket"]
    wait_for(lambda: os.path.exists(socket_path))
    yield warm_start._server
    warm_start.stop_server()
    assert not os.path.exists(socket_path), "the server removes its socket"


@pytest.fixture
def job(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)

    def start(**env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "job.py", "an-argument"],
            cwd=tmp_path,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return start


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())


def test_the_job_runs_in_a_child_of_the_server(server, job, tmp_path):
    process = job(JOB_VALUE="passed", JOB_EXIT="3")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 3
    seen = report(tmp_path)
    assert seen["warm"] and seen["ppid"] == server.pid and seen["pid"] != process.pid
    assert seen["cwd"] == str(tmp_path) and seen["argv"] == ["job.py", "an-argument"]
    assert seen["value"] == "passed"
    assert stdout == "to stdout\n" and stderr == "to stderr\n"


def test_jobs_share_a_trunk_folder_that_the_server_removes_when_it_stops(server, job, tmp_path):
    socket_path = json.loads(os.environ[warm_start.SERVER_VARIABLE])["socket"]
    process = job(JOB_ACTION="cache")
    process.communicate(timeout=60)
    assert process.returncode == 0
    folder = Path(report(tmp_path)["trunks"])
    assert folder == Path(socket_path).parent / shared_folder.TRUNK_CACHE_FOLDER
    assert (folder / "a-trunk.pt").exists()
    warm_start.stop_server()
    assert not folder.exists() and not folder.parent.exists()


def test_a_job_in_its_own_process_has_no_trunk_folder(job, tmp_path, monkeypatch):
    monkeypatch.delenv(warm_start.SERVER_VARIABLE, raising=False)
    monkeypatch.delenv(shared_folder.TRUNK_CACHE_VARIABLE, raising=False)
    process = job()
    process.communicate(timeout=60)
    assert process.returncode == 0
    assert report(tmp_path)["trunks"] is None


def test_an_error_in_the_job_fails_it_with_its_traceback(server, job, tmp_path):
    process = job(JOB_ACTION="raise")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert report(tmp_path)["warm"]
    assert "ValueError: the job's own error" in stderr and "Traceback" in stderr


@pytest.mark.parametrize("switch", ["0", "off"])
def test_the_user_can_turn_it_off(server, job, tmp_path, switch):
    process = job(**{warm_start.SWITCH_VARIABLE: switch})
    process.communicate(timeout=60)
    assert process.returncode == 0
    seen = report(tmp_path)
    assert not seen["warm"] and seen["pid"] == process.pid


def test_without_a_server_the_job_runs_in_its_own_process(job, tmp_path, monkeypatch):
    monkeypatch.delenv(warm_start.SERVER_VARIABLE, raising=False)
    process = job()
    process.communicate(timeout=60)
    assert process.returncode == 0 and not report(tmp_path)["warm"]


def test_a_server_that_has_gone_leaves_the_job_in_its_own_process(job, tmp_path):
    ended = subprocess.run(["true"]).returncode == 0 and os.getpid() + 10**6  # no such process
    missing = {
        "socket": str(tmp_path / "no-socket"),
        "pid": ended,
        "owner": os.getpid(),
        "prefix": sys.prefix,
    }
    process = job(**{warm_start.SERVER_VARIABLE: json.dumps(missing)})
    process.communicate(timeout=60)
    assert process.returncode == 0 and not report(tmp_path)["warm"]


def test_a_job_waits_for_a_server_that_is_still_importing(job, tmp_path, monkeypatch):
    """Rather than import the same libraries beside the server, on the same cores."""
    slow = tmp_path / "modules"
    slow.mkdir()
    (slow / "slow_library.py").write_text("import time\ntime.sleep(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(slow))
    monkeypatch.delenv(warm_start.SWITCH_VARIABLE, raising=False)
    assert warm_start.start_server(SRC, ("slow_library",))
    try:
        socket_path = json.loads(os.environ[warm_start.SERVER_VARIABLE])["socket"]
        assert not os.path.exists(socket_path)
        process = job()
        process.communicate(timeout=60)
        assert process.returncode == 0 and report(tmp_path)["warm"]
    finally:
        warm_start.stop_server()


def test_other_pythons_and_processes_of_other_runs_do_not_use_it(server, job, tmp_path):
    """A cluster job inherits the submitting shell's environment but is no descendant of the run;
    a conda environment's Python has another prefix."""
    listening = json.loads(os.environ[warm_start.SERVER_VARIABLE])
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        for changed in ({"owner": stranger.pid}, {"prefix": "/another/python"}):
            process = job(**{warm_start.SERVER_VARIABLE: json.dumps({**listening, **changed})})
            process.communicate(timeout=60)
            assert process.returncode == 0 and not report(tmp_path)["warm"]
    finally:
        stranger.kill()
        stranger.wait()


def test_a_terminated_job_process_ends_its_child_and_itself_by_the_signal(server, job, tmp_path):
    process = job(JOB_ACTION="sleep")
    wait_for(lambda: (tmp_path / "report.json").exists())
    child = report(tmp_path)["pid"]
    assert alive(child)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM
    wait_for(lambda: not alive(child), timeout=10)


def test_a_killed_job_process_ends_its_child(server, job, tmp_path):
    """SIGKILL cannot be passed on: the child sees its job process go and stops itself."""
    process = job(JOB_ACTION="sleep")
    wait_for(lambda: (tmp_path / "report.json").exists())
    child = report(tmp_path)["pid"]
    process.kill()
    process.communicate(timeout=60)
    wait_for(lambda: not alive(child), timeout=10)


def test_the_server_stops_when_its_owner_has_gone(tmp_path):
    owner = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, os; sys.path.insert(0, sys.argv[1])\n"
            "from unit_ablation.runtime import warm_start\n"
            "warm_start.start_server(sys.argv[1], ('json',))\n"
            "print(warm_start._server.pid, flush=True)\n"
            "os._exit(0)  # gone without stopping it",
            str(SRC),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={key: value for key, value in os.environ.items() if key != warm_start.SWITCH_VARIABLE},
    )
    assert owner.returncode == 0, owner.stderr
    server_pid = int(owner.stdout)
    wait_for(lambda: not alive(server_pid), timeout=15)
