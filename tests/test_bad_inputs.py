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
    """Every file under ``root`` but the ``results`` folder the command was given."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "results" not in p.relative_to(root).parts}


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
    "a limit below every NetAdapt network": (lambda t: ["run-cell", "--method", "netadapt", "--variant", "channel",
                                                       "--family", "mobilenet_v1", "--flops", "1M"],
                                             r"1M is below the cheapest mobilenet_v1 network netadapt channel can"),
    "a split the data set was not prepared with": (
        lambda t: [*CELL, "--data", str(_prepared(t / "data")), "--data.per_class=10"],
        r"data.per_class=10, but .*data was prepared with per_class=2: a data set keeps the split it was prepared "
        r"with. Prepare one with that split into another folder"),
    **{f"a limit below every {m} network": (
        lambda t, m=m, f=f, lim=lim: ["run-cell", "--method", m, "--variant", "channel", "--family", f, "--flops", lim],
        rf"{lim} is below the cheapest {f} network {m} channel can make \([\d,.]+[MG]? ?MACs?\)")
       for m, f, lim in [("amc", "mobilenet_v1", "20M"), ("metapruning", "mobilenet_v2", "10M"),
                         ("thinet", "resnet50", "400M"), ("cp", "resnet50", "400M"), ("sfp", "resnet50", "400M"),
                         ("autopruner", "resnet50", "600M"), ("random", "mobilenet_v1", "5M")]},
    "more jobs than cores": (lambda t: ["run-table", "1", "--jobs", "4096"],
                             r"--jobs=4096: this machine gives this process \d+ core\(s\); give 1 to \d+"),
    "cell flags beside --table/--index": (lambda t: ["run-cell", "--table", "1", "--index", "0", "--method",
                                                     "uniform", "--flops", "1G"],
                                          r"--table/--index name the whole cell; drop --method, --flops"),
}


def _jpegs(root: Path, classes: list[str], per_class: int = 3) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / split / name / f"{i}.jpg")
    return root


def test_prepare_refuses_one_class_and_another_data_sets_folder(tmp_path, capsys):
    from data_prep.__main__ import main as prep

    one = _jpegs(tmp_path / "one", ["cats"])
    assert prep(["prepare", "--imagefolder", str(one), "--out", str(tmp_path / "out1"), "--per-class", "1"]) == 2
    assert "has 1 class(es) (cats): a classification data set needs at least 2" in capsys.readouterr().err
    assert not (tmp_path / "out1").exists()
    a, b = _jpegs(tmp_path / "a", ["x", "y"]), _jpegs(tmp_path / "b", ["x", "y"])
    out = tmp_path / "out"
    assert prep(["prepare", "--imagefolder", str(a), "--out", str(out), "--per-class", "1", "--quiet"]) == 0
    before = _tree(out)
    assert prep(["prepare", "--imagefolder", str(b), "--out", str(out), "--per-class", "1", "--quiet"]) == 2
    assert f"{out} holds a data set prepared from {a.resolve()}" in capsys.readouterr().err
    assert _tree(out) == before


def test_fewer_training_images_than_one_batch_is_refused(tmp_path, capsys):
    from tests.conftest import make_tiny_data

    data = make_tiny_data(tmp_path / "data", seed=3, train_per_class=6, per_class=2)
    assert main([*CELL, "--data", str(data), "--results", str(tmp_path / "results"), "--quiet",
                 "--train.batch_size=4096"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has 96 training images, fewer than one batch of train.batch_size=4096 x 1 process(es)" in last


def _prepared(root: Path) -> Path:
    from tests.conftest import make_tiny_data

    return make_tiny_data(root, seed=3, train_per_class=4, per_class=2)


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


def test_a_corrupt_checkpoint_is_set_aside_and_the_run_starts_again(tmp_path):
    import torch

    from repro.train.trainer import load_state, read_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, step=3, weights=torch.arange(1000.0))
    assert read_checkpoint(path)["step"] == 3
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a kill -9 during a copy or a full disk
    said: list[str] = []
    assert load_state(path, torch.device("cpu"), {}, said.append) is None
    assert not path.exists() and len(list(tmp_path.glob("last.pt.corrupt-*"))) == 1
    assert said and "cannot be read" in said[0] and "set aside as last.pt.corrupt-" in said[0]
    assert read_checkpoint(path) is None  # the next resume starts from scratch instead of failing again


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    import repro.atomic
    from repro.atomic import WriteFailed, atomic_write_bytes

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(repro.atomic.os, "fsync", full)
    with pytest.raises(WriteFailed, match=r"could not write .*last.pt \(3 bytes\): the disk is full; nothing was "
                                          r"left half-written"):
        atomic_write_bytes(tmp_path / "last.pt", b"abc")
    assert list(tmp_path.iterdir()) == []


def test_export_and_eval_name_a_bad_weights_file(tmp_path, capsys):
    import torch

    from repro.arch import ArchConfig
    from repro.models import build_model
    from repro.train.trainer import save_checkpoint

    arch = ArchConfig.uniform("mobilenet_v1", 0.25, 64)
    (tmp_path / "arch.json").write_text(arch.to_json())
    other = tmp_path / "other.pt"
    save_checkpoint(other, model=build_model(ArchConfig.uniform("mobilenet_v1", 0.5, 64, num_classes=16)).state_dict())
    (tmp_path / "cut.pt").write_bytes(other.read_bytes()[:200])
    good = tmp_path / "good.pt"
    save_checkpoint(good, model=build_model(arch.replace(num_classes=16)).state_dict())
    export = ["export", "--arch", str(tmp_path / "arch.json"), "--out", str(tmp_path / "model.ts"), "--weights"]
    for weights, says in [(tmp_path / "nowhere.pt", "nowhere.pt does not exist"),
                          (tmp_path / "cut.pt", "cut.pt cannot be read"),
                          (other, "other.pt is not of this architecture (mobilenet_v1 at 64 px, 16 classes)")]:
        assert main([*export, str(weights)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and says in err.strip().splitlines()[-1], err
        assert not (tmp_path / "model.ts").exists()
    # a cell record's architecture (1000 classes) exports with the weights' own class count
    assert main([*export, str(good)]) == 0 and (tmp_path / "model.ts").stat().st_size > 0
    torch.jit.load(str(tmp_path / "model.ts"))


def test_foreign_files_are_named_not_tracebacks(tmp_path):
    import hashlib
    import json

    import numpy as np

    from data_prep.split import SPLIT_JSON, load_split
    from repro.config import ConfigError
    from repro.data.manifest import DataError
    from repro.profiles import load_profile
    from repro.results import RecordError, RunRecord, read_record, write_record

    listed = tmp_path / "list.yaml"
    listed.write_text("- name: smoke\n")
    with pytest.raises(ConfigError, match=r"list.yaml must be a mapping of profile keys .*not a list"):
        load_profile(listed)
    rec = RunRecord(key="k", kind="cell", method="uniform", variant="channel", family="mobilenet_v1", constraint={},
                    arch={}, profile="smoke", profile_config={}, dataset={}, seed=0, top1=0.5)
    path = write_record(tmp_path / "records", rec)
    path.write_text(path.read_text().replace('"top1": 0.5', '"top1": "high"'))
    with pytest.raises(RecordError, match=r"top1='high' must be int or float"):
        read_record(path)
    out = tmp_path / "split"
    out.mkdir()
    arrays = {"sub_train": np.array([0, 1, 2, 99]), "sub_eval": np.array([3])}  # 99: past the 5 images
    meta = {"seed": 0, "per_class": 1, "listing_sha256": "x", "counts": {k: len(v) for k, v in arrays.items()},
            "sha256": {}}
    for name, a in arrays.items():
        np.save(out / f"{name}.npy", a)
        meta["sha256"][name] = hashlib.sha256((out / f"{name}.npy").read_bytes()).hexdigest()
    (out / SPLIT_JSON).write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"sub_train.npy holds indices outside the 5 training images"):
        load_split(out)


def test_a_results_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import repro.atomic

    def read_only(path, data):  # root ignores file modes: the refusal is injected
        raise repro.atomic.WriteFailed(13, f"could not write {path}: Permission denied")

    monkeypatch.setattr(repro.atomic, "atomic_write_bytes", read_only)
    monkeypatch.chdir(tmp_path)
    assert main([*CELL, "--results", str(tmp_path / "ro"), "--quiet"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: --results {tmp_path / 'ro'} cannot be written") and "writable folder" in last
    assert not (tmp_path / "results").exists()  # no data set made, nothing trained


def test_an_unreadable_search_result_is_set_aside_and_searched_again(tmp_path):
    import torch

    from repro.arch import ArchConfig
    from repro.method import SearchResult, SearchStore

    store = SearchStore(tmp_path / "searches", "abc")
    store.save(SearchResult(ArchConfig.canonical("mobilenet_v1"), info={"x": 1}, seconds=2.0))
    assert store.load().info == {"x": 1}
    torch.save({"arch": {}}, store.folder / "result.pt")  # readable, but not a whole result
    said: list[str] = []
    assert store.load(said.append) is None
    assert said and "cannot be read (" in said[0] and list(store.folder.glob("result.pt.corrupt-*"))


def test_render_into_a_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    import repro.atomic
    from repro.results import RunRecord, write_record
    from tables.__main__ import main as render

    write_record(tmp_path / "records", RunRecord(
        key="k", kind="cell", method="uniform", variant="channel", family="mobilenet_v1",
        constraint={"kind": "flops", "limit": 330e6}, arch={}, profile="smoke", profile_config={}, dataset={},
        seed=0, top1=0.5))

    def read_only(path, text):
        raise repro.atomic.WriteFailed(13, f"could not write {path}: Permission denied")

    monkeypatch.setattr(repro.atomic, "atomic_write_text", read_only)
    assert render(["render", "--table", "1", "--results", str(tmp_path), "--format", "all", "--no-plots"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: could not write {tmp_path / 'table1.md'}") and "writable folder" in last
