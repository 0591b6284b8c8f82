"""Sessions of the suite. They share one virtual environment (.nox/suite), so the 5.5 GB torch install
happens once: it is (re)installed only when pyproject.toml changes.

    nox -s reproduce_table1      the main job on the embedded default (smoke profile)
    nox -s tests                 the test suite (pytest tests/)
    nox -s benchmarks            speed goals (pytest tests/ --benchmark), JSON kept under .benchmarks/
    nox -s lint                  ruff
    nox -s cluster               the Slurm path against a single-node Slurm started here (root)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]

ROOT = Path(__file__).parent
ENV = ROOT / ".nox" / "suite"
PYTHON = ENV / "bin" / "python"
STAMP = ENV / ".installed-pyproject.sha256"
# What FFCV 1.0.2 needs to build from source (Debian package names), and the pkg-config modules for them.
APT_PACKAGES = ["pkg-config", "libturbojpeg0-dev", "libopencv-dev"]
PKG_CONFIG_MODULES = ["libturbojpeg", "opencv4"]


def _system_libraries(session: nox.Session) -> None:
    have_pc = shutil.which("pkg-config") is not None
    if have_pc and subprocess.run(["pkg-config", "--exists", *PKG_CONFIG_MODULES]).returncode == 0:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.error("FFCV needs system libraries; run: sudo apt-get install -y " + " ".join(APT_PACKAGES))
    _apt_install(session, "FFCV's system libraries", APT_PACKAGES)


def _apt_install(session: nox.Session, what: str, packages: list[str]) -> None:
    session.log(f"installing {what} with apt-get: " + " ".join(packages))
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages, external=True, env=env)


def suite_env(session: nox.Session) -> str:
    """Create or update the shared environment; return its python."""
    _system_libraries(session)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not PYTHON.exists():
        session.run(sys.executable, "-m", "venv", str(ENV), external=True)
    if not STAMP.exists() or STAMP.read_text().strip() != digest:
        session.run(str(PYTHON), "-m", "pip", "install", "--progress-bar", "off", "-e", f"{ROOT}[dev]",
                    external=True)
        STAMP.write_text(digest)
    return str(PYTHON)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite: pytest tests/ (extra arguments go to pytest)."""
    python = suite_env(session)
    session.run(python, "-m", "pytest", "tests/", *session.posargs, external=True)


SLURM_PACKAGES = ["slurm-wlm", "munge"]


@nox.session
def cluster(session: nox.Session) -> None:
    """The cluster path against a real Slurm: a single-node Slurm started here (Debian's slurm-wlm and munge,
    installed with apt-get when root and missing), two smoke cells x two seeds submitted as one array through
    `python -m repro submit`; the test skips with the reason where Slurm cannot start (not root, no packages)."""
    python = suite_env(session)
    if shutil.which("slurmctld") is None and not Path("/usr/sbin/slurmctld").exists():
        if os.geteuid() == 0 and shutil.which("apt-get"):
            _apt_install(session, "Slurm for the cluster test", SLURM_PACKAGES)
        else:
            session.log("Slurm is not installed and this is not root with apt-get: the test will say it skipped")
    session.run(python, "-m", "pytest", "tests/test_cluster.py", "-m", "slurm", "--slurm", "-rs", "-s",
                *session.posargs, external=True)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Every benchmark of the suite; JSON saved under .benchmarks/ for --benchmark-compare."""
    python = suite_env(session)
    session.run(python, "-m", "pytest", "tests/", "--benchmark", "--benchmark-autosave", *session.posargs,
                external=True)


@nox.session
def lint(session: nox.Session) -> None:
    python = suite_env(session)
    session.run(python, "-m", "ruff", "check", ".", external=True)


def _reproduce(session: nox.Session, table: int, default_profile: str = "smoke") -> None:
    """Run every cell of a table that this build can run (profile: ``default_profile`` unless
    `-- --profile imagenet`), then write the table as Markdown, LaTeX, CSV and plots into results/<profile>/
    and print the Markdown."""
    python = suite_env(session)
    args = list(session.posargs)
    if "--profile" not in args:
        args = ["--profile", default_profile, *args]
    profile = args[args.index("--profile") + 1]
    results = args[args.index("--results") + 1] if "--results" in args else f"results/{profile}"
    session.run(python, "-m", "repro", "run-table", str(table), *args, external=True)
    target = next((["--target", a.split("=", 1)[1]] for a in args if a.startswith("--target=")),
                  ["--target", args[args.index("--target") + 1]] if "--target" in args else [])
    session.run(python, "-m", "tables", "render", "--table", str(table), "--profile", profile, "--results", results,
                "--format", "all", *target, external=True)


@nox.session
def reproduce_table1(session: nox.Session) -> None:
    """Table 1 (MobileNet V1) on the embedded default."""
    _reproduce(session, 1)


@nox.session
def reproduce_table2(session: nox.Session) -> None:
    """Table 2 (MobileNet V2) on the embedded default."""
    _reproduce(session, 2)


@nox.session
def reproduce_table3(session: nox.Session) -> None:
    """Table 3 (ResNet-50) on the embedded default."""
    _reproduce(session, 3)


@nox.session
def proxy_table1(session: nox.Session) -> None:
    """Table 1 (MobileNet V1) on the proxy profile: 5 seeds a cell, for ranking (docs/proxy_protocol.md)."""
    _reproduce(session, 1, "proxy")


@nox.session
def proxy_table2(session: nox.Session) -> None:
    """Table 2 (MobileNet V2) on the proxy profile."""
    _reproduce(session, 2, "proxy")


@nox.session
def proxy_table3(session: nox.Session) -> None:
    """Table 3 (ResNet-50) on the proxy profile."""
    _reproduce(session, 3, "proxy")


@nox.session
def claims(session: nox.Session) -> None:
    """The paper's claims judged on the records of all three tables (default profile proxy; `-- --profile
    smoke` or `-- --results DIR` for others), written as claims<N>.{md,tex,csv} beside the tables."""
    python = suite_env(session)
    args = list(session.posargs)
    if "--profile" not in args:
        args = ["--profile", "proxy", *args]
    for table in (1, 2, 3):
        session.run(python, "-m", "tables", "claims", "--table", str(table), "--format", "all", *args, external=True)
