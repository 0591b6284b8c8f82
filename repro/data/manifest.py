"""Reading what ``data_prep`` wrote: ``manifest.json`` and checks that a ``.beton`` is the file it describes.

A truncated file, or a file from another data set, is refused with one line that says how to fix it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1


class DataError(ValueError):
    """A data set that cannot be used as given; the message says what and how to fix it."""


def fingerprint(path: Path) -> dict[str, Any]:
    """Size and sha256 of the first and last MiB: cheap on a 300 GB file, and a truncated or swapped file
    changes it. The sample count comes from FFCV's header."""
    from ffcv.reader import Reader

    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    try:
        num_samples = int(Reader(str(path)).num_samples)
    except Exception as e:  # noqa: BLE001 - any reader failure means the file is not a complete .beton
        raise DataError(f"{path} is not a readable FFCV file ({type(e).__name__}: {e}); delete it and write "
                        f"it again with `python -m data_prep prepare`") from None
    return {"bytes": size, "quick_sha256": h.hexdigest(), "num_samples": num_samples}


def read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); delete it and run `python -m data_prep prepare`") from None
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise DataError(f"{path} has schema {manifest.get('schema')!r}, this code reads {MANIFEST_SCHEMA}")
    return manifest


def check_beton(out: Path, name: str, manifest: dict[str, Any] | None = None) -> Path:
    """The path of ``<out>/<name>.beton`` after checking it is the file the manifest describes."""
    out = Path(out)
    manifest = manifest if manifest is not None else read_manifest(out)
    if manifest is None:
        raise DataError(f"{out} has no {MANIFEST}: prepare the data set with `python -m data_prep prepare`")
    entry = manifest["betons"].get(name)
    path = out / f"{name}.beton"
    if entry is None or not path.is_file():
        raise DataError(f"{path} is missing; write it with `python -m data_prep prepare`")
    expected = {k: entry[k] for k in ("bytes", "quick_sha256", "num_samples")}
    found = fingerprint(path)
    if found != expected:
        what = "truncated" if found["bytes"] < expected["bytes"] else "not the file that the manifest describes"
        raise DataError(f"{path} is {what} ({found['bytes']:,} bytes, {found['num_samples']} samples; manifest: "
                        f"{expected['bytes']:,} bytes, {expected['num_samples']} samples). Delete it and rerun "
                        f"`python -m data_prep prepare`")
    return path
