"""The architectures the baseline authors released, as ArchConfigs with their provenance.

One JSON file per architecture in this folder (``<name>.json``): the ArchConfig, what the method's own paper
or repository reports for it, what *our* paper's tables print for that method (``tables``' transcription in
``shared/paper/TABLES.md``), and where the numbers come from: repository, file, commit, the numbers exactly as
released (``source.raw``) and how they were mapped onto our width slots (``source.conversion``). ``load(name)``
and ``entries()`` read and validate them; ``python -m baselines.zoo list`` compares our MACs with the reported
ones.

MACs agreement (``ZooEntry.macs_check``): our exact count (``repro.cost.flops.count_macs``) agrees with the
reported figure when it lies in ``reported_tolerance`` (the wider of 2% and half a unit of the last printed
digit). Where the released network has a layout that ArchConfig cannot express (Caffe's stride on the first
1x1 conv, MetaPruning's expansion conv in MobileNetV2's first block, SFP's narrow conv3 scattered into a full
residual), the entry carries ``native``: a named layout whose MACs ``native_macs`` computes, and that count may
be the one that agrees. Otherwise the entry must explain the gap in ``macs_note``; a note on an entry that
agrees is an error too, so notes cannot go stale.

Indexing conventions met on the way (details in each file's ``source.conversion``):

* MetaPruning encodes widths as indices into ``channel_scale = [0.10, 0.13, ..., 1.00]`` (31 values) times a
  base width. Its released MobileNet V1 builder (``evaluating/mobilenet_v1.py``) reads ``rngs[i - 1]`` for
  layer ``i``, so the stem takes ``rngs[-1]`` and every layer takes its predecessor's index, whereas the
  PruningNet and the search read ``rngs[i]``; we store what the released builder (which is also the
  train-from-scratch script) builds. Its MobileNet V2 base is a ~1.4x network (44, 22, 33, ... 448), block
  outputs share one index per stage, and expanded widths are ``6 x`` the block's *base* input times the scale.
* AMC's MobileNet V2 lists channels as (input, hidden, output) triples that overlap by one. The AMC README
  links its released models as mit-han-lab/amc-compressed-models; the stored copy of that repository (same
  README, "AMC Compressed Models") is mit-han-lab/amc-models, which is what the files cite.

Not found (left out, not invented):

* MetaPruning MobileNet V1 0.5x (142M) and 0.25x (41M), MobileNet V2 300M/140M/43M: the README links the
  trained models (OneDrive) but liuzechun/MetaPruning holds one encoding per family only (the V1 0.75x, a
  ~104M V2 that matches no README row, the ResNet-50 0.5x). The fork alexsword88/MetaPruning repeats the V1
  encoding and replaces the V2 one with its own search (the authors' is commented out there);
  Yewei-Liu/MetaPruning is an unrelated project of the same name.
* MetaPruning ResNet-50 0.75x (2.0G): same reason.
* AutoPruner ResNet-50 (0.5, 0.3): Roll920/AutoPruner (ResNet50/50, ResNet50/30) keeps the learned channel
  indices in checkpoints (``channel_index.pth``) that are not in the repository; its logs only print the
  running pruning rate per group.
* CP (2x) ResNet-50: ethanhe42/channel-pruning ``temp/resnet-50-cp.prototxt`` (@3e016db9) holds it, but its
  ``Filter`` layers feed each block's first conv a *subset* of the residual channels (input-channel pruning),
  which an ArchConfig (every block reads the full stage width) cannot express; not converted.
* NetAdapt MobileNet V1 (ImageNet): the authors' repository denru01/netadapt releases a CIFAR-10 MobileNet
  and its adapted model only (docs/mobilenet/README.md); no ImageNet architecture.
* ThiNet's released ResNet-50 prototxts/caffemodels: not stored (Roll920/ThiNet holds the VGG-16 GAP and Tiny
  prototxts only); the ThiNet entries follow from the released pruning code and the rates 0.7/0.5/0.3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.arch import FAMILIES, ArchConfig
from repro.cost.flops import count_macs, count_macs_scaled, format_macs, parse_macs, reported_tolerance

ZOO_DIR = Path(__file__).resolve().parent
METHODS = ("amc", "metapruning", "netadapt", "thinet", "cp", "sfp", "autopruner")
MACS_RTOL = 0.02  # relative tolerance of the MACs check (widened to half a printed digit, see reported_tolerance)

_TOP_FIELDS = {"name", "method", "family", "arch", "reported", "ours_paper", "source"}
_OPTIONAL_FIELDS = {"macs_note", "native"}
_REPORTED_FIELDS = {"paper", "macs", "top1", "where"}
_OURS_FIELDS = {"table", "row", "column", "macs", "top1"}
_SOURCE_FIELDS = {"repository", "path", "commit", "raw", "conversion"}
_NATIVE_FIELDS = {"layout", "params", "note"}
_NAME = re.compile(r"^[a-z0-9_.]+$")
_TOP1 = re.compile(r"^\d{1,3}(\.\d+)?%$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class ZooError(ValueError):
    """A zoo file that does not validate; the message names the file and the field."""


@dataclass(frozen=True)
class MacsCheck:
    """How an entry's MACs compare with the reported figure. ``status``: ``agrees`` (our exact count is within
    tolerance), ``agrees_native`` (only the released layout's count is), ``noted`` (neither, or nothing is
    reported, and ``macs_note`` says why) or ``unexplained`` (neither, and no note: an error)."""

    status: str
    ours: int
    native: int | None
    reported: float | None
    low: float | None
    high: float | None

    @property
    def ok(self) -> bool:
        return self.status != "unexplained"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    method: str
    family: str
    arch: ArchConfig
    reported: Mapping[str, Any]
    ours_paper: Mapping[str, Any] | None
    source: Mapping[str, Any]
    macs_note: str | None = None
    native: Mapping[str, Any] | None = None
    path: Path | None = None

    def macs(self) -> int:
        """Our exact conv + linear MACs (1000 classes)."""
        return count_macs(self.arch)

    def macs_scaled(self) -> float:
        return count_macs_scaled(self.arch)

    def native_macs(self) -> int | None:
        """MACs of the network in the layout the authors released (``native``), or None if it is ours."""
        if self.native is None:
            return None
        return NATIVE_LAYOUTS[self.native["layout"]](self.arch, self.native["params"])

    def reported_macs(self) -> float | None:
        text = self.reported["macs"]
        return None if text is None else parse_macs(text)

    def macs_check(self, relative: float = MACS_RTOL) -> MacsCheck:
        ours, native = self.macs(), self.native_macs()
        text = self.reported["macs"]
        low = high = value = None
        status = "unexplained"
        if text is not None:
            value = parse_macs(text)
            low, high = reported_tolerance(text, relative)
            if low <= ours < high:
                status = "agrees"
            elif native is not None and low <= native < high:
                status = "agrees_native"
        if status == "unexplained" and self.macs_note:
            status = "noted"
        return MacsCheck(status, ours, native, value, low, high)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "method": self.method, "family": self.family, "arch": self.arch.to_dict(),
               "reported": dict(self.reported), "ours_paper": None if self.ours_paper is None else
               dict(self.ours_paper), "source": dict(self.source)}
        if self.macs_note is not None:
            out["macs_note"] = self.macs_note
        if self.native is not None:
            out["native"] = dict(self.native)
        return out


# --- the released layouts that ArchConfig cannot express -------------------------------------------------

def _sides(resolution: int, halvings: int) -> list[int]:
    sides = [resolution]
    for _ in range(halvings):
        sides.append(-(-sides[-1] // 2))
    return sides


def _resnet50_macs(arch: ArchConfig, stride_on_conv1: bool, conv3_out: list[int] | None) -> int:
    """ResNet-50 MACs with the stride on conv1 (Caffe) or conv2 (torchvision), and conv3 optionally narrower
    than the residual it is added to (``conv3_out`` per stage)."""
    w, sides = arch.widths, _sides(arch.resolution, 6)
    macs = 147 * w[0] * sides[1] ** 2
    level, cin = 2, w[0]
    for block in arch.active_blocks():
        slot = dict(block.slots)
        c1, c2, c3 = w[slot["conv1"]], w[slot["conv2"]], w[slot["conv3"]]
        area_in = sides[level] ** 2
        if block.stride == 2:
            level += 1
        area = sides[level] ** 2
        out3 = c3 if conv3_out is None else conv3_out[block.stage]
        macs += cin * c1 * (area if stride_on_conv1 else area_in) + 9 * c1 * c2 * area + c2 * out3 * area
        if "downsample" in slot:
            macs += cin * w[slot["downsample"]] * area
        cin = c3
    return macs + cin * arch.num_classes


def _caffe_resnet50(arch: ArchConfig, params: Mapping[str, Any]) -> int:
    return _resnet50_macs(arch, stride_on_conv1=True, conv3_out=None)


def _sfp_resnet50(arch: ArchConfig, params: Mapping[str, Any]) -> int:
    return _resnet50_macs(arch, stride_on_conv1=False, conv3_out=list(params["conv3_kept"]))


def _metapruning_mobilenet_v2(arch: ArchConfig, params: Mapping[str, Any]) -> int:
    """MetaPruning's first block expands (1x1 stem -> mid, depthwise on mid); ours does not."""
    stem, project, mid = arch.widths[0], arch.widths[1], params["first_block_mid"]
    area = _sides(arch.resolution, 1)[1] ** 2
    ours_first = (9 * stem + stem * project) * area
    theirs_first = (stem * mid + 9 * mid + mid * project) * area
    return count_macs(arch) - ours_first + theirs_first


NATIVE_LAYOUTS: Mapping[str, Callable[[ArchConfig, Mapping[str, Any]], int]] = {
    "caffe_resnet50": _caffe_resnet50,
    "sfp_resnet50": _sfp_resnet50,
    "metapruning_mobilenet_v2": _metapruning_mobilenet_v2,
}
_NATIVE_FAMILY = {"caffe_resnet50": "resnet50", "sfp_resnet50": "resnet50",
                  "metapruning_mobilenet_v2": "mobilenet_v2"}
_NATIVE_PARAMS = {"caffe_resnet50": set(), "sfp_resnet50": {"conv3_kept"},
                  "metapruning_mobilenet_v2": {"first_block_mid"}}


# --- loading and validation -------------------------------------------------------------------------------

def _fail(path: Path, field: str, message: str) -> ZooError:
    return ZooError(f"{path}: field {field!r}: {message}")


def _require_keys(path: Path, field: str, value: Any, required: set[str],
                  optional: frozenset[str] | set[str] = frozenset()) -> None:
    if not isinstance(value, Mapping):
        raise _fail(path, field, f"must be a JSON object, got {type(value).__name__}")
    missing = required - set(value)
    if missing:
        raise _fail(path, field, f"missing key(s) {sorted(missing)}")
    unknown = set(value) - required - optional
    if unknown:
        raise _fail(path, field, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(required | optional)}")


def _text(path: Path, field: str, value: Any, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, field, f"must be a non-empty string{' or null' if nullable else ''}, got {value!r}")


def _macs_text(path: Path, field: str, value: Any) -> None:
    if value is None:
        return
    _text(path, field, value)
    try:
        parse_macs(value)
    except ValueError as e:
        raise _fail(path, field, str(e)) from None


def _top1_text(path: Path, field: str, value: Any) -> None:
    if value is not None and not (isinstance(value, str) and _TOP1.match(value)):
        raise _fail(path, field, f"must be a percentage such as '70.5%' or null, got {value!r}")


def entry_from_dict(data: Any, path: Path) -> ZooEntry:
    """Validate one zoo file's parsed JSON; every error names the file and the field."""
    _require_keys(path, "<top level>", data, _TOP_FIELDS, _OPTIONAL_FIELDS)
    name = data["name"]
    _text(path, "name", name)
    if not _NAME.match(name):
        raise _fail(path, "name", f"{name!r} may hold only lower-case letters, digits, '_' and '.'")
    if path.suffix == ".json" and path.stem != name:
        raise _fail(path, "name", f"{name!r} must equal the file name {path.stem!r}")
    if data["method"] not in METHODS:
        raise _fail(path, "method", f"{data['method']!r} is not known; allowed: {', '.join(METHODS)}")
    if data["family"] not in FAMILIES:
        raise _fail(path, "family", f"{data['family']!r} is not known; allowed: {', '.join(FAMILIES)}")
    try:
        arch = ArchConfig.from_dict(data["arch"])
    except (ValueError, TypeError) as e:
        raise _fail(path, "arch", str(e)) from None
    if arch.family != data["family"]:
        raise _fail(path, "arch.family", f"{arch.family!r} differs from family {data['family']!r}")
    if arch.num_classes != 1000:
        raise _fail(path, "arch.num_classes", f"{arch.num_classes}: released ImageNet networks have 1000")

    reported = data["reported"]
    _require_keys(path, "reported", reported, _REPORTED_FIELDS)
    _text(path, "reported.paper", reported["paper"])
    _text(path, "reported.where", reported["where"])
    _macs_text(path, "reported.macs", reported["macs"])
    _top1_text(path, "reported.top1", reported["top1"])

    ours = data["ours_paper"]
    if ours is not None:
        _require_keys(path, "ours_paper", ours, _OURS_FIELDS, {"note"})
        if ours["table"] not in (1, 2, 3):
            raise _fail(path, "ours_paper.table", f"{ours['table']!r} must be 1, 2 or 3")
        for key in ("row", "column"):
            _text(path, f"ours_paper.{key}", ours[key])
        _macs_text(path, "ours_paper.macs", ours["macs"])
        _top1_text(path, "ours_paper.top1", ours["top1"])
        if "note" in ours:
            _text(path, "ours_paper.note", ours["note"])

    source = data["source"]
    _require_keys(path, "source", source, _SOURCE_FIELDS)
    for key in ("repository", "path", "conversion"):
        _text(path, f"source.{key}", source[key])
    if source["repository"].count("/") != 1:
        raise _fail(path, "source.repository", f"{source['repository']!r} must be 'owner/name'")
    if source["commit"] is not None and not (isinstance(source["commit"], str) and _COMMIT.match(source["commit"])):
        raise _fail(path, "source.commit", f"{source['commit']!r} must be 40 lower-case hex digits or null")
    if source["raw"] in (None, "", [], {}):
        raise _fail(path, "source.raw", "must hold the numbers as released")

    note = data.get("macs_note")
    if "macs_note" in data:
        _text(path, "macs_note", note)

    native = data.get("native")
    if "native" in data:
        _require_keys(path, "native", native, _NATIVE_FIELDS)
        layout = native["layout"]
        if layout not in NATIVE_LAYOUTS:
            raise _fail(path, "native.layout", f"{layout!r} is not known; allowed: {', '.join(NATIVE_LAYOUTS)}")
        if _NATIVE_FAMILY[layout] != arch.family:
            raise _fail(path, "native.layout", f"{layout!r} is a {_NATIVE_FAMILY[layout]} layout, not {arch.family}")
        _require_keys(path, "native.params", native["params"], _NATIVE_PARAMS[layout])
        _text(path, "native.note", native["note"])

    entry = ZooEntry(name, data["method"], data["family"], arch, reported, ours, source, note, native, path)
    check = entry.macs_check()
    if not check.ok:
        raise _fail(path, "reported.macs", f"our count {check.ours / 1e6:.2f}M is outside "
                    f"[{check.low / 1e6:.2f}M, {check.high / 1e6:.2f}M) and no macs_note explains it")
    if note and check.reported is not None and (check.low <= check.ours < check.high or (
            check.native is not None and check.low <= check.native < check.high)):
        raise _fail(path, "macs_note", "the MACs agree with the reported figure; remove the stale note")
    return entry


def load_file(path: str | Path) -> ZooEntry:
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"{path}: no such zoo file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{path}: not valid JSON: {e}") from None
    return entry_from_dict(data, path)


def names() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.json"))


def load(name: str) -> ZooEntry:
    path = ZOO_DIR / f"{name}.json"
    if not path.is_file():
        raise ZooError(f"no zoo entry {name!r}; known: {', '.join(names())}")
    return load_file(path)


def entries() -> list[ZooEntry]:
    """Every zoo entry, validated, sorted by name."""
    return [load(n) for n in names()]


# --- the list table ---------------------------------------------------------------------------------------

def table_notes(table: int) -> list[str]:
    """One line per released architecture whose method has a row in ``table``: its MACs by our count beside
    what its own paper and our paper print (the tables show both where they differ)."""
    out = []
    for e in entries():
        if not e.ours_paper or e.ours_paper.get("table") != table:
            continue
        native = e.native_macs()
        mine = format_macs(e.macs()) + ("" if native is None else f" ({format_macs(native)} in its released layout)")
        out.append(f"{e.ours_paper['row']}, {e.ours_paper['column']}: the released `{e.name}` counts {mine} MACs by "
                   f"our convention; {e.reported['paper']} reports {e.reported['macs'] or '—'}, this paper prints "
                   f"{e.ours_paper['macs']}")
    return out


def _m(value: float | None) -> str:
    return "—" if value is None else format_macs(value)


def _diff(ours: float, ref: float | None) -> str:
    return "—" if ref is None else f"{100 * (ours - ref) / ref:+.1f}%"


def table_rows(items: list[ZooEntry]) -> list[list[str]]:
    header = ["name", "family", "res", "ours MACs", "ours scaled", "native", "reported", "vs reported",
              "our paper", "vs our paper", "check"]
    rows = [header]
    for e in items:
        check = e.macs_check()
        paper = None if e.ours_paper is None or e.ours_paper["macs"] is None else parse_macs(e.ours_paper["macs"])
        rows.append([e.name, e.family, str(e.arch.resolution), _m(check.ours), _m(e.macs_scaled()),
                     _m(check.native), e.reported["macs"] or "—", _diff(check.ours, check.reported),
                     "—" if paper is None else e.ours_paper["macs"], _diff(check.ours, paper), check.status])
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["ZooEntry", "ZooError", "MacsCheck", "load", "load_file", "entries", "names", "entry_from_dict",
           "NATIVE_LAYOUTS", "ZOO_DIR", "table_rows", "format_table"]
