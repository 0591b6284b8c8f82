"""The paper's split of the training images: *sub-eval* = ``per_class`` images drawn at random from each
class (50 per class, 50,000 on ImageNet), *sub-train* = the rest.

Written once as index files into the training listing (``sub_train.npy``, ``sub_eval.npy``, sorted int64)
beside ``split.json``, which records the seed, ``per_class``, the listing's checksum and each file's
sha256. Every later run reads the same files; a listing that changed is refused, never silently re-split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.imagefolder import DataError, Listing
from repro.atomic import atomic_write_bytes, atomic_write_text

SPLIT_JSON = "split.json"


@dataclass(frozen=True)
class Split:
    sub_train: np.ndarray
    sub_eval: np.ndarray
    seed: int
    per_class: int
    listing_sha256: str


def make_split(listing: Listing, per_class: int, seed: int) -> Split:
    """Draw ``per_class`` sub-eval images per class with ``numpy.random.default_rng(seed)``."""
    if per_class < 1:
        raise DataError(f"--per-class={per_class} must be at least 1")
    labels = np.asarray(listing.labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label, name in enumerate(listing.classes):
        members = np.flatnonzero(labels == label)
        if len(members) <= per_class:
            raise DataError(f"class {name!r} has {len(members)} training images, not more than --per-class="
                            f"{per_class}: sub-train would get none of it. Lower --per-class or add images")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    sub_eval = np.sort(np.concatenate(chosen)).astype(np.int64)
    sub_train = np.setdiff1d(np.arange(len(labels), dtype=np.int64), sub_eval)
    return Split(sub_train, sub_eval, seed, per_class, listing.checksum())


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def save_split(split: Split, out: Path) -> None:
    files = {"sub_train": split.sub_train, "sub_eval": split.sub_eval}
    meta = {"seed": split.seed, "per_class": split.per_class, "listing_sha256": split.listing_sha256,
            "counts": {k: int(len(v)) for k, v in files.items()}, "sha256": {}}
    for name, arr in files.items():
        data = _npy_bytes(arr)
        atomic_write_bytes(out / f"{name}.npy", data)
        meta["sha256"][name] = hashlib.sha256(data).hexdigest()
    atomic_write_text(out / SPLIT_JSON, json.dumps(meta, indent=2))  # last: its presence means complete


def load_split(out: Path, listing_sha256: str | None = None) -> Split:
    """Read a split written by ``save_split``; checks the files' sha256 and, if given, the listing."""
    meta_path = out / SPLIT_JSON
    if not meta_path.is_file():
        raise DataError(f"no split in {out} ({SPLIT_JSON} missing): run `python -m data_prep split` first")
    meta = json.loads(meta_path.read_text())
    arrays = {}
    for name in ("sub_train", "sub_eval"):
        path = out / f"{name}.npy"
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != meta["sha256"][name]:
            raise DataError(f"{path} is missing or does not match {SPLIT_JSON}; delete {out} and write it again")
        arrays[name] = np.load(path)
    count = sum(int(v) for v in meta.get("counts", {}).values()) or -1  # sub-train and sub-eval partition them
    for name, a in arrays.items():  # a matching checksum does not make the indices right (hand-made files)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or (len(a) and (a.min() < 0 or (
                count >= 0 and a.max() >= count))):
            raise DataError(f"{out / (name + '.npy')} holds indices outside the {count} training images (or not a "
                            f"list of integers); delete {out} and prepare it again")
    if listing_sha256 is not None and meta["listing_sha256"] != listing_sha256:
        raise DataError(f"the split in {out} was drawn from another listing of the training images "
                        f"(listing sha256 {meta['listing_sha256'][:12]}…, now {listing_sha256[:12]}…): the "
                        f"data set changed. Write to a new --out, or delete {out} to redraw the split")
    return Split(arrays["sub_train"], arrays["sub_eval"], int(meta["seed"]), int(meta["per_class"]),
                 meta["listing_sha256"])


def ensure_split(listing: Listing, out: Path, per_class: int, seed: int) -> tuple[Split, bool]:
    """Load the split in ``out`` if it was drawn from this listing with these settings, else draw and
    write it. Returns (split, written)."""
    if (out / SPLIT_JSON).is_file():
        split = load_split(out, listing.checksum())
        if (split.seed, split.per_class) != (seed, per_class):
            raise DataError(f"{out} holds a split with seed={split.seed}, per_class={split.per_class}; asked "
                            f"for seed={seed}, per_class={per_class}. Use another --out")
        return split, False
    split = make_split(listing, per_class, seed)
    out.mkdir(parents=True, exist_ok=True)
    save_split(split, out)
    return split, True
