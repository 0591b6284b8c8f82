"""Reading an ImageFolder tree laid out like ImageNet, with torchvision's labels.

``train/<class>/*`` (and ``val/<class>/*``, or ``val/*`` flat with the ILSVRC devkit's ground truth).
Classes are the sorted folder names and samples are listed in torchvision's ``ImageFolder`` order (sorted
``os.walk`` per class, files with an image extension), so a label here is the label torchvision gives the
same file. ``verify`` decodes every image once, in parallel, to find unreadable files before a long
write, and counts the files that will be converted to RGB JPEG (ImageNet has a few CMYK JPEGs and PNGs
named ``.JPEG``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

from tqdm import tqdm

from repro.data.manifest import DataError

# torchvision.datasets.folder.IMG_EXTENSIONS
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"


@dataclass(frozen=True)
class Listing:
    """The files of one split of an ImageFolder tree, in torchvision's order, with their labels."""

    root: Path
    classes: tuple[str, ...]
    paths: tuple[str, ...]  # relative to root
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def checksum(self) -> str:
        """sha256 of the class list and every (path, label): a listing's identity for split files."""
        h = hashlib.sha256()
        h.update("\n".join(self.classes).encode())
        for p, y in zip(self.paths, self.labels, strict=True):
            h.update(f"\n{p}\t{y}".encode())
        return h.hexdigest()

    def counts(self) -> dict[str, int]:
        c = Counter(self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def list_classes(split_dir: Path) -> tuple[str, ...]:
    return tuple(sorted(e.name for e in os.scandir(split_dir) if e.is_dir()))


def list_class_folders(split_dir: str | Path, classes: tuple[str, ...] | None = None) -> Listing:
    """``split_dir/<class>/**/<image>`` in torchvision ImageFolder order."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is not a folder; expected an ImageFolder split with one folder per class")
    found = list_classes(split_dir)
    every_class_needed = classes is None
    if classes is None:
        classes = found
    elif set(found) - set(classes):
        extra = sorted(set(found) - set(classes))[:5]
        raise DataError(f"{split_dir} has class folders that train/ does not: {extra}")
    if not classes:
        raise DataError(f"{split_dir} has no class folders")
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        before = len(paths)
        if class_dir.is_dir():
            for root, _, files in sorted(os.walk(class_dir, followlinks=True)):
                for f in sorted(files):
                    if _is_image(f):
                        paths.append(os.path.relpath(os.path.join(root, f), split_dir))
                        labels.append(label)
        if len(paths) == before and (every_class_needed or class_dir.is_dir()):
            raise DataError(f"class folder {class_dir} has no images (extensions: {', '.join(IMG_EXTENSIONS)}); "
                            f"add images or remove the folder")
    return Listing(split_dir, tuple(classes), tuple(paths), tuple(labels))


def list_flat_val(val_dir: str | Path, devkit: str | Path, classes: tuple[str, ...]) -> Listing:
    """ImageNet's flat ``val/`` with the devkit: ``data/meta.mat`` maps ILSVRC2012 ids to WordNet ids
    (the class folder names of ``train/``), ``data/ILSVRC2012_validation_ground_truth.txt`` gives the id of
    each validation image in file-name order."""
    from scipy.io import loadmat

    val_dir, devkit = Path(val_dir), Path(devkit)
    data = devkit / "data" if (devkit / "data").is_dir() else devkit
    meta, truth = data / "meta.mat", data / DEVKIT_GROUND_TRUTH
    for f in (meta, truth):
        if not f.is_file():
            raise DataError(f"devkit file {f} is missing; pass --devkit pointing at ILSVRC2012_devkit_t12")
    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    wnid_of_id = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    ids = [int(line) for line in truth.read_text().split()]
    files = sorted(f for f in os.listdir(val_dir) if _is_image(f))
    if len(files) != len(ids):
        raise DataError(f"{val_dir} has {len(files)} images but {truth.name} lists {len(ids)}")
    index = {name: i for i, name in enumerate(classes)}
    labels = []
    for f, i in zip(files, ids, strict=True):
        wnid = wnid_of_id.get(i)
        if wnid not in index:
            raise DataError(f"validation image {f} has class id {i} ({wnid}), which is not a train/ class folder")
        labels.append(index[wnid])
    return Listing(val_dir, classes, tuple(files), tuple(labels))


def list_imagefolder(root: str | Path, devkit: str | Path | None = None) -> tuple[Listing, Listing | None]:
    """The train and val listings of an ImageNet-like tree (val is None when there is no ``val/``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    train = list_class_folders(root / "train")
    val_dir = root / "val"
    if not val_dir.is_dir():
        return train, None
    if list_classes(val_dir):
        return train, list_class_folders(val_dir, train.classes)
    if devkit is None:
        raise DataError(f"{val_dir} is flat (no class folders): pass --devkit with ImageNet's devkit so the "
                        f"labels can be read, or sort val/ into class folders")
    return train, list_flat_val(val_dir, devkit, train.classes)


# --- one decoding pass ----------------------------------------------------------------------------

@dataclass
class Verification:
    total: int = 0
    conversions: Counter = field(default_factory=Counter)  # "PNG/RGBA" -> count (non RGB-JPEG files)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def converted(self) -> int:
        return sum(self.conversions.values())


def inspect_image(path: str) -> tuple[str, str, str | None]:
    """(format, mode, error) after a full decode (JPEGs decoded at 1/8 scale: same entropy data, faster)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt, mode = im.format or "?", im.mode
            if fmt == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        return fmt, mode, None
    except Exception as e:  # noqa: BLE001 - any decoder failure makes the file unusable; reported by name
        return "?", "?", f"{type(e).__name__}: {e}"


def verify(listing: Listing, workers: int = 0, quiet: bool = False) -> Verification:
    """Decode every image of ``listing``; count the ones that are not RGB JPEGs; list the unreadable."""
    workers = workers or os.cpu_count() or 1
    paths = [str(listing.root / p) for p in listing.paths]
    out = Verification(total=len(paths))
    bar = tqdm(total=len(paths), desc=f"verify {listing.root.name}", unit="img", disable=True if quiet else None)
    with Pool(workers) as pool:
        for path, (fmt, mode, err) in zip(paths, pool.imap(inspect_image, paths, chunksize=64), strict=True):
            if err is not None:
                out.unreadable.append((path, err))
            elif fmt != "JPEG" or mode != "RGB":
                out.conversions[f"{fmt}/{mode}"] += 1
            bar.update()
    bar.close()
    if out.unreadable:
        first = "; ".join(f"{p} ({e})" for p, e in out.unreadable[:3])
        raise DataError(f"{len(out.unreadable)} unreadable image(s) in {listing.root}: {first}. Replace or "
                        f"remove them and run again")
    return out
