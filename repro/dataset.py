"""A prepared data set (``data_prep``) as runs see it: its folder, manifest and the paper's sub-train /
sub-eval split. The pipeline reads one from disk (``repro.pipeline.prepare_data``); methods receive it in
their ``Context``. Its ``identity`` (content, not location) enters every cache key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class PreparedData:
    folder: Path
    manifest: dict[str, Any]
    sub_train: np.ndarray
    sub_eval: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def base_resolution(self) -> int:
        return int(self.manifest["base_resolution"])

    def identity(self) -> dict[str, Any]:
        """What names the data in cache keys: its content, not where it lies (moving it keeps the cache)."""
        return {"classes": self.num_classes, "base_resolution": self.base_resolution,
                "listing_sha256": self.manifest["listing_sha256"],
                "betons": {k: v["quick_sha256"] for k, v in self.manifest["betons"].items()},
                "split": self.manifest["split"]}

    def describe(self) -> dict[str, Any]:
        """``identity`` plus the folder, for records."""
        return {"path": str(self.folder), **self.identity()}
