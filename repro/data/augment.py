"""Training augmentation that is a function of (seed, epoch, sample): random-resized crop + horizontal flip.

FFCV 1.0.2's ``RandomResizedCropRGBImageDecoder`` and ``RandomHorizontalFlip`` draw from numba's
per-thread random state, which the Loader's ``seed`` does not reach, so two runs with the same seed see
different crops and a resumed run cannot end with the same weights as an uninterrupted one. This decoder
reseeds numba's generator for every sample from (seed, the first index of the sample's batch, the sample's
index) before drawing its crop and its flip. The batch's first index changes from epoch to epoch because
the epoch's order is drawn from (seed, epoch), so the crops change every epoch, yet every draw is fixed by
(seed, epoch, sample) whichever thread decodes it.

The decoding itself is FFCV's (``imdecode``, ``resize_crop`` and ``get_random_crop`` from ffcv 1.0.2);
only the seeding and the fused flip are ours. It is a jitted operation and comes first in the pipeline.
"""

from __future__ import annotations

import numpy as np
from ffcv.fields.rgb_image import IMAGE_MODES, RandomResizedCropRGBImageDecoder, get_random_crop
from ffcv.libffcv import imdecode, resize_crop
from ffcv.pipeline.compiler import Compiler


def _mix(seed, batch_key, sample):
    """A 31-bit seed from three integers (wrapping 64-bit arithmetic, splitmix-style)."""
    x = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    x ^= np.uint64(batch_key) + np.uint64(0xBF58476D1CE4E5B9) + (x << np.uint64(6))
    x ^= np.uint64(sample) + np.uint64(0x94D049BB133111EB) + (x >> np.uint64(2))
    x ^= x >> np.uint64(31)
    return np.int64(x & np.uint64(0x7FFFFFFF))


class SeededRandomResizedCrop(RandomResizedCropRGBImageDecoder):
    """Random-resized crop (and, with ``flip``, a horizontal flip with probability 1/2), seeded per sample."""

    def __init__(self, output_size: tuple[int, int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), seed: int = 0, flip: bool = True):
        super().__init__(output_size, scale=scale, ratio=ratio)
        self.seed = int(seed)
        self.flip = bool(flip)

    def generate_code(self):
        jpg = IMAGE_MODES["jpg"]
        read = self.memory_read
        parallel_range = Compiler.get_iterator()
        decode_jpeg = Compiler.compile(imdecode)
        crop_and_resize = Compiler.compile(resize_crop)
        draw_crop = Compiler.compile(get_random_crop)
        mix = Compiler.compile(_mix)
        scale, ratio = np.array(self.scale), np.array(self.ratio)
        seed, flip = self.seed, self.flip

        def decode(batch_indices, my_storage, metadata, storage_state):
            out, scratch = my_storage
            batch_key = batch_indices[0]
            for k in parallel_range(len(batch_indices)):
                sample = batch_indices[k]
                meta = metadata[sample]
                data = read(meta["data_ptr"], storage_state)
                height, width = np.uint32(meta["height"]), np.uint32(meta["width"])
                if meta["mode"] == jpg:
                    buffer = scratch[k]
                    decode_jpeg(data, buffer, height, width, height, width, 0, 0, 1, 1, False, False)
                    image = buffer.reshape(-1)[: 3 * height * width].reshape(height, width, 3)
                else:
                    image = data.reshape(height, width, 3)
                np.random.seed(mix(seed, batch_key, sample))
                top, left, h, w = draw_crop(height, width, scale, ratio)
                crop_and_resize(image, top, top + h, left, left + w, out[k])
                if flip and np.random.random() < 0.5:
                    out[k] = out[k][:, ::-1].copy()
            return out[: len(batch_indices)]

        decode.is_parallel = True
        return decode
