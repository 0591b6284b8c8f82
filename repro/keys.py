"""Cache keys: a stable hash of a run's inputs. Every cell, search and shared artifact (reference network,
PruningNet, latency table) is named by the key of what determines it, so an unchanged input finds its earlier
result and a changed one never does. ``tests/expected_keys.json`` pins the keys of a set of reference cells:
a change of key is a deliberate, committed decision."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def input_key(**inputs: Any) -> str:
    """A stable 16-hex-digit hash of JSON-able inputs (dict order does not matter)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
