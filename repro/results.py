"""RunRecord: what one table cell (or one shared artifact) produced, and everything that produced it.

One JSON file per record under ``results/<profile>/records/``, written atomically (temporary file, fsync,
rename), with a versioned schema. ``load_records(folder)`` reads a folder as a pandas DataFrame for the
tables; a malformed or foreign file is an error that names it (``skip_bad=True`` collects those instead).

Units: ``top1`` / ``top5`` are fractions in [0, 1]; ``macs`` are multiply-accumulates at ImageNet geometry
(``macs_scaled`` in the paper's ``MACs(224) (r/224)^2`` convention); times are seconds; latency in ms.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from repro.atomic import atomic_write_text

SCHEMA_VERSION = 1
RECORD_KIND = "ahpo-repro/run-record"


class RecordError(ValueError):
    """A record file that cannot be read as a RunRecord; the message names the file."""


@dataclass(frozen=True)
class RunRecord:
    key: str  # hash of the inputs (``input_key``): a cell whose record exists is not run again
    kind: str  # "cell" for a table cell, or the artifact kind ("retrain", "reference", ...)
    method: str
    variant: str
    family: str
    constraint: dict[str, Any]  # Constraint as a mapping: kind, limit (the table column's)
    arch: dict[str, Any]  # ArchConfig.to_dict()
    profile: str
    profile_config: dict[str, Any]  # the resolved profile
    dataset: dict[str, Any]  # name/path and the manifest's checksums
    seed: int
    macs: int | None = None
    macs_scaled: float | None = None
    params: int | None = None
    top1: float | None = None  # fraction
    top5: float | None = None  # fraction
    latency: dict[str, Any] | None = None  # device, batch_size, ms, reference_ms, ratio, settings
    epochs: int | None = None
    search_seconds: float | None = None
    retrain_seconds: float | None = None
    retrain_protocol: str | None = None  # "scratch" | "finetune"
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> key of shared artifacts used
    environment: dict[str, Any] = field(default_factory=dict)  # code version, library versions, hardware
    extra: dict[str, Any] = field(default_factory=dict)  # method- or artifact-specific details
    # the cell's operating point (``repro.constraint.Target.to_dict``): kind, value, source, and for a FLOPs
    # target the MACs the search had to meet; None: the column's header (and every record made before targets)
    target: dict[str, Any] | None = None
    created: str = ""
    schema: int = SCHEMA_VERSION
    record_kind: str = RECORD_KIND

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "record") -> RunRecord:
        if not isinstance(data, dict) or data.get("record_kind") != RECORD_KIND:
            raise RecordError(f"{where} is not a run record of this suite (record_kind != {RECORD_KIND!r})")
        if data.get("schema") != SCHEMA_VERSION:
            raise RecordError(f"{where} has schema {data.get('schema')!r}; this code reads {SCHEMA_VERSION}")
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        missing = sorted(n for n, f in cls.__dataclass_fields__.items() if n not in data
                         and f.default is MISSING and f.default_factory is MISSING)
        if unknown or missing:
            raise RecordError(f"{where}: unknown fields {unknown}, missing fields {missing}")
        for name, kinds in _FIELD_TYPES.items():  # a hand-edited or foreign file: named, not a traceback later
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise RecordError(f"{where}: {name}={value!r} must be {' or '.join(k.__name__ for k in kinds)}")
        return cls(**data)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("key", "kind", "method", "variant", "family", "profile", "created"), (str,)),
    **dict.fromkeys(("constraint", "arch", "profile_config", "dataset", "artifacts", "environment", "extra",
                     "latency", "target"), (dict,)),
    **dict.fromkeys(("seed", "macs", "params", "epochs"), (int,)),
    **dict.fromkeys(("macs_scaled", "top1", "top5", "search_seconds", "retrain_seconds"), (int, float)),
}


def record_path(folder: Path, record: RunRecord) -> Path:
    return Path(folder) / f"{record.kind}-{record.method}-{record.key}.json"


def write_record(folder: Path, record: RunRecord) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = record_path(folder, record)
    atomic_write_text(path, record.to_json())
    return path


def find_record(folder: Path, key: str) -> RunRecord | None:
    for path in Path(folder).glob(f"*-{key}.json"):
        return read_record(path)
    return None


def read_record(path: Path) -> RunRecord:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: not a readable JSON record ({e})") from None
    try:
        return RunRecord.from_dict(data, str(path))
    except TypeError as e:
        raise RecordError(f"{path}: {e}") from None


def load_records(folder: Path, skip_bad: bool = False) -> tuple[Any, list[str]]:
    """All records in ``folder`` as a DataFrame (one row per record, nested fields as dicts), and the
    list of files skipped as bad (only with ``skip_bad``; otherwise the first bad file raises)."""
    import pandas as pd

    rows, bad = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            rows.append(asdict(read_record(path)))
        except RecordError as e:
            if not skip_bad:
                raise
            bad.append(str(e))
    return pd.DataFrame(rows), bad
