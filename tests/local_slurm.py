"""A single-node Slurm on this machine for the cluster test: ``munged`` and ``slurmctld`` / ``slurmd`` from
Debian's ``munge`` and ``slurm-wlm`` (``nox -s cluster`` installs them when root), every file (configuration,
state, logs, the munge socket) in one folder, on free ports, stopped by ``stop``. ``why_not`` says why it cannot
start here (not root, no packages), for the test's skip reason."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel")
KEY = Path("/etc/munge/munge.key")


def why_not() -> str | None:
    """Why a local Slurm cannot be started here, or None."""
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    missing = [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if missing:
        return f"{', '.join(missing)} not installed: apt-get install slurm-wlm munge (nox -s cluster does, as root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class LocalSlurm:
    folder: Path
    env: dict[str, str]
    started: bool = False

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env)

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.folder / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        if self.started and shutil.which("scancel"):  # the jobs first, and until they are gone (their steps'
            self.run("scancel", "--full", "--user=root", timeout=30)  # processes would outlive slurmd)
            for _ in range(60):
                try:
                    if not self.run("squeue", "-h", timeout=10).stdout.strip():
                        break
                except subprocess.TimeoutExpired:
                    break
                time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.folder / f"{name}.pid"
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):  # up to 5 s, then SIGKILL
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.started = False


def start(folder: Path, cpus: int | None = None, timeout: float = 60) -> LocalSlurm:
    """Start munged, slurmctld and slurmd with everything under ``folder``; wait for the node to be idle."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    cpus = cpus or len(os.sched_getaffinity(0))
    mem_mb = int(int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal"))) / 1024 * 0.8)
    sock = folder / "munge.socket"
    key = folder / "munge.key"
    if KEY.exists():
        shutil.copy(KEY, key)
    else:
        key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    conf = folder / "slurm.conf"
    state = folder / "state"
    spool = folder / "spool"
    state.mkdir(exist_ok=True)
    spool.mkdir(exist_ok=True)
    conf.write_text("\n".join([
        "ClusterName=ahpo-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={sock}", "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "MpiDefault=none", "ReturnToService=2", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SchedulerType=sched/backfill",
        f"StateSaveLocation={state}", f"SlurmdSpoolDir={spool}", f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}", f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}", f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0", "MinJobAge=3600", "KillWait=5",
        f"NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    slurm = LocalSlurm(folder, env)
    try:
        subprocess.run([_exe("munged"), f"--socket={sock}", f"--key-file={key}", f"--pid-file={folder / 'munged.pid'}",
                        f"--log-file={folder / 'munged.log'}", f"--seed-file={folder / 'munged.seed'}", "--force"],
                       check=True, capture_output=True, text=True, timeout=30)
        slurm.started = True
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([_exe(daemon), "-f", str(conf)], check=True, capture_output=True, text=True, timeout=30,
                           env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            done = slurm.run("sinfo", "-h", "-o", "%T", timeout=10)
            if done.returncode == 0 and done.stdout.strip().startswith("idle"):
                return slurm
            time.sleep(1)
        raise RuntimeError(f"the local Slurm's node did not become idle in {timeout:.0f} s:\n{slurm.log_tail()}")
    except BaseException:
        slurm.stop()
        raise
