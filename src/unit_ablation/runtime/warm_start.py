"""Warm start: a local run's jobs fork from one process that has imported torch and friends already.

Every job of a local run is a fresh `python` process, and importing torch, pandas, scipy and
matplotlib costs it 1-3 s of CPU, more than many jobs compute. At the start of a local run the
Snakefile starts a server (`warm_server`) that imports those libraries once. Each job's script
calls `hand_over()` first: the job process sends its script, working directory, environment and
standard streams to the server, which forks a child to run the script. The job process waits for
the child's exit status and exits with it, so Snakemake sees an ordinary job.

- Only the third-party libraries are imported in the server: the child imports this package
  itself, so a job runs the code on disk, as a fresh process would.
- Signals sent to the job process (Snakemake cancelling it) are passed on to the child, and a child
  whose job process has gone stops itself.
- A job that starts while the server is still importing waits for it (up to READY_WAIT_S).
- When there is no server, it runs another Python, or the job is not a descendant of the run that
  started it (a cluster job), the job simply runs in its own process.
- `UNIT_ABLATION_WARM_START=0` in the environment turns warm starts off. Linux only (`/proc`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# set by start_server for the run's jobs: {"socket": path, "pid": server, "owner": pid, "prefix": sys.prefix}
SERVER_VARIABLE = "UNIT_ABLATION_WARM_SERVER"
# a user's switch: 0, off, false or no turns warm starts off
SWITCH_VARIABLE = "UNIT_ABLATION_WARM_START"
# set in a forked child, for its log and for tests
CHILD_VARIABLE = "UNIT_ABLATION_WARM_CHILD"
# the streams a job passes to its child: stdin, stdout, stderr
STREAMS = (0, 1, 2)
# A job that starts while the server is still importing waits for it rather than import the same
# libraries beside it on the same cores; after this long it runs in its own process.
READY_WAIT_S = 60.0
# the libraries a workflow job imports; torchvision (2 s more) only where the study uses it
DEFAULT_PRELOAD = ("numpy", "torch", "pandas", "scipy.stats", "matplotlib.pyplot")
# BLAS and OpenMP libraries read these when they load, in the server: one thread, as a 1-thread job
# has. Torch jobs set their thread count themselves (workflow.glue.run_stage).
SINGLE_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_server: subprocess.Popen | None = None


def enabled() -> bool:
    """False where the user turned warm starts off, or the platform has no fork and /proc."""
    switched_off = os.environ.get(SWITCH_VARIABLE, "1").strip().lower() in {"0", "off", "false", "no"}
    return not switched_off and hasattr(os, "fork") and Path("/proc/self/stat").exists()


def start_server(src_dir: str | Path, preload: tuple[str, ...] = DEFAULT_PRELOAD) -> bool:
    """Start the run's warm-start server and tell the run's jobs where it listens.

    Call it in the main Snakemake process (the Snakefile's `onstart`). It returns at once: the server
    imports `preload` in the background and listens only when that is done; jobs started before
    then wait for it. Returns False when warm starts are off (see `enabled`).
    """
    global _server
    if not enabled() or _server is not None:
        return False
    # AF_UNIX paths are short (108 bytes), so not under the workflow directory; mode 0700
    folder = tempfile.mkdtemp(prefix="ua-warm-")
    path = os.path.join(folder, "socket")
    env = one_thread_environment(src_dir)
    env.pop(SERVER_VARIABLE, None)
    _server = subprocess.Popen(
        [sys.executable, "-m", "unit_ablation.runtime.warm_server", path, str(os.getpid()), *preload],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    os.environ[SERVER_VARIABLE] = json.dumps(
        {"socket": path, "pid": _server.pid, "owner": os.getpid(), "prefix": sys.prefix}
    )
    return True


def one_thread_environment(src_dir: str | Path) -> dict[str, str]:
    """This process's environment for a helper process (the server, `speed_probe`): this package's
    `src_dir` first on PYTHONPATH, and the BLAS and OpenMP libraries at one thread."""
    python_path = [str(src_dir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
    env.update(dict.fromkeys(SINGLE_THREAD_ENV, "1"))
    return env


def stop_server() -> None:
    """Stop the server `start_server` started (the Snakefile's `onsuccess` and `onerror`)."""
    global _server
    os.environ.pop(SERVER_VARIABLE, None)
    if _server is not None:
        _server.terminate()
        try:
            _server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _server.kill()
        _server = None


def hand_over() -> None:
    """Run this job's script in a child of the run's warm-start server, and exit with its status.

    Call it first in a workflow script, before the heavy imports. It returns, and the script goes
    on in this process, when there is no usable server, and in the forked child itself.
    """
    server = _usable_server()
    if server is None:
        return
    connection = _connect(server["socket"], int(server["pid"]))
    if connection is None:
        return
    with connection:
        _send_request(connection)
        reader = connection.makefile("rb")
        first = reader.readline().split()
        if len(first) != 2 or first[0] != b"pid":
            return  # the server did not fork: run the job here
        child = int(first[1])
        passed = _pass_signals_to(connection)
        status = reader.readline().split()
    if len(status) == 2 and status[0] == b"exit":
        os._exit(int(status[1]))
    if passed:  # the child ended on a signal passed on to it: end as a job process would
        signal.signal(passed[-1], signal.SIG_DFL)
        os.kill(os.getpid(), passed[-1])
    print(f"warm start: the job's process {child} ended without an exit status", file=sys.stderr)
    os._exit(1)


def is_warm_child() -> bool:
    """True in a job process forked by the warm-start server."""
    return os.environ.get(CHILD_VARIABLE) == "1"


def _usable_server() -> dict | None:
    """The run's server, when this process may use it: same Python, and a job of the run that
    started it (not a cluster job that inherited the submitting shell's environment)."""
    if not enabled() or is_warm_child():
        return None
    try:
        server = json.loads(os.environ[SERVER_VARIABLE])
        if server["prefix"] != sys.prefix or not _descends_from(int(server["owner"])):
            return None
    except (KeyError, ValueError, TypeError):
        return None
    return server


def _descends_from(ancestor: int) -> bool:
    pid = os.getppid()
    while pid > 1:
        if pid == ancestor:
            return True
        fields = _stat_fields(pid)
        if fields is None:
            return False
        pid = int(fields[1])  # the parent
    return False


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, parent, ...); None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses


def _connect(path: str, server: int) -> socket.socket | None:
    """A connection to the server; None when it has gone or is not listening within READY_WAIT_S."""
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(path)
            return connection
        except OSError:  # not listening yet, or gone
            connection.close()
        if not os.path.exists(path) and _running(server) and time.monotonic() < deadline:
            time.sleep(0.05)  # still importing
        else:
            return None


def _running(pid: int) -> bool:
    """Whether process `pid` exists and has not ended (a zombie has)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in {"Z", "X"}


def _send_request(connection: socket.socket) -> None:
    request = json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    socket.send_fds(connection, [struct.pack("!Q", len(request))], list(STREAMS))
    connection.sendall(request)


def _pass_signals_to(connection: socket.socket) -> list[int]:
    """Pass the signals that stop a job on to the child; returns the list of those passed on."""
    passed: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        passed.append(signum)
        try:
            connection.sendall(f"signal {signum}\n".encode())
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    return passed
