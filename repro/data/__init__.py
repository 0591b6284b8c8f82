"""FFCV loaders: training and evaluation pipelines, resolution per batch, DDP shards."""

from repro.data.loaders import Normalize, make_loader, resize_batch

__all__ = ["Normalize", "make_loader", "resize_batch"]
