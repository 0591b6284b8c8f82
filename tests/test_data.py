"""Data preparation and loaders: the split, labels equal to torchvision's, batches, and every bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep import tiny
from data_prep.imagefolder import list_class_folders, list_imagefolder
from data_prep.split import ensure_split, load_split, make_split
from data_prep.write import WriteParams, prepare
from repro.data import Normalize, make_loader, resize_batch
from repro.data.loaders import plan_loading, shard
from repro.data.manifest import DataError, check_beton

TRAIN_PER_CLASS, VAL_PER_CLASS, PER_CLASS = 8, 3, 2


def _tree(root: Path) -> Path:
    tiny.write_imagefolder(root, seed=1, train_per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS, quiet=True)
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("prepared")
    root = _tree(base / "imagefolder")
    logs: list[str] = []
    manifest = prepare(root, base / "out", PER_CLASS, 0, WriteParams(write_mode="jpg"), workers=2, quiet=True,
                       log=logs.append)
    return root, base / "out", manifest, logs


@pytest.fixture
def tree(tmp_path):
    return _tree(tmp_path / "imagefolder")


def test_split_is_disjoint_complete_and_per_class(prepared):
    root, out, manifest, _ = prepared
    listing = list_class_folders(root / "train")
    split = load_split(out, listing.checksum())
    assert len(np.intersect1d(split.sub_train, split.sub_eval)) == 0
    assert np.array_equal(np.union1d(split.sub_train, split.sub_eval), np.arange(len(listing)))
    labels = np.asarray(listing.labels)
    assert np.bincount(labels[split.sub_eval]).tolist() == [PER_CLASS] * len(tiny.CLASSES)
    assert set(manifest["counts"]["sub_eval"].values()) == {PER_CLASS}
    assert sum(manifest["counts"]["sub_train"].values()) == len(split.sub_train)


def test_split_is_the_same_for_the_same_seed_and_differs_for_another():
    from data_prep.imagefolder import Listing

    listing = Listing(Path("."), ("a", "b"), tuple(f"{i}.jpg" for i in range(40)), tuple([0] * 20 + [1] * 20))
    a, b, c = make_split(listing, 5, 0), make_split(listing, 5, 0), make_split(listing, 5, 1)
    assert np.array_equal(a.sub_eval, b.sub_eval) and not np.array_equal(a.sub_eval, c.sub_eval)


def test_rerun_reads_the_written_split_and_skips_valid_files(prepared, tmp_path):
    root, out, manifest, _ = prepared
    logs: list[str] = []
    again = prepare(root, out, PER_CLASS, 0, WriteParams(write_mode="jpg"), workers=2, quiet=True, log=logs.append)
    assert "read from" in logs[0]
    assert sum("up to date" in line for line in logs) == 2
    assert again["betons"] == manifest["betons"]
    with pytest.raises(DataError, match="seed=0, per_class=2; asked for seed=3"):
        ensure_split(list_class_folders(root / "train"), out, PER_CLASS, 3)


def test_loader_labels_equal_torchvision_imagefolder(prepared):
    from torchvision.datasets import ImageFolder

    root, out, _, _ = prepared
    for name in ("train", "val"):
        loader, plan = make_loader(check_beton(out, name), train=False, batch_size=50, resolution=32, num_workers=1)
        labels = torch.cat([y.clone() for _, y in loader]).tolist()  # FFCV reuses its buffers
        assert plan.order == "sequential"
        assert labels == ImageFolder(str(root / name)).targets


def test_listing_equals_torchvision_samples(tree):
    from torchvision.datasets import ImageFolder

    listing = list_class_folders(tree / "train")
    tv = ImageFolder(str(tree / "train"))
    assert list(listing.classes) == tv.classes
    assert [str(tree / "train" / p) for p in listing.paths] == [p for p, _ in tv.samples]


@pytest.mark.parametrize("train, resolution", [(True, 40), (False, 24)])
def test_batches_have_requested_resolution_and_dtype(prepared, train, resolution):
    _, out, _, _ = prepared
    split = np.load(out / "sub_train.npy")
    loader, _ = make_loader(out / "train.beton", train=train, batch_size=16, resolution=resolution,
                            indices=split, num_workers=1, seed=0)
    images, labels = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape == (16, 3, resolution, resolution)
    assert labels.shape == (16,)
    x = Normalize()(images)
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 3
    assert resize_batch(x, 20).shape == (16, 3, 20, 20)
    if train:  # only sub-train indices are read
        assert len(loader) == len(split) // 16


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to tell 1 thread from the rest")
def test_the_loader_keeps_torch_to_the_threads_omp_num_threads_allows(prepared, monkeypatch):
    """FFCV sets torch's threads to its worker count every epoch; a launcher sharing a node without binding
    CPUs says each process's share in OMP_NUM_THREADS, and the loader's default worker count honours it."""
    _, out, _, _ = prepared
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        loader, _ = make_loader(out / "val.beton", train=False, batch_size=16, resolution=16)
        next(iter(loader))
        assert loader.num_workers == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        loader, _ = make_loader(out / "val.beton", train=False, batch_size=16, resolution=16)
        next(iter(loader))
        assert loader.num_workers == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_reused_loader_is_the_same_loader_and_gives_the_same_batches(prepared, tmp_path):
    _, out, _, _ = prepared
    beton = tmp_path / "train.beton"
    shutil.copy(out / "train.beton", beton)  # no manifest beside it: only a fingerprint check

    def first_batches(loader, epoch):
        loader.next_epoch = epoch
        return [(x.clone(), y.clone()) for x, y in loader][:3]

    kw = dict(train=True, batch_size=8, resolution=24, num_workers=1, seed=3, crop_scale=(0.35, 1.0))
    a, _ = make_loader(beton, reuse=True, **kw)
    b, _ = make_loader(beton, reuse=True, **kw)
    assert a is b
    fresh, _ = make_loader(beton, **kw)  # without reuse: a new Loader, same draws
    assert fresh is not a
    for (xa, ya), (xf, yf) in zip(first_batches(a, 1), first_batches(fresh, 1), strict=True):
        assert torch.equal(xa, xf) and torch.equal(ya, yf)
    assert make_loader(beton, reuse=True, **{**kw, "seed": 4})[0] is not a
    assert make_loader(beton, reuse=True, **{**kw, "resolution": 16})[0] is not a
    beton.touch()  # a rewritten file is never served from an old Loader
    assert make_loader(beton, reuse=True, **kw)[0] is not a


def test_proportion_mode_writes_the_same_pixels_every_time(tmp_path):
    root = _tree(tmp_path / "imagefolder")
    images = []
    for seed, out in enumerate(("a", "b")):
        np.random.seed(seed)  # two separate runs: the writer's forked processes inherit different states
        prepare(root, tmp_path / out, PER_CLASS, 0, WriteParams(write_mode="proportion", compress_probability=0.5),
                workers=2, quiet=True, log=lambda s: None)
        loader, _ = make_loader(tmp_path / out / "train.beton", train=False, batch_size=200, resolution=36,
                                num_workers=1)
        images.append(torch.cat([x.clone() for x, _ in loader]))
    assert images[0].shape[0] == TRAIN_PER_CLASS * len(tiny.CLASSES)
    assert torch.equal(images[0], images[1])


def test_plan_and_shards():
    assert plan_loading(10 * 2**30, 64 * 2**30, True, 1).order == "random"
    big = plan_loading(300 * 2**30, 64 * 2**30, True, 8)
    assert (big.os_cache, big.order, big.shard_by_indices) == (False, "quasi_random", True)
    assert plan_loading(300 * 2**30, 64 * 2**30, True, 1).shard_by_indices is False
    forced = plan_loading(1, 64 * 2**30, True, 2, os_cache=False)
    assert (forced.order, forced.shard_by_indices) == ("quasi_random", True)
    assert plan_loading(1, 64 * 2**30, False, 2).shard_by_indices is True  # evaluation: never padded
    idx = np.arange(103)
    parts = [shard(idx, r, 4) for r in range(4)]
    assert {len(p) for p in parts} == {25}
    assert len(np.unique(np.concatenate(parts))) == 100
    assert sum(len(shard(idx, r, 4, equal=False)) for r in range(4)) == 103


# --- bad input ------------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_imagefolder(tmp_path / "nowhere")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="x/train is not a folder"):
        list_imagefolder(tmp_path / "x")


def test_class_folder_without_images(tree):
    empty = tree / "train" / "zz_empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"zz_empty has no images"):
        list_imagefolder(tree)


def test_fewer_images_than_per_class(tree, tmp_path):
    with pytest.raises(DataError, match=rf"has {TRAIN_PER_CLASS} training images, not more than --per-class=8"):
        prepare(tree, tmp_path / "out", TRAIN_PER_CLASS, 0, quiet=True, log=lambda s: None)


def test_corrupt_file_is_named(tree, tmp_path):
    bad = tree / "train" / tiny.CLASSES[3] / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataError, match=r"1 unreadable image\(s\).*broken.JPEG"):
        prepare(tree, tmp_path / "out", PER_CLASS, 0, quiet=True, log=lambda s: None)
    assert not (tmp_path / "out" / "train.beton").exists()


def test_non_jpeg_files_are_converted_and_counted(tree, tmp_path):
    from PIL import Image

    d = tree / "train" / tiny.CLASSES[0]
    Image.new("RGB", (40, 30), (200, 10, 10)).save(d / "png_inside.JPEG", format="PNG")
    Image.new("CMYK", (40, 30), (0, 50, 100, 0)).save(d / "cmyk.JPEG", format="JPEG")
    Image.new("L", (40, 30), 128).save(d / "gray.jpg", format="JPEG")
    logs: list[str] = []
    manifest = prepare(tree, tmp_path / "out", PER_CLASS, 0, WriteParams(write_mode="jpg"), workers=2,
                       quiet=True, log=logs.append)
    assert manifest["conversions"]["train"] == {"PNG/RGB": 1, "JPEG/CMYK": 1, "JPEG/L": 1}
    assert any("3 image(s) are not RGB JPEGs" in line for line in logs)
    assert manifest["betons"]["train"]["num_samples"] == TRAIN_PER_CLASS * len(tiny.CLASSES) + 3


def test_truncated_or_foreign_beton_is_refused(prepared, tmp_path):
    _, out, _, _ = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "val.beton", "r+b") as f:
        f.truncate((copy / "val.beton").stat().st_size // 2)
    with pytest.raises(DataError, match="val.beton is (truncated|not a readable FFCV file)"):
        check_beton(copy, "val")
    shutil.copy(out / "train.beton", copy / "val.beton")
    with pytest.raises(DataError, match="val.beton is not the file that the manifest describes"):
        check_beton(copy, "val")
    with pytest.raises(DataError, match="val.beton is not the file"):
        make_loader(copy / "val.beton", train=False, batch_size=4, resolution=16)


def test_interrupted_write_is_detected_and_redone(prepared, tmp_path):
    root, out, manifest, _ = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # a write killed half-way: FFCV's partial file is left, the finished name holds a cut-off file
    (copy / "train.beton.partial").write_bytes(b"\0" * 1000)
    with open(copy / "train.beton", "r+b") as f:
        f.truncate(4096)
    logs: list[str] = []
    again = prepare(root, copy, PER_CLASS, 0, WriteParams(write_mode="jpg"), workers=2, quiet=True, log=logs.append)
    assert any(line.startswith("train.beton: wrote") for line in logs)
    assert any(line.startswith("val.beton: up to date") for line in logs)
    assert not (copy / "train.beton.partial").exists()
    assert again["betons"]["train"]["num_samples"] == manifest["betons"]["train"]["num_samples"]
    check_beton(copy, "train")


def test_flat_val_with_devkit(tree, tmp_path):
    from scipy.io import savemat

    classes = list(tiny.CLASSES)
    flat = tmp_path / "flat"
    shutil.copytree(tree / "train", flat / "train")
    (flat / "val").mkdir()
    ids = []
    # ILSVRC ids are not the sorted order of the class folders: give them in reverse
    id_of = {c: len(classes) - i for i, c in enumerate(classes)}
    for k, c in enumerate(classes[:4]):
        src = sorted((tree / "val" / c).iterdir())[0]
        shutil.copy(src, flat / "val" / f"ILSVRC2012_val_{k + 1:08d}.JPEG")
        ids.append(id_of[c])
    devkit = tmp_path / "devkit" / "data"
    devkit.mkdir(parents=True)
    synsets = np.array([(id_of[c], c) for c in classes], dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    savemat(devkit / "meta.mat", {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(map(str, ids)) + "\n")
    with pytest.raises(DataError, match="flat .*pass --devkit"):
        list_imagefolder(flat)
    _, val = list_imagefolder(flat, tmp_path / "devkit")
    assert list(val.labels) == [sorted(classes).index(c) for c in classes[:4]]  # train/'s folder order


def test_tiny_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        tiny.write_imagefolder(d, seed=5, train_per_class=1, val_per_class=1, quiet=True)
    files = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert len(files) == 2 * len(tiny.CLASSES)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    with pytest.raises(DataError, match="made with"):
        tiny.write_imagefolder(a, seed=6, train_per_class=1, val_per_class=1, quiet=True)
    assert json.loads((a / "tiny.json").read_text())["seed"] == 5


def test_the_64_class_variant_has_every_shape_and_texture_and_keeps_the_default_as_it_was(tmp_path):
    """``tiny64`` (the proxy sweep's harder set) writes its own 64 class folders, deterministically, with a marker
    that names it, and refuses to mix with the default in one folder; the default's marker has no variant key,
    so folders made before variants existed are still accepted."""
    v = tiny.variant("tiny64")
    assert len(v.classes) == len(set(v.classes)) == 64
    assert set(tiny.CLASSES) < set(v.classes)
    coarse = tiny.variant("tiny-coarse")
    assert coarse.classes == tiny.CLASSES and coarse.period[0] > tiny.PERIOD[0]
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert tiny.write_imagefolder(d, seed=2, train_per_class=1, val_per_class=1, quiet=True, kind="tiny64") == 128
    files = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert sorted({f.parts[1] for f in files}) == sorted(v.classes)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert json.loads((a / "tiny.json").read_text())["variant"] == "tiny64"
    with pytest.raises(DataError, match="made with"):
        tiny.write_imagefolder(a, seed=2, train_per_class=1, val_per_class=1, quiet=True)
    tiny.write_imagefolder(tmp_path / "d", seed=2, train_per_class=1, val_per_class=1, quiet=True)
    assert "variant" not in json.loads((tmp_path / "d" / "tiny.json").read_text())
    # every class is its own image: no two classes draw the same picture from the same random numbers
    imgs = [tiny.render(label, np.random.default_rng(0), "tiny64") for label in range(64)]
    assert len({im.tobytes() for im in imgs}) == 64
    plain, striped = (tiny.render(v.classes.index(c), np.random.default_rng(3), "tiny64")
                      for c in ("disc_plain", "disc_hstripes"))
    assert plain.std() < striped.std()  # a plain object has no texture
    with pytest.raises(DataError, match="tiny128.*tiny64"):
        tiny.variant("tiny128")


def test_the_72_px_variants_are_drawn_at_twice_the_side_and_prepared_at_base_64(tmp_path, monkeypatch):
    """``tiny-coarse72`` and ``tiny64-72`` (the proxy sweep's larger base resolution) are tiny-coarse and tiny64
    drawn at twice the side: shrunk to 36 px, a tiny-coarse72 image is nearly tiny-coarse's (the pixel noise
    and the edges differ); it is prepared at base resolution 64 (the manifest's, which the trainer reads) and its
    marker says 72 px."""
    from PIL import Image

    import data_prep.write

    big, small = tiny.variant("tiny-coarse72"), tiny.variant("tiny-coarse")
    assert (big.size, big.base_resolution, big.classes) == (72, 64, small.classes)
    assert big.period == tuple(2 * p for p in small.period)
    many = tiny.variant("tiny64-72")
    assert (many.size, many.base_resolution, many.classes) == (72, 64, tiny.variant("tiny64").classes)
    assert many.period == tuple(2 * p for p in tiny.variant("tiny64").period)
    larger = tiny.variant("tiny64-108")
    assert (larger.size, larger.base_resolution, larger.classes) == (108, 96, many.classes)
    assert larger.period == tuple(3 * p for p in tiny.variant("tiny64").period)
    for label in (0, 6, 13):
        a = tiny.render(label, np.random.default_rng((0, 0, label, 1)), "tiny-coarse72")
        b = tiny.render(label, np.random.default_rng((0, 0, label, 1)), "tiny-coarse")
        assert a.shape == (72, 72, 3) and b.shape == (36, 36, 3)
        shrunk = np.asarray(Image.fromarray(a).resize((36, 36), Image.BOX), np.float32)
        other = tiny.render((label + 5) % 16, np.random.default_rng((0, 0, label, 2)), "tiny-coarse")
        assert np.abs(shrunk - b).mean() < 12 < np.abs(shrunk - other).mean()  # 0-255 scale
    asked = {}
    monkeypatch.setattr(data_prep.write, "prepare", lambda *a, **k: asked.update(base=a[6]))  # the .beton writer
    tiny.prepare_tiny(tmp_path, seed=0, per_class=1, quiet=True, log=lambda s: None, train_per_class=2,
                      val_per_class=1, kind="tiny-coarse72")
    assert asked["base"] == 64
    marker = json.loads((tmp_path / "imagefolder" / "tiny.json").read_text())
    assert (marker["size"], marker["variant"]) == (72, "tiny-coarse72")


def _unit(t: np.ndarray) -> np.ndarray:
    """``t`` flattened, centred and scaled to length 1 (a zero image stays zero): dot products are correlations."""
    t = t.ravel() - t.mean()
    return t / (np.linalg.norm(t) or 1.0)


def _mirror_twins(textures: set[str]) -> set[tuple[str, str]]:
    """The pairs (a, b) of distinct textures where ``a`` mirrored left to right is ``b`` at some phase
    (correlation above 0.9) at a fine, a middle or a coarse period, on a 72-px canvas."""
    size, found = 72, set()
    for period in (3.0, 6.0, 12.0):
        mirrored = {a: _unit(np.fliplr(tiny._texture(a, period, 1.3, size / 2, size / 2, size))) for a in textures}
        for b in textures:
            phases = np.stack([_unit(tiny._texture(b, period, ph, size / 2, size / 2, size))
                               for ph in np.linspace(0, period, 41)])
            found |= {(a, b) for a, m in mirrored.items() if a != b and (phases @ m).max() > 0.9}
    return found


def _mirror_is_a_shift(kind: str, period: float = 12.0, size: int = 72) -> bool:
    """Whether ``kind`` mirrored left to right is the same texture moved by whole pixels (correlation above 0.9
    over a 72-px window, shifts up to a period each way): the same class under the training's flips."""
    big = tiny._texture(kind, period, 0.0, size, size, 2 * size)  # centred on a canvas twice the side
    mirrored = _unit(np.fliplr(big)[size // 2: size // 2 + size, size // 2: size // 2 + size])
    p, best = int(period), -1.0
    for dy in range(-p, p + 1):
        for dx in range(-p, p + 1):
            w = big[size // 2 + dy: size // 2 + dy + size, size // 2 + dx: size // 2 + dx + size]
            best = max(best, float(mirrored @ _unit(w)))
    return best > 0.9


def test_no_class_is_another_classs_mirror_image_except_in_the_variants_that_say_so(tmp_path):
    """The training loader flips images left to right, so a class whose mirror image is another class's would
    be noise no network can learn (tiny64's diagonal and antidiagonal textures: its 1.0x networks stopped at
    87%). Every variant's shapes are left-right symmetric; no texture's mirror image matches another texture of
    its variant at any phase, except in the variants ``MIRROR_TWINS`` names, whose preparation says so."""
    for name, v in tiny.VARIANTS.items():
        masks = {shape: tiny._mask(shape, 35.5, 35.5, 20.0, 72)[..., 0] > 0.5 for shape in v.shapes}
        for shape, mask in masks.items():  # a mirrored shape overlaps itself best (PIL's edges move by a pixel)
            overlap = {other: (mask[:, ::-1] & m).sum() / (mask[:, ::-1] | m).sum() for other, m in masks.items()}
            assert max(overlap, key=overlap.get) == shape, (name, shape, overlap)
        twins = _mirror_twins(set(v.textures))
        expected = set() if name not in tiny.MIRROR_TWINS else {tiny.MIRROR_TWINS[name], tiny.MIRROR_TWINS[name][::-1]}
        assert twins == expected, name
    assert {"tiny64f", "tiny64f-72", "tiny64f-108"} <= set(tiny.VARIANTS) - set(tiny.MIRROR_TWINS)
    for kind in ("chevron", "spokes", "rings"):  # the textures that replace diagonal's twins are their own mirror
        assert _mirror_is_a_shift(kind), kind
    assert not _mirror_is_a_shift("diagonal")  # the helper can fail: diagonal's mirror image is antidiagonal
    same, fixed = tiny.variant("tiny64-108"), tiny.variant("tiny64f-108")
    assert dataclasses.replace(fixed, textures=same.textures) == same  # one texture changed, nothing else
    chevron = fixed.classes.index("disc_chevron")
    for label in range(64):  # the same draws: only the chevron classes' images differ from tiny64's
        a, b = (tiny.render(label, np.random.default_rng((0, 0, label, 1)), k) for k in ("tiny64", "tiny64f"))
        assert np.array_equal(a, b) == (label % 8 != chevron % 8), label
    # the textured-background version draws the same objects: a pixel of the object is the same, the rest not
    for label in (13, 30, 45):
        a, b = (tiny.render(label, np.random.default_rng((0, 1, label, 2)), k)
                for k in ("tiny64f-108", "tiny64f-108-bg"))
        assert 0.05 < np.mean(np.all(a == b, axis=2)) < 0.6, label
    said = []
    tiny.prepare_tiny(tmp_path, per_class=1, quiet=True, log=said.append, train_per_class=2, val_per_class=1,
                      kind="tiny64-72")
    assert any("mirror image" in s and "'tiny64f-72'" in s for s in said), said


def test_the_embedded_set_is_byte_identical_whichever_command_makes_it(tmp_path, capsys):
    """``data_prep tiny`` and a smoke run's own build write the same files, so the cells they key agree (FFCV's
    writer with two processes laid pages out in the order they finished: other bytes, other cache keys)."""
    import hashlib

    from data_prep.__main__ import main as prep
    from repro.pipeline import prepare_data
    from repro.profiles import load_profile

    assert prep(["tiny", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    data = prepare_data(load_profile("smoke", [f"--data.path={tmp_path / 'run'}"]), quiet=True, log=lambda s: None)
    made = ["train.beton", "val.beton", "sub_train.npy", "sub_eval.npy"]
    digests = [{f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in made}
               for d in (tmp_path / "cli", data.folder)]
    assert digests[0] == digests[1]
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["betons"] == data.manifest["betons"]


def test_a_profile_split_other_than_the_data_sets_is_refused(tmp_path):
    from repro.pipeline import prepare_data
    from repro.profiles import load_profile
    from tests.conftest import make_tiny_data

    folder = make_tiny_data(tmp_path / "data", seed=3, train_per_class=4, per_class=2)
    assert prepare_data(load_profile("smoke", [f"--data.path={folder}"]), quiet=True).sub_eval.size == 32
    # a misspelt version is named with the ones that exist, before anything is made or compared
    for where in (tmp_path / "none", folder):
        with pytest.raises(DataError, match=r"data.tiny.variant: tiny data set variant 'tiny65' does not exist; "
                                            r"choose one of .*'tiny64-72'"):
            prepare_data(load_profile("proxy", [f"--data.path={where}", "data.tiny.variant=tiny65"]), quiet=True)
    assert not (tmp_path / "none").exists()
    for setting, says in [("--data.per_class=10", "data.per_class=10, but .* was prepared with per_class=2"),
                          ("--data.split_seed=7", "data.split_seed=7, but .* was prepared with split_seed=0")]:
        with pytest.raises(DataError, match=says + ": a data set keeps the split it was prepared with"):
            prepare_data(load_profile("smoke", [f"--data.path={folder}", setting]), quiet=True)
    # the imagenet profile states the paper's split (50 per class), and holds a data set to it
    with pytest.raises(DataError, match="data.per_class=50, but"):
        prepare_data(load_profile("imagenet", [f"--data.path={folder}"]), quiet=True)


def test_the_proxy_profile_makes_its_own_version_and_refuses_another(tmp_path, monkeypatch):
    from repro.pipeline import prepare_data
    from repro.profiles import load_profile
    from tests.conftest import make_tiny_data

    class Asked(Exception):
        pass

    def fake(folder, seed, per_class, **kw):
        raise Asked(kw)

    monkeypatch.setattr(tiny, "prepare_tiny", fake)
    with pytest.raises(Asked) as asked:
        prepare_data(load_profile("proxy", [f"--data.path={tmp_path / 'made'}"]), quiet=True, log=lambda s: None)
    assert {k: asked.value.args[0][k] for k in ("kind", "train_per_class", "val_per_class")} == {
        "kind": "tiny64f-108-bg", "train_per_class": 200, "val_per_class": 160}
    # a folder that holds the default version is another data set, not the proxy's
    folder = make_tiny_data(tmp_path / "smoke", seed=0, train_per_class=4, per_class=2)
    with pytest.raises(DataError, match=r"holds the embedded set's version 'tiny', but profile proxy trains on "
                                        r"'tiny64f-108-bg' \(data.tiny.variant\)"):
        prepare_data(load_profile("proxy", [f"--data.path={folder}"]), quiet=True)
    assert prepare_data(load_profile("smoke", [f"--data.path={folder}"]), quiet=True).sub_eval.size == 32


def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "data_prep", "prepare", "--imagefolder", str(tmp_path / "none"),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: data folder")


def _indexed_beton(path: Path, n: int) -> Path:
    """A .beton whose label is the sample's index, so a loader's labels say which samples it read."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    rng = np.random.default_rng(0)
    data = [(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), i) for i in range(n)]
    DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw"), "label": IntField()},
                  num_workers=1).from_indexed_dataset(data)
    return path


def _rank_reads(rank: int, world: int, init: str, beton: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    for os_cache in (True, False):  # both orders in one pair of processes (each pair costs ~15 s of start-up)
        loader, plan = make_loader(beton, train=True, batch_size=4, resolution=8, num_workers=1, seed=3,
                                   os_cache=os_cache)
        seen = torch.cat([y.clone() for _, y in loader]).tolist()  # FFCV reuses its output buffers
        Path(out, f"{rank}-{os_cache}.json").write_text(json.dumps({"seen": seen, "order": plan.order,
                                                                   "by_indices": plan.shard_by_indices}))
    torch.distributed.destroy_process_group()


def test_each_ddp_rank_reads_its_own_shard(tmp_path):
    """2 gloo processes: page-cache loading shards through FFCV's distributed sampler, quasi-random
    loading through indices=; either way the ranks read disjoint halves of the data."""
    import torch.multiprocessing as mp

    beton = _indexed_beton(tmp_path / "idx.beton", 64)
    mp.spawn(_rank_reads, args=(2, f"file://{tmp_path / 'rdv'}", str(beton), str(tmp_path)), nprocs=2, join=True)
    for os_cache in (True, False):
        reads = [json.loads((tmp_path / f"{r}-{os_cache}.json").read_text()) for r in range(2)]
        assert all(r["order"] == ("random" if os_cache else "quasi_random") for r in reads), os_cache
        assert all(r["by_indices"] is (not os_cache) for r in reads), os_cache
        a, b = (set(r["seen"]) for r in reads)
        assert len(reads[0]["seen"]) == len(reads[1]["seen"]) == 32, os_cache
        assert not a & b and a | b == set(range(64)), os_cache


def test_numba_finalizer_noise_is_dropped_and_other_unraisables_pass(monkeypatch):
    import sys
    import types

    from repro.data import loaders

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    loaders._drop_numba_finalizer_noise()

    def raised(exc_type, filename):
        namespace: dict = {}
        exec(compile(f"def f():\n    raise {exc_type.__name__}('x')\n", filename, "exec"), namespace)
        try:
            namespace["f"]()
        except exc_type as e:
            return types.SimpleNamespace(exc_type=exc_type, exc_value=e, exc_traceback=e.__traceback__,
                                         err_msg=None, object=None)

    sys.unraisablehook(raised(KeyError, "/site-packages/numba/core/dispatcher.py"))
    assert seen == []
    sys.unraisablehook(raised(KeyError, "/elsewhere/mine.py"))
    sys.unraisablehook(raised(ValueError, "/site-packages/numba/core/dispatcher.py"))
    assert len(seen) == 2


def test_two_seeds_differ_in_initial_weights_batch_order_and_augmentation(prepared):
    """A seed is a real axis: another seed draws other initial weights, another order of the training
    batches and other crops and flips of the same image; the same seed draws the same three again."""
    from repro.arch import ArchConfig
    from repro.train.trainer import initial_model

    arch = ArchConfig.uniform("mobilenet_v1", 0.25, 224).replace(num_classes=len(tiny.CLASSES))
    w0, w0_again, w1 = (initial_model(arch, s).state_dict() for s in (0, 0, 1))
    # every randomly drawn tensor (the convolutions and the classifier; batch norm starts at constants)
    drawn = [k for k, v in w0.items() if v.is_floating_point() and v.numel() > 1 and v.std() > 0]
    assert len(drawn) >= 28 and all(torch.equal(w0[k], w0_again[k]) for k in w0)
    assert all(not torch.equal(w0[k], w1[k]) for k in drawn)

    _, out, _, _ = prepared
    split = np.load(out / "sub_train.npy")
    labels = np.asarray(list_class_folders(prepared[0] / "train").labels)
    one_per_class = [int(split[labels[split] == c][0]) for c in range(len(tiny.CLASSES))]

    def epoch0(seed):  # each image by its label (one image per class), and the labels in the epoch's order
        loader, _ = make_loader(out / "train.beton", train=True, batch_size=4, resolution=24,
                                indices=one_per_class, num_workers=1, seed=seed)
        loader.next_epoch = 0
        batches = [(x.clone(), y.clone()) for x, y in loader]
        order = torch.cat([y for _, y in batches]).tolist()
        return dict(zip(order, torch.cat([x for x, _ in batches]), strict=True)), order

    (crops0, order0), (again0, order0_again), (crops1, order1) = epoch0(0), epoch0(0), epoch0(1)
    assert order0 == order0_again and order0 != order1 and sorted(order0) == sorted(order1) == list(range(16))
    assert all(torch.equal(crops0[c], again0[c]) for c in crops0)
    assert all(not torch.equal(crops0[c], crops1[c]) for c in crops0)  # the same image, other crop and flip
