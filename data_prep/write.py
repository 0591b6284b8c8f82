"""ImageFolder -> FFCV ``.beton`` files, the paper's split, and a manifest of what was written.

One ``train.beton`` holds every training image (sub-train and sub-eval are index lists over it, read with
the Loader's ``indices=``, so ImageNet is not written twice) and ``val.beton`` the validation images, with
labels equal to torchvision's ``ImageFolder``. The writing parameters are those of FFCV's ImageNet recipe
(``WriteParams``). Each file is written under ``<name>.partial`` and renamed when FFCV has finished it;
``manifest.json`` is written last. A rerun with the same inputs and parameters skips a file whose size and
checksum still match the manifest, and rewrites anything else (an interrupted write included).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.imagefolder import Listing, list_imagefolder, verify
from data_prep.split import ensure_split
from repro.atomic import atomic_write_text, partial_path
from repro.data.manifest import MANIFEST, MANIFEST_SCHEMA, DataError, check_beton, fingerprint, read_manifest

WRITE_MODES = ("raw", "jpg", "smart", "proportion")


@dataclass(frozen=True)
class WriteParams:
    """FFCV RGBImageField settings; defaults are FFCV's ImageNet recipe (``write_imagenet.sh``)."""

    write_mode: str = "proportion"  # half the images raw, half JPEG: decode cost vs file size
    max_resolution: int = 500  # longest side, in pixels
    jpeg_quality: int = 90
    compress_probability: float = 0.5  # fraction JPEG-compressed in "proportion" mode

    def __post_init__(self) -> None:
        if self.write_mode not in WRITE_MODES:
            raise DataError(f"write_mode={self.write_mode!r} is not known; allowed: {', '.join(WRITE_MODES)}")
        if not (isinstance(self.max_resolution, int) and self.max_resolution > 0):
            raise DataError(f"max_resolution={self.max_resolution!r} must be a positive integer (pixels)")
        if not (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            raise DataError(f"jpeg_quality={self.jpeg_quality!r} must be an integer in 1..100")
        if not 0.0 <= self.compress_probability <= 1.0:
            raise DataError(f"compress_probability={self.compress_probability!r} must be in [0, 1]")


class _Images:
    """What FFCV's writer indexes: (HxWx3 uint8, label). A file that fails to decode is logged to
    ``error_log`` and replaced by a 1x1 image, because an exception in FFCV's writer processes hangs its
    progress loop; the caller then deletes the partial file and reports the failures."""

    def __init__(self, listing: Listing, error_log: Path):
        self.paths = [str(listing.root / p) for p in listing.paths]
        self.labels = listing.labels
        self.error_log = str(error_log)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        # FFCV's "proportion" mode picks raw or JPEG with np.random.rand() in the writer process right after
        # this call; seeding here makes the choice a function of the image, so two preparations of the same
        # tree decode to the same pixels (unseeded, two fresh runs of the smoke table trained on different
        # data: train.beton 42.1 MB vs 33.7 MB)
        np.random.seed(i % 2**32)
        try:
            with Image.open(self.paths[i]) as im:
                return np.asarray(im.convert("RGB")), self.labels[i]
        except Exception as e:  # noqa: BLE001 - reported by file name after the write, see class docstring
            with open(self.error_log, "a") as f:
                f.write(f"{self.paths[i]}\t{type(e).__name__}: {e}\n")
            return np.zeros((1, 1, 3), np.uint8), self.labels[i]


def write_beton(listing: Listing, path: Path, params: WriteParams, workers: int = 0,
                quiet: bool = False) -> dict[str, Any]:
    """Write ``listing`` to ``path`` through ``<path>.partial``; return its fingerprint."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    partial = partial_path(path)
    errors = path.with_name(path.name + ".errors")
    for stale in (partial, errors):
        stale.unlink(missing_ok=True)
    fields = {
        "image": RGBImageField(write_mode=params.write_mode, max_resolution=params.max_resolution,
                               jpeg_quality=params.jpeg_quality,
                               compress_probability=params.compress_probability),
        "label": IntField(),
    }
    writer = DatasetWriter(str(partial), fields, num_workers=workers or os.cpu_count() or 1)
    import ffcv.writer

    # FFCV's writer draws its own tqdm bar; TQDM_DISABLE is read when tqdm is imported, so it is too late
    # here: the bar is silenced through the name the writer module calls
    bar = ffcv.writer.tqdm
    if quiet or not sys.stderr.isatty():
        ffcv.writer.tqdm = functools.partial(bar, disable=True)
    try:
        writer.from_indexed_dataset(_Images(listing, errors), chunksize=100)
    finally:
        ffcv.writer.tqdm = bar
    if errors.exists():
        lines = errors.read_text().splitlines()
        partial.unlink(missing_ok=True)
        raise DataError(f"{len(lines)} image(s) failed to decode while writing {path.name}: {lines[0]}. "
                        f"Replace or remove them and run again")
    info = fingerprint(partial)
    if info["num_samples"] != len(listing):
        raise DataError(f"{partial} holds {info['num_samples']} samples, expected {len(listing)}")
    os.replace(partial, path)
    return info


def prepare(root: Path, out: Path, per_class: int = 50, seed: int = 0, params: WriteParams = WriteParams(),
            devkit: Path | None = None, base_resolution: int = 224, workers: int = 0,
            quiet: bool = False, log=print) -> dict[str, Any]:
    """Split, verify and write an ImageFolder tree into ``out``; returns the manifest."""
    root, out = Path(root), Path(out)
    train, val = list_imagefolder(root, devkit)
    if len(train.classes) < 2:  # one class trains nothing and scores 100%
        raise DataError(f"{root} has {len(train.classes)} class(es) ({', '.join(train.classes) or 'none'}): a "
                        f"classification data set needs at least 2 class folders under train/")
    earlier = read_manifest(out)
    if earlier is not None and earlier.get("source") != str(root.resolve()):
        raise DataError(f"{out} holds a data set prepared from {earlier.get('source')}, not {root.resolve()}: "
                        f"nothing was overwritten; prepare into another --out folder (or delete that one)")
    out.mkdir(parents=True, exist_ok=True)
    split, drawn = ensure_split(train, out, per_class, seed)
    log(f"split: {len(split.sub_train)} sub-train, {len(split.sub_eval)} sub-eval "
        f"({'drawn' if drawn else 'read from ' + str(out)}, seed {seed}, {per_class} per class)")
    old = read_manifest(out) or {}
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA, "source": str(root.resolve()), "classes": list(train.classes),
        "base_resolution": base_resolution, "split": {"seed": seed, "per_class": per_class},
        "write_params": asdict(params), "listing_sha256": {}, "counts": {}, "conversions": {}, "betons": {},
    }
    labels = np.asarray(train.labels)
    manifest["counts"]["sub_train"] = _class_counts(labels[split.sub_train], train.classes)
    manifest["counts"]["sub_eval"] = _class_counts(labels[split.sub_eval], train.classes)
    for name, listing in (("train", train), ("val", val)):
        if listing is None:
            continue
        manifest["listing_sha256"][name] = listing.checksum()
        manifest["counts"][name] = listing.counts()
        entry = old.get("betons", {}).get(name)
        same_inputs = (entry is not None and entry.get("listing_sha256") == listing.checksum()
                       and entry.get("write_params") == asdict(params))
        if same_inputs and _still_valid(out, name, old):
            log(f"{name}.beton: up to date ({entry['num_samples']} images), skipped")
            manifest["betons"][name] = entry
            manifest["conversions"][name] = old["conversions"].get(name, {})
            continue
        checked = verify(listing, workers, quiet)
        if checked.converted:
            log(f"{name}: {checked.converted} image(s) are not RGB JPEGs and are converted: "
                f"{dict(checked.conversions)}")
        info = write_beton(listing, out / f"{name}.beton", params, workers, quiet)
        manifest["betons"][name] = {"file": f"{name}.beton", **info, "listing_sha256": listing.checksum(),
                                    "write_params": asdict(params)}
        manifest["conversions"][name] = dict(checked.conversions)
        log(f"{name}.beton: wrote {info['num_samples']} images, {info['bytes'] / 2**20:.1f} MiB")
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return manifest


def _still_valid(out: Path, name: str, manifest: dict[str, Any]) -> bool:
    try:
        check_beton(out, name, manifest)
        return True
    except DataError:
        return False


def _class_counts(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts, strict=True)}
