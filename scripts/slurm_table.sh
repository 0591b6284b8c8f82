#!/bin/bash
# One Slurm array task per line of a table's list (a cell and seed), each a torchrun DDP job on one node.
# `python -m repro submit --table 1 --profile imagenet [--seeds=0,1,2,3,4] [--dry-run]` submits it for you: the
# lines left to run as one array, the cost printed first, the log folder made, `python -m repro status` after.
# By hand:
#   python -m repro run-table 1 --profile imagenet --list     # the lines, their indices and status
#   sbatch --array=0-25 scripts/slurm_table.sh 1              # table 1: indices from the list
#   sbatch --array=0-129 scripts/slurm_table.sh 1 --seeds=0,1,2,3,4   # cells x seeds: list with the same --seeds
# Arguments after the table go to run-cell (--profile imagenet unless one is given). A line whose record exists
# returns at once; a task killed by the time limit resumes from its checkpoint when the same index is submitted
# again. Shared artifacts (a reference network, a PruningNet) are built once, under their locks, by whichever task
# gets there first; the others wait.
#SBATCH --job-name=ahpo-table
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=72:00:00
# The log, in the submission folder: Slurm creates no folder for it, and a task whose log folder is missing
# fails at launch without a word anywhere a user looks (JobLaunchFailure; only slurmd's own log says why).
#SBATCH --output=%x-%A_%a.out
set -euo pipefail
TABLE=${1:?usage: sbatch --array=0-N scripts/slurm_table.sh TABLE [overrides...]}
shift
cd "${SLURM_SUBMIT_DIR}"
# the environment `python -m repro submit` ran in, else the one `nox -s tests` builds, else the PATH's python
VENV="${AHPO_VENV:-.nox/suite}"
if [[ -f "${VENV}/bin/activate" ]]; then
    source "${VENV}/bin/activate"
else
    echo "no ${VENV}/bin/activate: using $(command -v python || echo 'no python on PATH')" >&2
fi
# One rank per GPU of the node, one on a node without GPUs (a CPU node ran 8 ranks on its 2 cores before).
NPROC="${SLURM_GPUS_ON_NODE:-}"
if [[ -z "${NPROC}" ]] && command -v nvidia-smi >/dev/null 2>&1; then
    NPROC=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if [[ -z "${NPROC}" || "${NPROC}" -lt 1 ]]; then
    NPROC=1
fi
# Each rank's threads: its share of the task's CPUs (unset, torch starts a thread per core it sees in every
# rank: more threads than CPUs when tasks share a node without CPU binding).
THREADS=$(( ${SLURM_CPUS_PER_TASK:-1} / NPROC ))
export OMP_NUM_THREADS=$(( THREADS > 0 ? THREADS : 1 ))
PROFILE=(--profile imagenet)
for arg in "$@"; do
    if [[ "${arg}" == --profile || "${arg}" == --profile=* ]]; then PROFILE=(); fi
done
CELL=(--table "${TABLE}" --index "${SLURM_ARRAY_TASK_ID}" ${PROFILE[@]+"${PROFILE[@]}"} "$@")  # bash 4.2-safe
# A method whose search is written for one process (NetAdapt, AMC, MetaPruning, ThiNet, CP, SFP, AutoPruner)
# refuses several ranks. On a node of several GPUs: the reference network it starts from is trained first on
# every GPU, then its search runs in one process on one GPU (both cached; nothing for the paper's method and the
# uniform rows, which run whole under torchrun), then torchrun retrains the found network on every GPU.
if (( NPROC > 1 )); then
    torchrun --standalone --nproc_per_node="${NPROC}" -m repro run-cell --reference-only "${CELL[@]}"
    OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" python -m repro run-cell --search-only "${CELL[@]}"  # alone: every CPU
fi
torchrun --standalone --nproc_per_node="${NPROC}" -m repro run-cell "${CELL[@]}"
# Several nodes per cell: replace --standalone by
#   --nnodes="${SLURM_NNODES}" --rdzv_backend=c10d --rdzv_id="${SLURM_JOB_ID}" \
#   --rdzv_endpoint="$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n1):29500"
# and launch it with `srun` (one torchrun per node).
