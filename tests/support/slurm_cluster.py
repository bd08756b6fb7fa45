"""A throwaway single-node SLURM cluster on this machine (Debian packages, run as root).

`start_cluster(folder)` installs Debian's slurmctld, slurmd, slurm-client and munge when they are
missing, starts munged (unless one already answers), writes slurm.conf under `folder`, starts
slurmctld and slurmd on free ports with that file and waits until the node is idle. The default
partition is preemptible: a job of the `urgent` partition that needs the node preempts its jobs
(`PreemptMode=REQUEUE`, `GraceTime` seconds between SIGTERM and SIGKILL). Clients
(sbatch, squeue, scontrol, Snakemake's SLURM plugin) find the cluster through `SLURM_CONF`, which
`SlurmCluster.env` sets. Inside jobs, snakemake-executor-plugin-slurm-jobstep (0.6.1) removes every
SLURM_* variable but a few from the environment of its `srun`, SLURM_CONF included, so srun would
look for /etc/slurm/slurm.conf; `env` therefore also puts first on PATH an `srun` wrapper (in the
cluster folder) that sets SLURM_CONF again. `SlurmCluster.stop()` stops only the daemons this module
started, by PID; a munged that was already running is left alone.

Anything that makes a cluster impossible here (not root, no apt, packages not installable) raises
`SlurmUnavailable` with the reason; daemons that were started but never got the node idle raise
`RuntimeError` with their logs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = [
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "squeue",
    "sinfo",
    "scontrol",
    "munged",
    "munge",
    "unmunge",
]
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN_DIR = Path("/run/munge")
MEMORY_MARGIN_MB = 2048  # left to the system when declaring the node's RealMemory
URGENT_PARTITION = "urgent"  # preempts the default partition's jobs (see write_config)
GRACE_TIME_S = 20  # from a preempted job's SIGTERM to its SIGKILL
REQUEUE_WAIT_S = 10  # cred_expire: how long a requeued job waits before it starts again, and how long
# a job step's credential lasts (srun must launch the step within it, also on a busy machine)
PARTITION_LIMITS = "MaxTime=INFINITE State=UP"


class SlurmUnavailable(RuntimeError):
    """No SLURM cluster can be started on this machine (the message says why)."""


@dataclass
class SlurmCluster:
    """A running test cluster: its folder, config file, node name and the daemons we started."""

    folder: Path
    conf: Path
    node: str
    partition: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    install_seconds: float = 0.0  # apt-get time (0 when the packages were there)
    start_seconds: float = 0.0  # from starting the daemons to the node being idle

    @property
    def bin(self) -> Path:
        """Folder with the `srun` wrapper that restores SLURM_CONF (see the module docstring)."""
        return self.folder / "bin"

    @property
    def env(self) -> dict[str, str]:
        """The current environment plus SLURM_CONF and PATH for this cluster."""
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, squeue, scontrol, ...) against this cluster."""
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        """The tail of every daemon log in the cluster folder (for error messages)."""
        parts = []
        for path in sorted(self.folder.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name} ---\n{text[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons started here (slurmd, slurmctld, munged)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            for partition in (self.partition, URGENT_PARTITION):
                self.run("scancel", "--full", f"--partition={partition}", timeout=15)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()


def _search_path() -> str:
    return os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/bin:/bin"


def _missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name, path=_search_path()) is None]


def binary(name: str) -> str:
    """Absolute path of a SLURM or munge program (daemons live in /usr/sbin, often not on PATH)."""
    path = shutil.which(name, path=_search_path())
    if path is None:
        raise SlurmUnavailable(f"{name} is not installed")
    return path


def ensure_packages() -> float:
    """Install the Debian packages if a binary is missing; return the seconds apt took (0 if none)."""
    if not _missing_binaries():
        return 0.0
    missing = ", ".join(_missing_binaries())
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"SLURM is not installed ({missing} missing) and this is not root")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM is not installed ({missing} missing) and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    start = time.monotonic()
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # stale or missing package lists: update once, then retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {result.stderr.strip()[-500:]}")
    if _missing_binaries():
        raise SlurmUnavailable(f"after installing {PACKAGES}, still missing: {_missing_binaries()}")
    return time.monotonic() - start


def _munge_works() -> bool:
    try:
        credential = subprocess.run([binary("munge"), "-n"], capture_output=True, timeout=10)
        if credential.returncode != 0:
            return False
        decoded = subprocess.run(
            [binary("unmunge")], input=credential.stdout, capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return decoded.returncode == 0


def start_munge(log: Path, timeout: float = 20) -> subprocess.Popen | None:
    """Start munged as user munge unless a munged already answers; return the process we started."""
    if _munge_works():
        return None
    if not MUNGE_KEY.exists():
        subprocess.run(
            [binary("mungekey"), "--create", f"--keyfile={MUNGE_KEY}"], check=True, capture_output=True
        )
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o600)
    MUNGE_RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(MUNGE_RUN_DIR, "munge", "munge")
    # --force: a socket left over by a munged that died is replaced
    with open(log, "w") as output:  # opened here (as root), so munged can write it into our folder
        process = subprocess.Popen(
            [binary("munged"), "--foreground", "--force"],
            user="munge",
            group="munge",
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"munged exited with {process.returncode}: {log.read_text()[-2000:]}")
        if _munge_works():
            return process
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"munged did not answer within {timeout} s: {log.read_text()[-2000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_memory_mb() -> int:
    """Total memory from /proc/meminfo in MB, minus a margin for the system."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(512, int(line.split()[1]) // 1024 - MEMORY_MARGIN_MB)
    raise RuntimeError("no MemTotal in /proc/meminfo")


def write_config(folder: Path, node: str, partition: str = "debug") -> Path:
    """slurm.conf for one node (this machine), everything stored under `folder`; returns its path."""
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(
        f"""\
ClusterName=unitablation
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
SlurmctldLogFile={folder / "slurmctld.log"}
SlurmdLogFile={folder / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={node_memory_mb()} State=UNKNOWN
# Preemption as on a cluster with a preemptible partition: a job in `{URGENT_PARTITION}` (higher
# PriorityTier) that needs the node preempts the jobs of `{partition}`. They get SIGTERM at once,
# SIGKILL after GraceTime seconds, and go back in the queue under the same job ID. A requeued job
# waits cred_expire seconds (default 120) before it starts again.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
AuthInfo=cred_expire={REQUEUE_WAIT_S}
PartitionName={partition} Nodes={node} Default=YES {PARTITION_LIMITS} PriorityTier=1 GraceTime={GRACE_TIME_S}
PartitionName={URGENT_PARTITION} Nodes={node} {PARTITION_LIMITS} PriorityTier=2 PreemptMode=OFF
"""
    )
    return conf


def _write_srun_wrapper(folder: Path, conf: Path) -> None:
    srun = binary("srun")
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "srun"
    wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))} exec {shlex.quote(srun)} "$@"\n')
    wrapper.chmod(0o755)


def start_cluster(folder: Path, timeout: float = 60) -> SlurmCluster:
    """Install if needed, start munged, slurmctld and slurmd, and wait until the node is idle."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("the local SLURM test cluster needs root (apt-get, munged, slurmd)")
    install_seconds = ensure_packages()
    node = socket.gethostname().split(".")[0]
    conf = write_config(folder, node)
    _write_srun_wrapper(folder / "bin", conf)
    cluster = SlurmCluster(folder, conf, node, partition="debug", install_seconds=install_seconds)
    start = time.monotonic()
    try:
        munged = start_munge(folder / "munged.log")
        if munged is not None:
            cluster.processes["munged"] = munged
        for daemon in ("slurmctld", "slurmd"):
            with open(folder / f"{daemon}.stderr.log", "w") as stderr:
                cluster.processes[daemon] = subprocess.Popen(
                    [binary(daemon), "-D", "-f", str(conf)],
                    env=cluster.env,
                    stdout=stderr,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            time.sleep(0.5)
        _wait_until_idle(cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    cluster.start_seconds = time.monotonic() - start
    return cluster


def _wait_until_idle(cluster: SlurmCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{cluster.logs()}")
        result = cluster.run("sinfo", "--noheader", "--Node", "--format=%T", timeout=10)
        state = result.stdout.strip() or result.stderr.strip()
        if result.returncode == 0 and set(state.split()) == {"idle"}:  # a line per partition
            return
        time.sleep(0.5)
    raise RuntimeError(f"the SLURM node was not idle within {timeout} s (sinfo: {state!r})\n{cluster.logs()}")
