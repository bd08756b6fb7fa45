"""The warm-start server: imports the jobs' libraries once, then forks a child per job.

`python -m unit_ablation.runtime.warm_server SOCKET OWNER_PID MODULE...` is started by
`warm_start.start_server`; see that module for the protocol's purpose. It listens on SOCKET once
the MODULEs are imported and exits when its owner (the Snakemake process) has gone or on SIGTERM.

A request is 8 bytes of length with the job's stdin, stdout and stderr attached (SCM_RIGHTS), then
JSON of its argv, working directory and environment. The forked child writes `pid N` and, when
the script is done, `exit CODE`; it reads `signal N` lines and sends itself those signals.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import runpy
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import traceback

from unit_ablation.runtime.shared_folder import TRUNK_CACHE_FOLDER, TRUNK_CACHE_VARIABLE
from unit_ablation.runtime.warm_start import CHILD_VARIABLE, SERVER_VARIABLE, STREAMS

ACCEPT_TIMEOUT_S = 1.0  # how often the server checks on its owner and reaps children
REQUEST_TIMEOUT_S = 10.0


def preload(modules: list[str]) -> None:
    """Import the jobs' libraries; matplotlib with the Agg backend, as the report modules use."""
    for name in modules:
        if name.startswith("matplotlib"):
            import matplotlib

            matplotlib.use("Agg")
        importlib.import_module(name)
    importlib.import_module("snakemake.iocontainers")  # what each script's preamble unpickles
    # objects made so far are shared with every child: keep the collector from touching their pages
    gc.freeze()


def serve(path: str, owner: int) -> None:
    """Accept job requests on `path` until the owner process has gone or SIGTERM arrives."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    try:
        while not stopping and os.getppid() == owner:
            ready, _, _ = select.select([listener], [], [], ACCEPT_TIMEOUT_S)
            _reap_children()
            if ready:
                connection, _ = listener.accept()
                _start_job(listener, connection)
    finally:
        listener.close()
        shutil.rmtree(_trunk_cache(path), ignore_errors=True)
        for leftover in (path, os.path.dirname(path)):
            try:
                os.rmdir(leftover) if leftover != path else os.unlink(leftover)
            except OSError:
                pass


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _start_job(listener: socket.socket, connection: socket.socket) -> None:
    fds: list[int] = []
    try:
        connection.settimeout(REQUEST_TIMEOUT_S)
        header, fds, _, _ = socket.recv_fds(connection, 8, len(STREAMS))
        (size,) = struct.unpack("!Q", header)
        request = json.loads(_receive_exactly(connection, size))
        if len(fds) != len(STREAMS):
            raise ValueError(f"expected {len(STREAMS)} streams, got {len(fds)}")
        connection.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except (OSError, ValueError, struct.error):  # json's errors are ValueErrors
        # the job runs in its own process (hand_over returns when no pid comes back)
        pid = -1
    if pid == 0:
        request["env"][TRUNK_CACHE_VARIABLE] = _trunk_cache(listener.getsockname())
        listener.close()
        _run_child(connection, fds, request)  # never returns
    for fd in fds:
        os.close(fd)
    connection.close()


def _trunk_cache(socket_path: str) -> str:
    """The run's folder for shared trunk outputs, beside the server's socket."""
    return os.path.join(os.path.dirname(socket_path), TRUNK_CACHE_FOLDER)


def _receive_exactly(connection: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = connection.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ValueError("request cut short")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _run_child(connection: socket.socket, fds: list[int], request: dict) -> None:
    """In the forked child: become the job (streams, directory, environment, argv), run its script."""
    code = 1
    try:
        for fd, target in zip(fds, STREAMS, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(SERVER_VARIABLE, None)
        os.environ[CHILD_VARIABLE] = "1"
        tempfile.tempdir = None  # TMPDIR may differ per job
        sys.argv = list(request["argv"])
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.reconfigure(line_buffering=stream.isatty())
        connection.sendall(f"pid {os.getpid()}\n".encode())
        threading.Thread(target=_follow_job_process, args=(connection,), daemon=True).start()
        code = _run_script(sys.argv[0])
    except BaseException:  # noqa: BLE001  (the job's stderr is the only place to say why)
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            connection.sendall(f"exit {code}\n".encode())
        finally:
            os._exit(code)


def _run_script(path: str) -> int:
    """Run the script as `python PATH` would; the exit code Python would give."""
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001  (any error ends the job, as in a fresh process)
        traceback.print_exc()
        return 1
    return 0


def _follow_job_process(connection: socket.socket) -> None:
    """Send this child the signals its job process passes on; stop when that process has gone."""
    for line in connection.makefile("rb"):
        words = line.split()
        if len(words) == 2 and words[0] == b"signal":
            os.kill(os.getpid(), int(words[1]))
    # the job process has gone (Snakemake killed it): its outputs will be discarded
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    path, owner, *modules = argv if argv is not None else sys.argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops Snakemake, which stops the server
    preload(modules)
    serve(path, int(owner))


if __name__ == "__main__":
    main()
