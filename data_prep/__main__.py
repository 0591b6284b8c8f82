"""``python -m data_prep {split,prepare,tiny}``: ImageFolder trees to the paper's split and FFCV files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.imagefolder import DataError, list_imagefolder
from data_prep.split import ensure_split
from data_prep.tiny import VARIANTS
from data_prep.write import WRITE_MODES, WriteParams, prepare
from repro.exit import run_and_exit


def _add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imagefolder", type=Path, required=True, help="folder with train/ (and val/)")
    p.add_argument("--out", type=Path, required=True, help="where the split, .beton files and manifest go")
    p.add_argument("--per-class", type=int, default=50, help="sub-eval images per class (paper: 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devkit", type=Path, help="ImageNet devkit folder, for a flat val/")


def _add_write_args(p: argparse.ArgumentParser) -> None:
    d = WriteParams()
    p.add_argument("--write-mode", choices=WRITE_MODES, default=d.write_mode)
    p.add_argument("--max-resolution", type=int, default=d.max_resolution, help="longest side kept, pixels")
    p.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    p.add_argument("--compress-probability", type=float, default=d.compress_probability)
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _params(a: argparse.Namespace) -> WriteParams:
    return WriteParams(a.write_mode, a.max_resolution, a.jpeg_quality, a.compress_probability)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="draw the sub-train / sub-eval split only")
    _add_split_args(s)
    w = sub.add_parser("prepare", help="split, then write train.beton, val.beton and manifest.json")
    _add_split_args(w)
    _add_write_args(w)
    w.add_argument("--base-resolution", type=int, default=224,
                   help="the images' scale as a fraction of ImageNet's 224 (224 for ImageNet)")
    t = sub.add_parser("tiny", help="make the embedded data set and prepare it")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--seed", type=int, default=0, help="draws the images and the split")
    t.add_argument("--per-class", type=int, default=50, help="sub-eval images per class (paper: 50)")
    sizes = ", ".join(f"{name} ({len(v.classes)} classes, {v.size} px, base {v.base_resolution})"
                      for name, v in VARIANTS.items())
    t.add_argument("--variant", default="tiny", help=f"which version of the set: {sizes}; tiny is the smoke "
                   "profile's, the others are the proxy sweep's (docs/proxy_protocol.md)")
    t.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        if a.command == "split":
            train, _ = list_imagefolder(a.imagefolder, a.devkit)
            split, drawn = ensure_split(train, a.out, a.per_class, a.seed)
            print(f"{'wrote' if drawn else 'kept'} split in {a.out}: {len(split.sub_train)} sub-train, "
                  f"{len(split.sub_eval)} sub-eval")
        elif a.command == "prepare":
            prepare(a.imagefolder, a.out, a.per_class, a.seed, _params(a), a.devkit, a.base_resolution,
                    a.workers, a.quiet)
        else:
            from data_prep import tiny

            tiny.prepare_tiny(a.out, a.seed, a.per_class, quiet=a.quiet, kind=a.variant)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_and_exit(main)
