"""The embedded data set: small, deterministic, learnable on a CPU in a minute, and far from saturated.

"Tiny shapes and textures": 36x36 JPEG images of one object on a cluttered background. A class is a
(shape, texture) pair: 4 coarse shapes (disc, square, triangle, cross) times 4 fine textures (horizontal
stripes, vertical stripes, checker, dots) = 16 classes. The textures have a period of 3-4.5 px at 36 px,
so a network that sees the image at half the data set's base resolution of 32 px loses most of them (the
shape survives, the texture aliases): accuracy depends on input resolution. The object is always brighter
or darker than the background, by 0.24-0.6 of the range; its colour, size, position, texture period, phase
and contrast, the background blobs and the pixel noise vary per image. Each image is drawn from
``numpy.random.default_rng((seed, split, label, index))``, so the same seed gives the same files. Why 36 px
and not larger: on 2 CPU cores a MobileNet trains about twice as fast at 32 px as at 64 px, and the smoke
profile has to train a whole table in minutes (evidence and its limits: ``docs/tiny_dataset.md``). Other
versions of the set (``VARIANTS``: more classes, coarser textures, 72 px with base 64) are measured for the
proxy protocol (``docs/proxy_protocol.md``); the default's images do not depend on them.

``python -m data_prep tiny --out DIR`` writes ``DIR/imagefolder/{train,val}/<class>/*.jpg`` and then
prepares it exactly like ImageNet (split, .beton files, manifest) into ``DIR``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

SIZE = 36  # the default's stored image side, pixels; its base resolution (ImageNet's 224) is 32
BASE_RESOLUTION = 32
RADIUS = (7.0, 13.5)  # object radius, pixels at 36 px (scaled with a variant's size)
PERIOD = (3.0, 4.5)  # texture period, pixels: resolved at 32 px, aliased at 16
SHAPES = ("disc", "square", "triangle", "cross")
TEXTURES = ("hstripes", "vstripes", "checker", "dots")
TRAIN_PER_CLASS = 400
VAL_PER_CLASS = 150
SPLIT_IDS = {"train": 0, "val": 1}
BLOB_CONTRAST = 0.3  # background clutter
TEXTURE_CONTRAST = (0.25, 0.5)  # amplitude of the fine texture on the object
NOISE = 0.04  # pixel noise (std, on a 0-1 scale)
GENERATOR = 2  # bumped whenever the images change: a folder made by another version is refused


@dataclass(frozen=True)
class Variant:
    """Which classes a version of the set has, how fine its textures are and at what side it is drawn;
    everything else is shared."""

    shapes: tuple[str, ...]
    textures: tuple[str, ...]
    period: tuple[float, float]  # texture period at ``size`` px, drawn per image
    generator: int
    size: int = SIZE  # stored image side, pixels; object, blobs and textures scale with it
    base_resolution: int = BASE_RESOLUTION  # the set's "224": the full-resolution cells' input side
    texture_contrast: tuple[float, float] = TEXTURE_CONTRAST  # the texture's amplitude on the object, drawn per image
    background_texture: bool = False  # the background carries a texture of its own (any kind), as the object does

    def drawn_at(self, size: int, base_resolution: int) -> Variant:
        """The same set drawn at another side: the same random draws, its texture periods scaled with it."""
        k = size / self.size
        return dataclasses.replace(self, period=(self.period[0] * k, self.period[1] * k), size=size,
                                   base_resolution=base_resolution)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(f"{s}_{t}" for s in self.shapes for t in self.textures)


# "tiny" is the embedded default (smoke); "tiny64" is a harder version measured for the proxy protocol (#22,
# docs/proxy_protocol.md): 8 shapes x 8 textures, so one confused pair of textures or shapes costs 1/8 of the
# classes instead of 1/4, and texture periods of 3-8 px, so that half the base resolution (16 px, where a period
# needs about 5 px at 36 to survive) loses some of the textures, not all of them; "tiny-coarse" is the default's
# 16 classes with periods of 4-8 px: a texture signal that is easier to find (the default's seeds that end low
# confuse checker with stripes) and mostly survives at 16 px
_COARSE = Variant(SHAPES, TEXTURES, (4.0, 8.0), 1)
_SIXTY_FOUR = Variant(SHAPES + ("diamond", "ring", "wedge", "hexagon"),
                      TEXTURES + ("diagonal", "antidiagonal", "rings", "plain"), (3.0, 8.0), 1)
# tiny64's fault: its diagonal and antidiagonal textures are each other's mirror image, so under the training
# loader's horizontal flip their 16 classes come in 8 pairs that no network can tell apart (about half of those
# classes' validation images are wrong whatever the width: top-1 near 87.5% at best, docs/proxy_protocol.md).
# "tiny64f" is tiny64 with the antidiagonal texture replaced by chevron, its own mirror image: the same draws,
# so every image outside the 8 chevron classes is tiny64's
_SIXTY_FOUR_FLIP_SAFE = dataclasses.replace(
    _SIXTY_FOUR, textures=TEXTURES + ("diagonal", "chevron", "rings", "plain"))
# tiny64f at three times the side with the background textured too (the "-bg" variants below)
_SIXTY_FOUR_BG = dataclasses.replace(_SIXTY_FOUR_FLIP_SAFE.drawn_at(108, 96), background_texture=True)
VARIANTS = {
    "tiny": Variant(SHAPES, TEXTURES, PERIOD, GENERATOR),
    "tiny-coarse": _COARSE,
    "tiny64": _SIXTY_FOUR,
    # tiny-coarse and tiny64 drawn at twice the side (72 px, base 64): half resolution is 32 px, where a stride-32
    # network still has 1x1 maps only in its last stage; tiny64-72's many classes mean that one feature a seed
    # finds late costs less
    "tiny-coarse72": _COARSE.drawn_at(72, 64),
    "tiny64-72": _SIXTY_FOUR.drawn_at(72, 64),
    # three times the side (108 px, base 96): half resolution is 48 px, where the last stage sees 2x2 maps
    "tiny64-108": _SIXTY_FOUR.drawn_at(108, 96),
    "tiny64f": _SIXTY_FOUR_FLIP_SAFE,
    "tiny64f-72": _SIXTY_FOUR_FLIP_SAFE.drawn_at(72, 64),
    "tiny64f-108": _SIXTY_FOUR_FLIP_SAFE.drawn_at(108, 96),
    # its textures at 0.4 of the contrast (the same draws, scaled): without the mirror twins tiny64f-108's 48
    # other classes read 95% at 0.25x (docs/proxy_protocol.md), so the set needs a harder signal to keep widths apart
    "tiny64f-108-lc": dataclasses.replace(_SIXTY_FOUR_FLIP_SAFE.drawn_at(108, 96), texture_contrast=(0.1, 0.2)),
    # the background textured too, with any of the 8 textures: the network has to tell the object's texture from
    # its surround's, not merely find a texture
    "tiny64f-108-bg": _SIXTY_FOUR_BG,
    # tiny64f-108-bg with the diagonal texture replaced by spokes (the same draws): checker is the sum of two
    # diagonal gratings and chevron alternates them, so diagonal, checker and chevron differ only in how the two
    # diagonal orientations are combined; a narrow network that has not found that conjunction confuses the three
    # (MobileNet V1 0.25x's low seed, docs/proxy_protocol.md), one that has does not, and which it is changes
    # with a seed or a reduction order. A probe: at 8 epochs its 0.25x seeds spread as
    # much as on tiny64f-108-bg (sd 9.6), at 16 they settle (sd 1.4, 5 seeds)
    "tiny64s-108-bg": dataclasses.replace(_SIXTY_FOUR_BG, textures=TEXTURES + ("spokes", "chevron", "rings", "plain")),
}
# variants with two classes that are each other's mirror image: kept so that the sweep's records made on them
# can be reproduced, and refused nowhere, but a warning names the fault when one is prepared
MIRROR_TWINS = {"tiny64": ("diagonal", "antidiagonal"), "tiny64-72": ("diagonal", "antidiagonal"),
                "tiny64-108": ("diagonal", "antidiagonal")}
DEFAULT_VARIANT = "tiny"
CLASSES = VARIANTS[DEFAULT_VARIANT].classes  # the default's 16: (shape, texture) pairs, shape first


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        from data_prep.imagefolder import DataError

        raise DataError(f"tiny data set variant {name!r} does not exist; choose one of {sorted(VARIANTS)}")
    return VARIANTS[name]


def _texture(kind: str, period: float, phase: float, cx: float = 0.0, cy: float = 0.0,
             size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    fx, fy = 2 * np.pi * (x + phase) / period, 2 * np.pi * (y + phase * 0.7) / period
    if kind == "hstripes":
        t = np.sin(fy)
    elif kind == "vstripes":
        t = np.sin(fx)
    elif kind == "checker":
        t = 1.6 * np.sin(fx) * np.sin(fy)
    elif kind == "dots":
        t = np.cos(fx) + np.cos(fy) - 1.0
    elif kind == "diagonal":
        t = np.sin(2 * np.pi * ((x + y) / np.sqrt(2) + phase) / period)
    elif kind == "antidiagonal":
        t = np.sin(2 * np.pi * ((x - y) / np.sqrt(2) + phase) / period)
    elif kind == "chevron":  # horizontal zigzag stripes: a triangle wave in x shifts the stripes in y, and a
        # triangle wave's mirror image is itself shifted, so the texture is its own mirror image (unlike diagonal's)
        zigzag = np.abs(np.mod(x + phase, period) - period / 2)
        t = np.sin(2 * np.pi * (y + zigzag + phase * 0.7) / period)
    elif kind == "spokes":  # rays from the object's centre, about one period apart at a middle-sized object's rim;
        # a mirror image turns the angle around, which shifts the rays: the texture is its own mirror image
        rays = max(3, round(2 * np.pi * 10.0 * size / SIZE / period))
        t = np.sin(rays * np.arctan2(y - cy, x - cx) + 2 * np.pi * phase / period)
    elif kind == "rings":  # concentric about the object's centre
        t = np.sin(2 * np.pi * (np.hypot(x - cx, y - cy) + phase) / period)
    elif kind == "plain":
        t = np.zeros_like(x)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.clip(t, -1, 1)


def _mask(shape: str, cx: float, cy: float, r: float, size: int = SIZE) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    if shape == "disc":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "square":
        a = 0.85 * r
        d.rectangle([cx - a, cy - a, cx + a, cy + a], fill=255)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=255)
    elif shape == "cross":
        w = 0.4 * r
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=255)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=255)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=255)
    elif shape == "ring":  # an annulus: the hole shows the background
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        h = 0.5 * r
        d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=0)
    elif shape == "wedge":  # the triangle upside down
        d.polygon([(cx, cy + r), (cx - r, cy - 0.8 * r), (cx + r, cy - 0.8 * r)], fill=255)
    elif shape == "hexagon":
        a = np.pi / 3 * np.arange(6)
        d.polygon([(cx + r * np.cos(t), cy + r * np.sin(t)) for t in a], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(img, dtype=np.float32)[..., None] / 255


def render(label: int, rng: np.random.Generator, kind: str = DEFAULT_VARIANT) -> np.ndarray:
    """One HxWx3 uint8 image of class ``label`` of variant ``kind`` (the draws are the same for every
    variant, so the default's images are those of generator 2)."""
    from PIL import Image

    v = variant(kind)
    n, scale = v.size, v.size / SIZE
    shape, texture = v.shapes[label // len(v.textures)], v.textures[label % len(v.textures)]
    small = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    blobs = np.asarray(Image.fromarray(small).resize((n, n), Image.BICUBIC), np.float32) / 255 - 0.5
    # object and background always differ in brightness (by 0.24-0.6): the shape is visible
    background = rng.uniform(0, 0.3) if rng.random() < 0.5 else rng.uniform(0.7, 1.0)
    img = background * 0.6 + 0.2 + rng.uniform(-0.15, 0.15, 3)[None, None, :] + blobs * BLOB_CONTRAST
    r = rng.uniform(*RADIUS) * scale
    cx, cy = rng.uniform(r, n - r), rng.uniform(r, n - r)
    mask = _mask(shape, cx, cy, r, n)
    tex = _texture(texture, rng.uniform(*v.period), rng.uniform(0, 10) * scale, cx, cy, n)[..., None]
    fg = (1 - background) * 0.6 + 0.2 + rng.uniform(-0.15, 0.15, 3)
    obj = fg[None, None, :] + rng.uniform(*v.texture_contrast) * tex
    noise = rng.normal(0, NOISE, (n, n, 3))
    if v.background_texture:  # drawn after everything else, so the object is the same picture as without it
        kind = v.textures[int(rng.integers(len(v.textures)))]
        around = _texture(kind, rng.uniform(*v.period), rng.uniform(0, 10) * scale, n / 2, n / 2, n)[..., None]
        img = img + rng.uniform(*v.texture_contrast) * around
    img = img * (1 - mask) + obj * mask + noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _write_one(job: tuple[str, int, int, int, str, str]) -> None:
    from PIL import Image

    split, label, index, seed, path, kind = job
    rng = np.random.default_rng((seed, SPLIT_IDS[split], label, index))
    tmp = f"{path}.tmp"
    Image.fromarray(render(label, rng, kind)).save(tmp, format="JPEG", quality=90)
    os.replace(tmp, path)  # an interrupted run never leaves a half-written image that a rerun would keep


def write_imagefolder(root: Path, seed: int = 0, train_per_class: int = TRAIN_PER_CLASS,
                      val_per_class: int = VAL_PER_CLASS, quiet: bool = False, kind: str = DEFAULT_VARIANT) -> int:
    """Write the JPEG tree of variant ``kind`` (skips files already there: they are deterministic); returns
    images written."""
    import json
    from multiprocessing import Pool

    from data_prep.imagefolder import DataError
    from repro.atomic import atomic_write_text

    v = variant(kind)  # a misspelt variant is refused before anything is written
    params = {"seed": seed, "train_per_class": train_per_class, "val_per_class": val_per_class, "size": v.size,
              "generator": v.generator,
              **({} if kind == DEFAULT_VARIANT else {"variant": kind})}  # the default's marker is as it was
    marker = root / "tiny.json"
    if marker.is_file() and json.loads(marker.read_text()) != params:
        raise DataError(f"{root} holds a tiny data set made with {marker.read_text().strip()}, not {params}; "
                        f"delete that folder (or use another one) and run again")

    jobs = []
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(v.classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                path = d / f"{name}_{i:05d}.jpg"
                if not path.exists():
                    jobs.append((split, label, i, seed, str(path), kind))
    with Pool(os.cpu_count() or 1) as pool:
        for _ in tqdm(pool.imap_unordered(_write_one, jobs, chunksize=64), total=len(jobs),
                      desc="tiny images", unit="img", disable=True if (quiet or not jobs) else None):
            pass
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(params))
    return len(jobs)


def prepare_tiny(out: Path, seed: int = 0, per_class: int = 50, quiet: bool = False, log=print,
                 train_per_class: int = TRAIN_PER_CLASS, val_per_class: int = VAL_PER_CLASS,
                 kind: str = DEFAULT_VARIANT) -> dict:
    """Write the embedded set's JPEG tree into ``out/imagefolder`` and prepare it into ``out``; the one way
    every command makes it (``data_prep tiny``, a profile with ``data.source: tiny``), so that the files
    and the cache keys built from them are the same whichever command made them. FFCV's writer lays pages
    out in the order its processes finish, so with two or more the same images give different bytes (the
    smoke data set's ``train.beton`` changed checksum between two builds on 2 cores); one process writes it
    here, in the same time on 2 cores (about 11 s). ``train_per_class`` / ``val_per_class`` size the set (the
    proxy profile's is larger); image ``i`` of a class is the same image at every size. ``kind`` names the
    variant (``VARIANTS``)."""
    from data_prep.write import WriteParams, prepare

    if kind in MIRROR_TWINS:
        a, b = MIRROR_TWINS[kind]
        log(f"warning: variant {kind!r}: its {a} and {b} textures are each other's mirror image, so a training "
            f"loader that flips images cannot tell their classes apart (a coin toss on a quarter of the classes: about "
            f"12.5 points of top-1 lost whatever the network); {kind.replace('64', '64f')!r} is the same set without "
            "that fault")
    made = write_imagefolder(Path(out) / "imagefolder", seed, train_per_class, val_per_class, quiet=quiet,
                             kind=kind)
    if made:
        log(f"tiny: {made} new images in {Path(out) / 'imagefolder'}")
    return prepare(Path(out) / "imagefolder", out, per_class, seed, WriteParams(), None, variant(kind).base_resolution,
                   workers=1, quiet=quiet, log=log)
