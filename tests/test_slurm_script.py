"""scripts/slurm_table.sh run as a Slurm task would run it, with a stand-in torchrun: the ranks it asks for and
the log path it gives Slurm (a real Slurm run is issue 25's test)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_table.sh"


def _launches(tmp_path: Path, args: tuple[str, ...] = ("--seeds=0,1",), **env: str) -> list[list[str]]:
    """Run the script as array task 3 of a submission from ``tmp_path``; what it launched, in order (each: the
    program, OMP_NUM_THREADS=N, its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    out = tmp_path / "launches"
    for name in ("torchrun", "python"):  # stand-ins: what the task launched, with what
        (bin_dir / name).write_text(f'#!/bin/bash\n{{ echo "{name} OMP_NUM_THREADS=$OMP_NUM_THREADS"; '
                                    f'printf "%s\\n" "$@"; echo ---; }} >> {out}\n')
        (bin_dir / name).chmod(0o755)
    venv = tmp_path / ".nox" / "suite" / "bin"
    venv.mkdir(parents=True, exist_ok=True)
    (venv / "activate").write_text(f'export PATH="{bin_dir}:/usr/bin:/bin"\n')  # no nvidia-smi: a CPU node
    done = subprocess.run(["bash", str(SCRIPT), "1", *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "SLURM_SUBMIT_DIR": str(tmp_path),
                               "SLURM_ARRAY_TASK_ID": "3", **env})
    assert done.returncode == 0, done.stderr
    return [block.split() for block in out.read_text().split("---\n") if block.strip()]


def _task(tmp_path: Path, **env: str) -> list[str]:
    """The arguments torchrun received (the last launch)."""
    return _launches(tmp_path, **env)[-1]


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="the script is bash")
@pytest.mark.parametrize(("env", "ranks", "threads"), [
    ({}, "1", "1"), ({"SLURM_GPUS_ON_NODE": "0", "SLURM_CPUS_PER_TASK": "2"}, "1", "2"),
    ({"SLURM_GPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "64"}, "4", "16"),
    ({"SLURM_GPUS_ON_NODE": "8", "SLURM_CPUS_PER_TASK": "4"}, "8", "1")], ids=["cpu", "gpus-0", "gpus-4", "few-cpus"])
def test_a_task_asks_for_one_rank_per_gpu_and_its_share_of_the_cpus(tmp_path, env, ranks, threads):
    args = _task(tmp_path, **env)
    assert args[0] == "torchrun" and f"--nproc_per_node={ranks}" in args  # a CPU node ran 8 ranks on 2 cores
    assert args[1] == f"OMP_NUM_THREADS={threads}"  # each rank's share of the task's CPUs, at least 1
    assert args[args.index("-m"):args.index("-m") + 3] == ["-m", "repro", "run-cell"]
    assert args[args.index("--table"):] == ["--table", "1", "--index", "3", "--profile", "imagenet", "--seeds=0,1"]


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="the script is bash")
def test_on_several_gpus_the_reference_then_a_one_process_search_run_first_and_a_given_profile_is_kept(tmp_path):
    launches = _launches(tmp_path, ("--profile", "smoke", "--seeds=0,1"), SLURM_GPUS_ON_NODE="2",
                         SLURM_CPUS_PER_TASK="4")
    assert [launch[0] for launch in launches] == ["torchrun", "python", "torchrun"]
    cell = ["--table", "1", "--index", "3", "--profile", "smoke", "--seeds=0,1"]
    reference, search, retrain = launches
    assert "--nproc_per_node=2" in reference and reference[reference.index("-m"):] == [
        "-m", "repro", "run-cell", "--reference-only", *cell]
    assert search[2:] == ["-m", "repro", "run-cell", "--search-only", *cell]
    assert reference[1] == retrain[1] == "OMP_NUM_THREADS=2" and search[1] == "OMP_NUM_THREADS=4"  # alone: all
    assert "--nproc_per_node=2" in retrain and retrain[retrain.index("--table"):] == cell
    (tmp_path / "one").mkdir()
    assert [launch[0] for launch in _launches(tmp_path / "one", SLURM_GPUS_ON_NODE="1")] == ["torchrun"]


def test_the_log_path_needs_no_folder_slurm_would_not_make():
    outputs = re.findall(r"^#SBATCH --output=(\S+)", SCRIPT.read_text(), flags=re.M)
    assert outputs and not any(os.path.dirname(o) for o in outputs), outputs  # the submission folder itself
