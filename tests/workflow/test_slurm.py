"""SLURM: the cluster profile's sbatch calls (no cluster needed) and real runs on a local test cluster.

The first tests load profiles/slurm the way `snakemake --workflow-profile profiles/slurm` does and
build sbatch calls with snakemake-executor-plugin-slurm's own functions. The integration tests
start a one-node SLURM cluster on this machine (tests/support/slurm_cluster.py: root and Debian packages
needed, skipped otherwise) and run the workflow through it with profiles/slurm-test: once as is,
once with a job that fails once, and once with running ablate jobs requeued, signalled and
preempted by SLURM.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from snakemake.cli import parse_args
from snakemake_executor_plugin_slurm import Executor
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

from support.paths import TINY_CONFIG
from support.slurm_cluster import URGENT_PARTITION, SlurmCluster, SlurmUnavailable, start_cluster
from support.workflow_runs import PROJECT_ROOT, SNAKEMAKE, scheduled_jobs

CLUSTER_PROFILE = PROJECT_ROOT / "profiles" / "slurm"
TEST_PROFILE = PROJECT_ROOT / "profiles" / "slurm-test"
GPU_RULES = ("ablate", "cumulative", "extract", "prepare_model")


def load_profile(profile: Path) -> argparse.Namespace:
    """Snakemake's own parse of `snakemake --workflow-profile <profile>` for this workflow."""
    _, args = parse_args(["--snakefile", str(PROJECT_ROOT / "Snakefile"), "--workflow-profile", str(profile)])
    return args


def rule_resources(args: argparse.Namespace, rule: str, attempt: int, threads: int = 1) -> dict:
    """A rule's resources from a profile's default-resources and set-resources at one attempt."""
    merged = {**dict(args.default_resources.items()), **(args.set_resources or {}).get(rule, {})}
    values = {}
    for name, resource in merged.items():
        if resource.is_evaluable():
            resource = resource.evaluate(
                wildcards={}, input=[], attempt=attempt, threads=threads, rulename=rule, async_run=None
            )
        values[name] = resource.value
    return values


class JobResources(dict):
    """Resources with attribute access, as the plugin reads them (`job.resources.runtime`)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error


@dataclass
class FakeJob:
    """The parts of a Snakemake job that the plugin's command builders read."""

    name: str
    resources: JobResources
    threads: int

    def is_group(self) -> bool:
        return False


def sbatch_command(args: argparse.Namespace, rule: str, attempt: int) -> str:
    """The sbatch call the SLURM plugin builds for one job of `rule` under the profile `args`."""
    config_threads = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())["threads"]
    threads = config_threads.get({"cumulative": "ablate"}.get(rule, rule), 1)  # as the rules read them
    job = FakeJob(rule, JobResources(rule_resources(args, rule, attempt, threads)), threads)
    settings = ExecutorPluginRegistry().get_plugin("slurm").get_settings(args)
    # the plugin's partition logic; a preset empty fallback keeps it from asking sinfo
    executor = SimpleNamespace(_partitions=None, _fallback_partition="", logger=None)
    params = {
        "run_uuid": "run",
        "slurm_logfile": Path("slurm.log"),
        "comment_str": f"rule_{rule}",
        "account": "",
        "partition": Executor.get_partition_arg(executor, job),
        "workdir": "/work",
    }
    return get_submit_command(job, params, settings=settings) + set_gres_string(job)


def option(command: str, *names: str) -> str | None:
    """The value of the first of `names` (e.g. -t / --time) in an sbatch command, else None."""
    for name in names:
        match = re.search(rf"(?:^|\s){re.escape(name)}[=\s]'?([^'\s]+)'?", command)
        if match:
            return match.group(1)
    return None


@pytest.mark.parametrize("rule", GPU_RULES)
def test_cluster_profile_gives_gpu_rules_a_gpu_time_memory_and_partition(rule):
    args = load_profile(CLUSTER_PROFILE)
    assert args.executor == "slurm"
    resources = rule_resources(args, rule, attempt=1)
    first, second = sbatch_command(args, rule, attempt=1), sbatch_command(args, rule, attempt=2)
    assert "--gpus=1" in first.split(), first
    assert option(first, "-p", "--partition") == resources["slurm_partition"]
    times = [int(option(command, "-t", "--time")) for command in (first, second)]
    memory = [int(option(command, "--mem")) for command in (first, second)]
    assert (times[0], memory[0]) == (resources["runtime"], resources["mem_mb"])  # minutes, MB
    assert times[1] > times[0] and memory[1] > memory[0], "a retry must get more time and memory"
    assert "--cpus-per-task=" in first


def test_cluster_profile_cpu_rules_ask_for_no_gpu_and_settings_are_the_plugins():
    args = load_profile(CLUSTER_PROFILE)
    command = sbatch_command(args, "train", attempt=1)
    assert "--gpus" not in command and option(command, "-p", "--partition")
    assert option(command, "-t", "--time") and option(command, "--mem")
    settings = ExecutorPluginRegistry().get_plugin("slurm").get_settings(args)
    assert settings.array_jobs == "ablate" and settings.status_command == "sacct"
    assert args.retries >= 1 and args.jobs >= 1


@pytest.mark.parametrize("profile", [CLUSTER_PROFILE, TEST_PROFILE], ids=["slurm", "slurm-test"])
def test_cluster_profiles_rerun_jobs_like_the_default_profile(profile):
    """A workflow profile replaces profiles/default, so the SLURM ones repeat its rerun triggers."""
    defaults = load_profile(PROJECT_ROOT / "profiles" / "default")
    assert load_profile(profile).rerun_triggers == defaults.rerun_triggers


def dry_run_resources(output: str) -> dict[str, list[str]]:
    """Rule -> the `resources:` lines of its jobs in a dry run's output."""
    found: dict[str, list[str]] = {}
    rule = None
    for line in output.splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            rule = line[5:-1]
        elif line.strip().startswith("resources:") and rule:
            found.setdefault(rule, []).append(line.strip())
    return found


def test_dry_run_with_the_cluster_profile_needs_no_cluster(tmp_path):
    """Every key of profiles/slurm is accepted, with no SLURM command on PATH; jobs get its resources."""
    shutil.copy(TINY_CONFIG, tmp_path / "config.yaml")
    bin_dir = tmp_path / "bin"  # only `which`, which the plugin calls to look for sacct/squeue
    bin_dir.mkdir()
    (bin_dir / "which").symlink_to(shutil.which("which"))
    command = [SNAKEMAKE, "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(tmp_path)]
    command += [
        "--configfile",
        str(tmp_path / "config.yaml"),
        "--workflow-profile",
        str(CLUSTER_PROFILE),
        "-n",
    ]
    env = {"PATH": f"{Path(sys.executable).parent}:{bin_dir}", "HOME": str(tmp_path)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    resources = dry_run_resources(output)
    args = load_profile(CLUSTER_PROFILE)
    fmnist_gpu_rules = ("ablate", "cumulative", "extract")  # prepare_model: pretrained models only
    for rule in (*fmnist_gpu_rules, "train", "gather"):
        expected = rule_resources(args, rule, attempt=1)
        assert resources[rule], f"no {rule} job in the dry run"
        for line in resources[rule]:
            items = dict(item.split("=", 1) for item in line.removeprefix("resources: ").split(", "))
            for name in ("runtime", "mem_mb", "slurm_partition"):
                assert items[name] == str(expected[name]), (rule, name, line)
            assert items.get("gpu", "0") == str(expected.get("gpu", 0)), (rule, line)
    with_gpu = {rule for rule in fmnist_gpu_rules if "gpu=1" in " ".join(resources[rule])}
    assert with_gpu == set(fmnist_gpu_rules)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A running one-node SLURM cluster (skipped with the reason when this machine cannot run one)."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as reason:
        pytest.skip(f"no local SLURM test cluster: {reason}")
    print(f"SLURM test cluster: apt {cluster.install_seconds:.1f} s, up in {cluster.start_seconds:.1f} s")
    yield cluster
    cluster.stop()


def slurm_snakemake(cluster: SlurmCluster, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir` through the test cluster with profiles/slurm-test."""
    command = [SNAKEMAKE, "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(workdir / "config.yaml"), "--workflow-profile", str(TEST_PROFILE), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=cluster.env)


def small_config(path: Path, chunk_size: int = 16, **ablation: int) -> None:
    """The tiny config cut to one model, one layer (2 ablation chunks), no rotations, no cumulative."""
    config = yaml.safe_load((TINY_CONFIG).read_text())
    config["variants"] = {"baseline": config["variants"]["baseline"]}
    config["analysis"].update(layers=["conv5"], rotation_seeds=[])
    config["ablation"].update(chunk_size=chunk_size, **ablation)  # conv5 has 32 units at width 0.5
    config["correlation"].update(resamples=20, permutations=20)
    config["cumulative"]["layers"] = []
    path.write_text(yaml.safe_dump(config))


def minutes(limit: str) -> int:
    """A SLURM time limit ([D-]HH:MM:SS) in whole minutes."""
    days, _, clock = limit.rpartition("-")
    hours, mins, _ = (int(part) for part in clock.split(":"))
    return int(days or 0) * 1440 + hours * 60 + mins


def job_fields(cluster: SlurmCluster, jobid: str) -> list[dict[str, str]]:
    """`scontrol show job` as one dict per record (an array job has one per task)."""
    result = cluster.run("scontrol", "--oneliner", "show", "job", jobid)
    assert result.returncode == 0, f"the scheduler does not know job {jobid}: {result.stderr}"
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in result.stdout.splitlines() if line.strip()]


# Every computing stage, through to the summary. The figures are jobs with the default resources
# like `correlate` here; they run in the tiny run, and here they would add a third to the jobs.
SLURM_TARGET = "results/summary.md"


@pytest.mark.integration
def test_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    small_config(tmp_path / "config.yaml")
    dry = slurm_snakemake(slurm_cluster, tmp_path, SLURM_TARGET, "-n", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-3000:]
    rules = set(scheduled_jobs(dry.stdout + dry.stderr)) - {"all"}
    assert {"train", "extract", "attributes", "ablate", "gather", "summarize"} <= rules
    start = time.monotonic()
    result = slurm_snakemake(slurm_cluster, tmp_path, SLURM_TARGET)
    print(f"workflow through SLURM: {time.monotonic() - start:.0f} s")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert (tmp_path / "results" / "summary.md").is_file()
    assert len(list((tmp_path / "results").glob("*/ablation/chunks/conv5/*.npz"))) == 2

    profile = load_profile(TEST_PROFILE)
    single = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", output)
    arrays = re.findall(r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)", output)
    assert single and arrays, output[-3000:]
    seen_rules = set()
    for jobid, log in single:
        assert Path(log).is_file(), f"no SLURM log {log}"
        (record,) = job_fields(slurm_cluster, jobid)
        rule = record["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        resources = rule_resources(profile, rule, attempt=1)
        assert record["JobState"] == "COMPLETED", record
        assert minutes(record["TimeLimit"]) == resources["runtime"], (rule, record["TimeLimit"])
        assert record["MinMemoryNode"] == f"{resources['mem_mb']}M", (rule, record["MinMemoryNode"])
        seen_rules.add(rule)
    array_rules = set()
    for members, jobid in arrays:
        tasks = job_fields(slurm_cluster, jobid)
        assert len(tasks) == len(members.split(",")), tasks
        for task in tasks:
            rule = task["Comment"].removeprefix("rule_").split("_wildcards_")[0]
            resources = rule_resources(profile, rule, attempt=1)
            assert task["JobState"] == "COMPLETED" and task["ArrayJobId"] == jobid, task
            assert minutes(task["TimeLimit"]) == resources["runtime"], (rule, task["TimeLimit"])
            # the plugin adds a MB or so for the array's encoded job list
            assert int(task["MinMemoryNode"].removesuffix("M")) >= resources["mem_mb"], task
            log = (
                tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}" / f"{jobid}_{task['ArrayTaskId']}.log"
            )
            assert log.is_file(), f"no SLURM log {log}"
            array_rules.add(rule)
    assert array_rules == {"ablate"}, "ablation chunks go out as one job array (slurm-array-jobs)"
    assert seen_rules | array_rules == rules, "every rule's jobs went through the scheduler"


@pytest.mark.integration
def test_retry_gets_the_grown_resources_from_the_scheduler(slurm_cluster, tmp_path):
    """A job that fails once is resubmitted with the attempt-2 values of the profile's expressions."""
    (tmp_path / "Snakefile").write_text(
        "rule flaky:\n"
        '    output: "done.txt"\n'
        '    shell: "test -e failed_once || {{ touch failed_once; exit 1; }}; touch {output}"\n'
    )
    profile = yaml.safe_load((TEST_PROFILE / "profile.yaml").read_text())
    profile["retries"] = 1
    profile["set-resources"] = {"flaky": {"runtime": "2 * attempt", "mem_mb": "200 * attempt"}}
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "profile.yaml").write_text(yaml.safe_dump(profile))
    command = [SNAKEMAKE, "--directory", str(tmp_path), "--workflow-profile", str(tmp_path / "profile")]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=slurm_cluster.env, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    jobids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(jobids) == 2, output[-3000:]
    (first,), (second,) = (job_fields(slurm_cluster, jobid) for jobid in jobids)
    assert (first["JobState"], second["JobState"]) == ("FAILED", "COMPLETED")
    assert (first["TimeLimit"], second["TimeLimit"]) == ("00:02:00", "00:04:00")
    assert (first["MinMemoryNode"], second["MinMemoryNode"]) == ("200M", "400M")


# In every ablate job of the preemption test: log this package's records to events.log, prefixed
# "<SLURM job ID>.<pid>", and after each batch's progress report write "<images done> <total>" to a
# marker of that name and wait, so that the test can signal a job in the middle of its loop.
SLOW_ABLATION = """
import logging, os, pathlib, sys, time
folder = os.environ.get("PREEMPT_TEST_EVENTS")
if folder and sys.argv[0].endswith(".ablate.py"):
    sys.path.insert(0, os.environ["PREEMPT_TEST_SRC"])
    from unit_ablation.runtime import progress
    name = f"{os.environ.get('SLURM_JOB_ID', 'none')}.{os.getpid()}"
    events = logging.FileHandler(pathlib.Path(folder) / "events.log")
    events.setFormatter(logging.Formatter(f"{name} %(message)s"))
    logging.getLogger("unit_ablation").addHandler(events)
    report = progress.Progress.update
    def slow_update(self, *args, **kwargs):
        report(self, *args, **kwargs)
        (pathlib.Path(folder) / name).write_text(f"{self.done} {self.total}")
        time.sleep(0.5)
    progress.Progress.update = slow_update
"""
PREEMPT_MODEL = "fmnist-alexnet-baseline-s0"
PREEMPT_CHUNKS = {"0-10": range(0, 11), "11-21": range(11, 22), "22-31": range(22, 32)}  # chunk_size 11
STOPPED = re.compile(
    r"^(\S+) rule ablate stopped by SIGTERM after image (\d+) of (\d+), its progress saved", re.M
)
RESUMED = re.compile(r"^(\S+) resuming at image (\d+) of (\d+)$", re.M)


def in_first_half(marker: Path) -> bool:
    """Whether the marker's process has done at most half its images (False while it is written)."""
    done_total = marker.read_text().split()
    return len(done_total) == 2 and 2 * int(done_total[0]) <= int(done_total[1])


def running_ablations(events: Path, count: int, seen: set[str], timeout: float = 300) -> list[str]:
    """Wait until `count` ablate processes not in `seen` are in the first half of their loop (so that
    a signal reaches them before they finish); their "<job ID>.<pid>"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        markers = [m for m in sorted(events.iterdir()) if m.name != "events.log" and m.name not in seen]
        names = [marker.name for marker in markers if in_first_half(marker)]
        if len(names) >= count:
            return names[:count]
        time.sleep(0.2)
    raise AssertionError(f"no {count} new ablate jobs in their loop within {timeout} s: {sorted(seen)}")


def job_record(cluster: SlurmCluster, jobid: str) -> dict[str, str]:
    """`scontrol show job` of one job (of one array task, not the whole array)."""
    (record,) = (record for record in job_fields(cluster, jobid) if record["JobId"] == jobid)
    return record


@pytest.mark.integration
def test_requeued_signalled_and_preempted_ablation_jobs_resume_to_identical_counts(slurm_cluster, tmp_path):
    """SIGTERM from SLURM three ways, to ablate jobs in the middle of their loop: `scontrol requeue`
    (the job goes back in the queue under its ID), `scancel --signal=TERM` (the job fails and
    Snakemake's retry runs it again) and preemption by a job of the urgent partition (GraceTime > 0:
    the job saves, ends, fails, and is retried). Every stopped job saved its progress, its next run
    resumed there, the workflow completes, and its counts and table equal an uninterrupted run's."""
    from unit_ablation.engine.counts import HALF_ARRAYS
    from unit_ablation.engine.options import AblationOptions
    from unit_ablation.stages.ablate import ablate_chunk_to_file
    from unit_ablation.stages.gather import gather_to_files

    workdir, events, hooks = tmp_path / "run", tmp_path / "events", tmp_path / "hooks"
    for folder in (workdir, events, hooks, tmp_path / "profile"):
        folder.mkdir()
    small_config(workdir / "config.yaml", chunk_size=11, batch_size=10)  # 3 chunks of 30 batches
    (hooks / "sitecustomize.py").write_text(SLOW_ABLATION)
    profile = yaml.safe_load((TEST_PROFILE / "profile.yaml").read_text())
    profile["retries"] = 2  # a chunk may be signalled, then preempted
    (tmp_path / "profile" / "profile.yaml").write_text(yaml.safe_dump(profile))
    env = {
        **slurm_cluster.env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")])),
        "PREEMPT_TEST_EVENTS": str(events),
        "PREEMPT_TEST_SRC": str(PROJECT_ROOT / "src"),
    }
    table = f"results/{PREEMPT_MODEL}/ablation/conv5.units.tsv"
    command = [SNAKEMAKE, "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(workdir / "config.yaml"), "--workflow-profile", str(tmp_path / "profile")]
    with open(tmp_path / "snakemake.log", "w") as log:
        run = subprocess.Popen([*command, table], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        requeued, signalled = running_ablations(events, 2, seen=set())
        for action, name in ((("scontrol", "requeue"), requeued), (("scancel", "--signal=TERM"), signalled)):
            result = slurm_cluster.run(*action, name.split(".")[0])
            assert result.returncode == 0, (action, result.stderr)
        # a job that started since (the requeued one, the retry or the third chunk), then the node
        # is wanted by a higher-priority partition: every ablate job on it is preempted
        (preempted,) = running_ablations(events, 1, seen={requeued, signalled})
        urgent = slurm_cluster.run("sbatch", "--parsable", f"--partition={URGENT_PARTITION}", "--exclusive",
                                   "--wrap", "sleep 1")  # fmt: skip
        assert urgent.returncode == 0, urgent.stderr
        run.wait(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    output = (tmp_path / "snakemake.log").read_text()
    assert run.returncode == 0, output[-5000:]

    # the scheduler's view: back in the queue under its ID; failed and retried; preempted and failed
    assert int(job_record(slurm_cluster, requeued.split(".")[0])["Restarts"]) >= 1
    assert job_record(slurm_cluster, signalled.split(".")[0])["JobState"] == "FAILED"
    assert job_record(slurm_cluster, preempted.split(".")[0])["JobState"] == "FAILED"
    assert job_record(slurm_cluster, urgent.stdout.strip())["JobState"] == "COMPLETED"
    # every stopped job saved its progress and a later run of its chunk resumed there
    text = (events / "events.log").read_text()
    stops = {name: (int(done), int(total)) for name, done, total in STOPPED.findall(text)}
    resumes = {(int(done), int(total)) for _, done, total in RESUMED.findall(text)}
    assert {requeued, signalled, preempted} <= set(stops), text
    assert set(stops.values()) <= resumes, text
    assert all(0 < done < total for done, total in stops.values()), stops

    # counts and table equal to an uninterrupted computation of the same chunks here
    results = workdir / "results"
    model, dataset = results / "models" / f"{PREEMPT_MODEL}.pt", results / "data" / "fashion-mnist.npz"
    options = AblationOptions(batch_size=10, units_per_pass=8, device="cpu")
    whole = []
    for chunk, units in PREEMPT_CHUNKS.items():
        whole.append(tmp_path / "whole" / f"{chunk}.npz")
        ablate_chunk_to_file(model, dataset, whole[-1], "conv5", list(units), options=options)
        run_chunk = results / PREEMPT_MODEL / "ablation" / "chunks" / "conv5" / f"{chunk}.npz"
        with np.load(run_chunk) as resumed, np.load(whole[-1]) as uninterrupted:
            for name in ("units", "broken", "fixed", "n", "correct", *HALF_ARRAYS):
                np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=f"{chunk} {name}")
    gather_to_files(whole, dataset, tmp_path / "classes.tsv", tmp_path / "units.tsv")
    assert (workdir / table).read_bytes() == (tmp_path / "units.tsv").read_bytes()
