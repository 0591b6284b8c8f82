"""Hostile-but-realistic inputs a user types first, each refused with one line that names the file, key or
value and the fix: a non-zero exit, no traceback, and nothing written outside ``--results`` (the user's own
folders are never written to). The reliability issue's classes that are built so far; each case is a row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from repro.cli import main

CELL = ["run-cell", "--method", "uniform", "--variant", "channel", "--family", "mobilenet_v1", "--flops", "150M"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _imagefolder(root: Path) -> Path:
    for split in ("train", "val"):
        for name in ("cats", "dogs"):
            (root / split / name).mkdir(parents=True)
            (root / split / name / "a.jpg").write_bytes(b"not really a jpeg")
    return root


def _profile_file(tmp: Path, text: str) -> str:
    path = tmp / "mine.yaml"
    path.write_text((Path(__file__).parents[1] / "repro" / "profiles" / "smoke.yaml").read_text() + text)
    return str(path)


CASES = {
    # a user's ImageFolder as --data: refused before anything is written into it
    "imagefolder as --data": (lambda t: [*CELL, "--data", str(_imagefolder(t / "mine"))],
                              r"mine is an ImageFolder tree, not a prepared data set: prepare it .*"
                              r"python -m data_prep prepare --imagefolder .*mine --out DIR"),
    # a folder of someone else's files: the embedded set is not generated into it
    "foreign folder as --data": (lambda t: [*CELL, "--data", str(_foreign(t / "notes"))],
                                 r"notes holds files that are not a prepared data set \(thesis.tex\); nothing was "
                                 r"written there"),
    "NaN learning rate": (lambda t: [*CELL, "--train.lr=.nan"], r"train.lr=nan must be a finite number"),
    "infinite lr": (lambda t: [*CELL, "--train.lr=.inf"], r"train.lr=inf must be a finite number"),
    "misspelt method name": (lambda t: [*CELL, "--methods.proposd.epochs_fraction=0.5"],
                             r"methods.proposd: no method is named 'proposd' \(did you mean 'proposed'\?\)"),
    "misspelt nested key": (lambda t: [*CELL, "--methods.proposed.epochs_fractoin=0.5"],
                            r"methods.proposed.epochs_fractoin \(did you mean 'epochs_fraction'\?\)"),
    "misspelt block in a profile file": (lambda t: [*CELL[:-2], "--flops", "150M", "--profile",
                                                    _profile_file(t, "\n  proposd:\n    epochs_fraction: 0.5\n")],
                                         r"no method is named 'proposd' \(did you mean 'proposed'\?\)"),
    "no seeds": (lambda t: [*CELL, "--profile", _profile_file(t, "\nseeds: []\n")],
                 r"seeds=\[\] runs no cell: give at least one seed"),
    "a seed twice": (lambda t: [*CELL, "--profile", _profile_file(t, "\nseeds: [0, 0]\n")],
                     r"seeds=\[0, 0\] repeats \[0\]"),
    "more loader workers than cores": (lambda t: [*CELL, "--data.workers=4096"],
                                       r"--data.workers=4096 is more than this machine's \d+ cores: give at most"),
    "a limit below every uniform network": (lambda t: [*CELL[:-1], "1M", "--family", "resnet50"],
                                            r"1M is below the cheapest resnet50 network uniform channel can make "
                                            r"\([\d,]+ MACs\): give a limit of at least that"),
    "a limit of 1k": (lambda t: [*CELL[:-1], "1k"], r"1,000 MACs is below the cheapest mobilenet_v1 network uniform"),
    "a limit below the proposed space": (lambda t: ["run-cell", "--method", "proposed", "--variant", "channel",
                                                    "--family", "mobilenet_v2", "--flops", "5M"],
                                         r"5M is below the cheapest mobilenet_v2 network proposed channel can make"),
    "cell flags beside --table/--index": (lambda t: ["run-cell", "--table", "1", "--index", "0", "--method",
                                                     "uniform", "--flops", "1G"],
                                          r"--table/--index name the whole cell; drop --method, --flops"),
}


def _foreign(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "thesis.tex").write_text("\\documentclass{article}")
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_is_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default results/ folder would land here
    make_argv, pattern = CASES[case]
    argv = make_argv(tmp_path)
    before = _tree(tmp_path)
    assert main([*argv, "--results", str(tmp_path / "results"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(pattern, last), last
    assert _tree(tmp_path) == before  # nothing written anywhere, the user's folders included


def test_table_and_index_honour_the_seed(monkeypatch, capsys):
    import repro.pipeline
    import repro.runner
    from repro.results import RunRecord

    seen = []
    record = RunRecord(key="k", kind="cell", method="uniform", variant="channel", family="mobilenet_v1",
                       constraint={}, arch={}, profile="smoke", profile_config={}, dataset={}, seed=5, macs=1,
                       top1=0.5)
    monkeypatch.setattr(repro.pipeline, "prepare_data", lambda profile, quiet=False: None)
    monkeypatch.setattr(repro.runner, "run_one", lambda st, *a, **k: seen.append(st.seed) or (record, True))
    assert main(["run-cell", "--table", "1", "--index", "0", "--seed", "5"]) == 0
    assert main(["run-cell", "--table", "1", "--index", "0"]) == 0
    assert seen == [5, 0]  # the given seed, else the listed cell's (the profile's first)
