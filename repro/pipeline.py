"""One table cell = search -> retrain -> measure -> record; cached, resumable, the same for every method.

``run_cell`` looks for the cell's record first (its key is a hash of every input: method, variant,
family, constraint, the resolved profile, the seed and the data set's checksums) and does nothing when it
exists. Otherwise it asks the method for an architecture, retrains it as the method declares (from
scratch on the full training split, or fine-tuning the method's weights), measures it at ImageNet geometry
and writes the record atomically. The retraining is a shared artifact with a record of its own, keyed by
what determines it (architecture, recipe, data, seed, protocol, starting weights): two cells that end in
the same network (Table 1's latency "Baseline" and its "Channel" row) train it once. A crash leaves the
records already written, and the interrupted retraining resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_prep.tiny import variant
from repro.arch import ArchConfig
from repro.config import to_mapping
from repro.constraint import HEADER, Constraint, Target
from repro.cost.budget import make_budget
from repro.cost.flops import count_macs, count_macs_scaled, count_params
from repro.cost.latency import (
    LatencyTable,
    UnstableMeasurement,
    compare_latency,
    device_id,
    device_key,
    open_table,
)
from repro.data.manifest import DataError, check_beton, read_manifest
from repro.dataset import PreparedData
from repro.discover import check_methods, get_method, load_methods
from repro.distributed import barrier, broadcast_object, is_main, require_single_process, world_size
from repro.hardware import environment, now
from repro.keys import input_key
from repro.lock import hold
from repro.method import (
    SEARCHES,
    Artifact,
    Context,
    Method,
    SearchResult,
    SearchStore,
    TrainedNetwork,
    entry_for_family,
    search_key,
)
from repro.profiles import Profile
from repro.reference import reference_arch
from repro.results import RunRecord, find_record, record_path, write_record
from repro.train.trainer import seed_everything

RECORDS, CHECKPOINTS, WEIGHTS, LOCKS = "records", "checkpoints", "weights", "locks"


def data_folder(profile: Profile, root: Path = Path(".")) -> Path:
    """The profile's prepared-data folder (a relative path is relative to ``root``)."""
    return (Path(root) / profile.data.path).resolve()


def prepare_data(profile: Profile, root: Path = Path("."), quiet: bool = False,
                 log: Callable[[str], None] = print) -> PreparedData:
    """The profile's data set, made first if the profile says how (``data.source``); under torchrun rank 0
    makes it while the others wait."""
    if profile.data.source == "tiny":
        _check_variant(profile)
    if not is_main():
        barrier()
    folder = data_folder(profile, root)
    manifest = read_manifest(folder)
    if manifest is None or "val" not in manifest.get("betons", {}):
        source = profile.data.source
        _refuse_foreign_folder(folder)
        if source is None:
            raise DataError(f"no prepared data set in {folder}: run `python -m data_prep prepare --imagefolder "
                            f"DIR --out {folder}` or set data.source in the profile")
        per_class = 50 if profile.data.per_class is None else profile.data.per_class
        split_seed = 0 if profile.data.split_seed is None else profile.data.split_seed
        if source == "tiny":
            from data_prep.tiny import prepare_tiny

            tiny = profile.data.tiny
            log(f"making the embedded data set ({tiny.variant}, {tiny.train_per_class} training and "
                f"{tiny.val_per_class} validation images per class) in {folder}")
            manifest = prepare_tiny(folder, split_seed, per_class, quiet=quiet, log=log,
                                    train_per_class=tiny.train_per_class, val_per_class=tiny.val_per_class,
                                    kind=tiny.variant)
        else:
            from data_prep.write import WriteParams, prepare

            manifest = prepare(Path(source), folder, per_class, split_seed, WriteParams(), profile.data.devkit,
                               quiet=quiet, log=log)
    if is_main():
        barrier()
    if profile.data.source == "tiny":
        _check_tiny(folder, profile)
    for name in ("train", "val"):
        check_beton(folder, name, manifest)
    _check_split(folder, manifest, profile)
    if len(manifest["classes"]) < 2:
        raise DataError(f"{folder} has {len(manifest['classes'])} class: a classification data set needs at least 2 "
                        f"(prepare it again from an ImageFolder with two or more class folders)")
    from data_prep.split import load_split

    split = load_split(folder, manifest["listing_sha256"]["train"])
    return PreparedData(folder, manifest, split.sub_train, split.sub_eval)


def _check_variant(profile: Profile) -> None:
    try:
        variant(profile.data.tiny.variant)
    except DataError as e:
        raise DataError(f"data.tiny.variant: {e}") from None


def _check_tiny(folder: Path, profile: Profile) -> None:
    """An embedded set of another version than the profile's (the smoke set in the proxy profile's folder) is
    refused: its classes and images are another data set's. Another size is allowed (a smaller copy passed with
    --data, as the tests do); the records name the data set's size either way."""
    marker = folder / "imagefolder" / "tiny.json"
    if not marker.is_file():
        return  # prepared from an ImageFolder of the user's: not the embedded set
    made = json.loads(marker.read_text()).get("variant", "tiny")
    wanted = profile.data.tiny.variant
    if made != wanted:
        raise DataError(f"{folder} holds the embedded set's version {made!r}, but profile {profile.name} trains on "
                        f"{wanted!r} (data.tiny.variant): give another --data folder, or delete {folder} and "
                        f"run again to make it")


def _check_split(folder: Path, manifest: dict[str, Any], profile: Profile) -> None:
    """A profile that states its split (``data.per_class``, ``data.split_seed``) runs only on data split so:
    the split is the data set's, drawn when it was prepared, and a setting that changed nothing would be
    recorded as if it had."""
    split = manifest.get("split", {})
    for key, ours, theirs in (("per_class", profile.data.per_class, split.get("per_class")),
                              ("split_seed", profile.data.split_seed, split.get("seed"))):
        if ours is not None and ours != theirs:
            raise DataError(f"data.{key}={ours}, but {folder} was prepared with {key}={theirs}: a data set keeps "
                            f"the split it was prepared with. Prepare one with that split into another folder "
                            f"(`python -m data_prep prepare --per-class N --seed S --out DIR`, then --data DIR), "
                            f"or drop the setting to run on this split")


# what data_prep writes into a prepared folder (and the embedded set's source tree): a folder holding anything
# else is someone's, and is never written into
OWN_FILES = {"imagefolder", "manifest.json", "train.beton", "val.beton", "sub_train.npy", "sub_eval.npy",
             "split.json"}


def _refuse_foreign_folder(folder: Path) -> None:
    """A data folder without a complete manifest is made only where nothing else lies: an ImageFolder tree
    passed as ``--data`` must be prepared into a folder of its own first."""
    if not folder.is_dir():
        return
    foreign = sorted(p.name for p in folder.iterdir()  # our unfinished writes: *.partial, .NAME.PID.tmp
                     if p.name not in OWN_FILES and ".partial" not in p.name and not p.name.endswith(".tmp"))
    if not foreign:
        return
    if {"train", "val"} <= set(foreign):
        raise DataError(f"{folder} is an ImageFolder tree, not a prepared data set: prepare it into a folder of "
                        f"its own with `python -m data_prep prepare --imagefolder {folder} --out DIR`, then pass "
                        f"--data DIR")
    raise DataError(f"{folder} holds files that are not a prepared data set ({', '.join(foreign[:5])}"
                    f"{', ...' if len(foreign) > 5 else ''}); nothing was written there: pass --data a prepared "
                    f"folder (`python -m data_prep prepare`), or an empty or new one to make the data set in")


class PipelineShared:
    """The pipeline's side of ``repro.method.Shared``: reference networks trained as retraining artifacts, and
    the records of artifacts that methods make."""

    def __init__(self, profile: Profile, seed: int, data: PreparedData, results: Path, device: Any,
                 log: Callable[[str], None]):
        self.profile, self.seed, self.data, self.results, self.device, self.log = (
            profile, seed, data, Path(results), device, log)

    def reference(self, family: str) -> TrainedNetwork:
        """The family's full network (the canonical 1.0x, maximum depth) trained from scratch with the profile's
        recipe on the full training split: the trained network that the pruning baselines start from. It is
        the retraining artifact of that architecture (trained once per profile, data and seed, and shared
        with any cell that ends in the same network)."""
        import torch

        from repro.models import build_model

        arch = ArchConfig.canonical(family)
        record = retrain_arch(arch, "scratch", None, self.profile, self.seed, self.data, self.results, self.device,
                              self.log)
        model = build_model(arch.replace(num_classes=self.data.num_classes))
        weights = self.results / record.artifacts["weights"]
        if not weights.is_file():
            raise DataError(f"the reference {family} network's record exists but its weights {weights} do not: "
                            f"delete {record_path(self.results / RECORDS, record)} to train it again")
        state = torch.load(weights, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        return TrainedNetwork(model, record.key, record.top1)

    def artifact_done(self, key: str) -> bool:
        return find_record(self.results / RECORDS, key) is not None

    def lock(self, key: str, what: str) -> contextlib.AbstractContextManager[None]:
        return _locked(self.results, f"artifact-{key}", what, self.log)

    def publish(self, artifact: Artifact) -> None:
        if not is_main():
            return
        record = RunRecord(
            key=artifact.key, kind=artifact.kind, method=artifact.method, variant="", family=artifact.family,
            constraint={}, arch=artifact.arch.to_dict(), profile=self.profile.name,
            profile_config=artifact.settings, dataset=self.data.describe(), seed=self.seed, epochs=artifact.epochs,
            retrain_seconds=artifact.seconds,
            artifacts={name: str(Path(path).relative_to(self.results)) for name, path in artifact.files.items()},
            environment=environment(), created=now(), extra=artifact.extra)
        write_record(self.results / RECORDS, record)


def cell_key(method: str, variant: str, family: str, constraint: Constraint, profile: Profile, seed: int,
             data: PreparedData, target: Target = HEADER) -> str:
    settings = to_mapping(profile)
    # where the data lies and how many loader workers read it do not change a result
    # nor how it was made: the data's identity (its files and split) stands for its content
    settings["data"] = {k: v for k, v in settings["data"].items()
                        if k not in ("path", "workers", "source", "devkit", "per_class", "split_seed", "tiny")}
    # how latency is measured changes latency cells only (and where the tables lie, none)
    settings.pop("latency", None)
    # another family's recipe changes do not change this cell
    own_recipe = settings.get("train_by_family", {}).get(family)
    settings["train_by_family"] = {family: own_recipe} if own_recipe else {}
    if constraint.is_latency:  # and the device: a record from another CPU or GPU is not this cell's
        settings["latency"] = device_key(profile.latency.settings_for(constraint.kind))
    # a method's settings change its own cells only, resolved (defaults included) when the method is built
    registry = load_methods()
    own = (registry[method]().settings(profile.methods, family) if method in registry
           else entry_for_family(settings["methods"].get(method), f"methods.{method}", family))
    settings["methods"] = {} if own is None else {method: to_mapping(own)}
    # an operating point other than the header is another cell (a header's key is the one it always had)
    extra = {} if target.is_header else {"target": target.key()}
    return input_key(kind="cell", method=method, variant=variant, family=family, constraint=constraint.to_dict(),
                     profile=settings, seed=seed, data=data.identity(), **extra)


def run_cell(method_name: str, variant: str, family: str, constraint: Constraint, profile: Profile,
             seed: int, data: PreparedData, results: Path, device: Any = None,
             log: Callable[[str], None] = print, quiet: bool = False,
             target: Target = HEADER) -> tuple[RunRecord, bool]:
    """The cell's record, and whether this call produced it (False: it existed already, or another process
    made it while this one waited for the cell's lock). ``constraint`` is the column's; ``target`` the cell's
    operating point (``repro.constraint.Target``), the header unless given."""
    records = Path(results) / RECORDS
    key = cell_key(method_name, variant, family, constraint, profile, seed, data, target)
    existing = find_record(records, key)
    if existing is not None:
        return existing, False
    what = f"cell {method_name} {variant} {family} {constraint.label()} seed {seed}"
    if not target.is_header:
        what += f" at {target.label()}"
    with _locked(Path(results), f"cell-{key}", what, log):
        existing = _found_by_all(records, key)
        if existing is not None:
            return existing, False
        return _run_cell(key, method_name, variant, family, constraint, profile, seed, data, Path(results), device,
                         log, quiet, target), True


def reference_for_cell(method_name: str, variant: str, family: str, constraint: Constraint, profile: Profile,
                       seed: int, data: PreparedData, results: Path, device: Any = None,
                       log: Callable[[str], None] = print, target: Target = HEADER) -> str:
    """The reference network the cell's method starts from (``Method.work`` declares it), trained here as the
    retraining it is: under ``torchrun`` with DDP, what a Slurm task on several GPUs runs before the method's
    one-process search, which then finds it done (else the search would train it on one GPU). Says what it
    did: ``"cell done"`` (the cell's record exists), ``"none"`` (the method declares no reference) or
    ``"trained"`` (now, or found done)."""
    method = get_method(method_name)
    if find_record(Path(results) / RECORDS, cell_key(method_name, variant, family, constraint, profile, seed, data,
                                                     target)) is not None:
        return "cell done"
    works = method.work(family, variant, method.config(profile.methods, family), profile, 1.0) or []
    if not any(w.shared == "reference" for w in works):
        return "none"
    PipelineShared(profile, seed, data, Path(results), device, log).reference(family)
    return "trained"


def search_cell(method_name: str, variant: str, family: str, constraint: Constraint, profile: Profile, seed: int,
                data: PreparedData, results: Path, device: Any = None, log: Callable[[str], None] = print,
                quiet: bool = False, target: Target = HEADER) -> str:
    """Only the cell's search, in this one process, for a method that searches in one process: what a Slurm
    task on a node of several GPUs runs before ``torchrun`` retrains the found network with DDP (under
    ``torchrun`` such a search is refused, ``require_single_process``). Says what it did: ``"cell done"``,
    ``"distributed"`` (the method searches under torchrun with the retraining: nothing to do here) or
    ``"searched"`` (done now or found done)."""
    method = get_method(method_name)
    check_cell(method, variant, family, constraint, target)
    records = Path(results) / RECORDS
    key = cell_key(method_name, variant, family, constraint, profile, seed, data, target)
    if find_record(records, key) is not None:
        return "cell done"
    if method.distributed:
        return "distributed"
    require_single_process(f"{method_name}'s search (--search-only)")
    with _locked(Path(results), f"cell-{key}", f"cell {method_name} {variant} {family} {constraint.label()} seed "
                 f"{seed} (its search)", log):
        if find_record(records, key) is not None:
            return "cell done"
        _search_with_table(method, variant, family, constraint, profile, seed, data, Path(results), device, log,
                           quiet, target)
    return "searched"


def _search_with_table(method: Method, variant: str, family: str, constraint: Constraint, profile: Profile,
                       seed: int, data: PreparedData, results: Path, device: Any, log: Callable[[str], None],
                       quiet: bool, target: Target) -> tuple[SearchResult, LatencyTable | None]:
    """The cell's search (cached), with this machine's latency table open for a latency cell (``NotRunHere``
    without one) and saved after, since a search may add entries to it; the search's result and the table (None
    for a FLOPs cell)."""
    table = open_table(profile.latency, constraint.kind) if constraint.is_latency else None  # NotRunHere
    found = search(method, variant, family, constraint, profile, seed, data, results, table, device, log, quiet,
                   target)
    if table is not None:
        _save_table(table, log)
    return found, table


def _run_cell(key: str, method_name: str, variant: str, family: str, constraint: Constraint, profile: Profile,
              seed: int, data: PreparedData, results: Path, device: Any, log: Callable[[str], None],
              quiet: bool, target: Target) -> RunRecord:
    records = results / RECORDS
    check_methods(profile)
    method = get_method(method_name)
    check_cell(method, variant, family, constraint, target)
    found, table = _search_with_table(method, variant, family, constraint, profile, seed, data, Path(results),
                                      device, log, quiet, target)
    retrain = retrain_arch(found.arch, method.retrain, found.weights, profile, seed, data, Path(results), device,
                           log, recipe=method.retrain_recipe(profile, family))
    arch = found.arch.with_imagenet_geometry()
    latency = None if table is None else _measure_latency(arch, constraint, table, log)
    record = RunRecord(
        key=key, kind="cell", method=method_name, variant=variant, family=family,
        constraint=constraint.to_dict(), arch=arch.to_dict(), profile=profile.name,
        profile_config=to_mapping(profile), dataset=data.describe(), seed=seed,
        macs=count_macs(arch), macs_scaled=count_macs_scaled(arch), params=count_params(arch),
        top1=retrain.top1, top5=retrain.top5, epochs=retrain.epochs, search_seconds=found.seconds,
        retrain_seconds=retrain.retrain_seconds, retrain_protocol=method.retrain,
        artifacts={"retrain": retrain.key}, environment=environment(), created=now(),
        extra={"search": found.info}, latency=latency, target=_target_record(target, constraint, family),
    )
    if is_main():
        write_record(records, record)
    barrier()
    return record


def check_cell(method: Method, variant: str, family: str, constraint: Constraint, target: Target = HEADER) -> None:
    """Refuse a cell the method does not handle (its variants, families, constraint kinds and target kinds),
    naming them."""
    method.check(variant)
    if family not in method.families:
        raise ValueError(f"method {method.name!r} is not built for {family}; it handles: {', '.join(method.families)}")
    if constraint.kind not in method.constraint_kinds:
        raise ValueError(f"method {method.name!r} has no {constraint.kind} form; it runs under: "
                         f"{', '.join(method.constraint_kinds)}")
    if target.is_header:
        return
    if constraint.is_latency:
        raise ValueError(f"a {constraint.kind} cell runs at its header: target {target.label()} is for FLOPs columns")
    if target.kind not in method.target_kinds:
        raise ValueError(f"method {method.name!r} cannot run at a {target.kind} target ({target.label()}); it "
                         f"takes: {', '.join(method.target_kinds)}")


def _target_record(target: Target, constraint: Constraint, family: str) -> dict[str, Any] | None:
    """The record's ``target``: None for the header; else kind, value, source and the MACs the search met
    (a FLOPs or speed-up target; None for a rate)."""
    if target.is_header:
        return None
    searched = target.constraint(constraint, family)
    return {**target.to_dict(), "macs": None if target.kind == "rate" else searched.limit}


def check_feasible(method: Method, variant: str, family: str, constraint: Constraint, profile: Profile) -> None:
    """Refuse a FLOPs limit below the cheapest network the method can make, before any work, with one message
    for every method (a latency limit is a reference network's, which the uniform rows are and the searches
    project onto)."""
    if constraint.is_latency:
        return
    cheapest = method.cheapest_for(family, variant, profile.methods)
    budget = make_budget(constraint, family)
    if cheapest is not None and not budget.fits(cheapest):
        raise ValueError(f"{constraint.label()} is below the cheapest {family} network {method.name} {variant} can "
                         f"make ({budget.format(budget.cost(cheapest))}): give a limit of at least that")


def search(method: Method, variant: str, family: str, constraint: Constraint, profile: Profile, seed: int,
           data: PreparedData, results: Path, table: LatencyTable | None = None, device: Any = None,
           log: Callable[[str], None] = print, quiet: bool = False, target: Target = HEADER) -> SearchResult:
    """A method's search for one cell, done once: the search's key names every input; a finished search's
    result is returned as it was (with the time it took then); otherwise the method runs (in one process
    unless it is ``distributed``), with every random generator seeded from ``seed``, timed, and its result is
    written under ``<results>/searches/<key>/``. ``constraint`` is the column's; the search runs under
    ``target``'s (a FLOPs or speed-up target's budget, else the column's)."""
    cfg = method.config(profile.methods, family)
    latency = device_key(profile.latency.settings_for(constraint.kind)) if constraint.is_latency else None
    key = search_key(method.name, variant, family, constraint, to_mapping(cfg), profile, seed, data, latency,
                     target)
    constraint = target.constraint(constraint, family)
    store = SearchStore(results / SEARCHES, key)
    found = store.load(log)
    if found is not None:
        log(f"{method.name} search already done: {store.folder} ({found.seconds:.0f} s when it ran)")
        return found
    if not method.distributed:
        require_single_process(f"{method.name}'s search")
    if target.kind != "rate":  # a rate is applied whatever it costs: no budget to be feasible
        check_feasible(method, variant, family, constraint, profile)  # before the latency table measures the limit
    budget = make_budget(constraint, family, table)
    seed_everything(seed)  # a search's random draws follow from its seed, not from what ran before it here
    ctx = Context(family, variant, constraint, cfg, budget, store, profile, seed, data,
                  PipelineShared(profile, seed, data, results, device, log), results, device, log, quiet, target)
    start = time.perf_counter()
    found = method.search(ctx)
    seconds = time.perf_counter() - start if found.seconds is None else found.seconds
    found = replace(found, arch=found.arch.with_imagenet_geometry(), seconds=seconds,
                    info={"key": key, "folder": str(store.folder.relative_to(results)), **found.info})
    if is_main():
        store.save(found)
    barrier()
    return found


def _save_table(table: Any, log: Callable[[str], None]) -> None:
    table.save()
    if is_main():
        log(f"latency table {table.path}: {len(table.entries)} layers, {table.build_seconds:.0f} s of measuring "
            f"in all")


def _measure_latency(arch: ArchConfig, constraint: Constraint, table: Any,
                     log: Callable[[str], None], attempts: int = 8, pause_s: float = 2.0) -> dict[str, Any]:
    """The found network and the column's reference, measured alternately in this process on the column's
    device, with the table's predictions of both. Rank 0 measures (the other ranks would compete for the same
    device) and sends the numbers to the others. A spread above the settings' max_cv is measured again after
    ``pause_s``, up to ``attempts`` times, then refused; the search's result and the retraining are kept, so a
    rerun of the cell only measures. (On this suite's 2-core VM, idle, batch-1 MobileNet V2 measurements had
    CVs of 0.06-0.24 from one second to the next: 3 attempts back to back failed 2 of 9 CPU-latency cells.)"""
    reference = reference_arch(arch.family, constraint.limit)
    out: dict[str, Any] | None = None
    if is_main():
        for attempt in range(attempts):
            try:
                out = compare_latency(arch, reference, table.settings)
                break
            except UnstableMeasurement as e:
                log(f"latency measurement {attempt + 1} of {attempts} refused: {e}")
                out = {"error": str(e)}
                if attempt + 1 < attempts:
                    time.sleep(pause_s)
    out = broadcast_object(out)
    if "error" in out:
        raise UnstableMeasurement(f"{out['error']} (the search and the retraining are kept: rerunning the cell on "
                                  f"a quieter machine only measures)")
    out.update(predicted_ms=table.predict(arch), reference_predicted_ms=table.predict(reference),
               table=device_id(table.settings))
    _save_table(table, log)
    if is_main():
        log(f"latency on {out['device']}: {out['ms']:.3f} ms against the reference's {out['reference_ms']:.3f} ms "
            f"(ratio {out['ratio']:.3f}; predicted {out['predicted_ms']:.3f} / {out['reference_predicted_ms']:.3f} "
            f"ms)")
    return out


def retrain_arch(arch: ArchConfig, protocol: str, weights: dict | None, profile: Profile, seed: int,
                 data: PreparedData, results: Path, device: Any = None,
                 log: Callable[[str], None] = print, recipe: Any = None) -> RunRecord:
    """Train ``arch`` as ``protocol`` says (with ``recipe``, by default the profile's for the family), once per
    distinct input; its own record (kind "retrain")."""
    recipe = profile.train_for(arch.family) if recipe is None else recipe
    images = sum(data.manifest["counts"]["train"].values())
    if images < recipe.batch_size * world_size():  # no full batch: zero steps, and a record of an untrained net
        raise DataError(f"{data.folder} has {images} training images, fewer than one batch of train.batch_size="
                        f"{recipe.batch_size} x {world_size()} process(es): lower train.batch_size or add images")
    weights_id = None if weights is None else _state_hash(weights)
    key = input_key(kind="retrain", arch=arch.with_imagenet_geometry().to_dict(), protocol=protocol,
                    recipe=to_mapping(recipe), data=data.identity(), seed=seed, weights=weights_id,
                    decode=profile.data.decode)
    records = results / RECORDS
    existing = find_record(records, key)
    if existing is not None:
        return existing
    with _locked(results, f"retrain-{key}", f"training {arch.family} ({protocol}, seed {seed})", log):
        existing = _found_by_all(records, key)
        if existing is not None:
            return existing
        return _retrain(key, arch, protocol, weights, profile, seed, data, results, device, log, recipe)


def _retrain(key: str, arch: ArchConfig, protocol: str, weights: dict | None, profile: Profile, seed: int,
             data: PreparedData, results: Path, device: Any, log: Callable[[str], None], recipe: Any) -> RunRecord:
    from repro.train.trainer import TrainData, fit, initial_model

    records = results / RECORDS
    model_arch = arch.replace(num_classes=data.num_classes)
    model = initial_model(model_arch, seed)
    if weights is not None:
        model.load_state_dict(weights)
    # make_loader checks each file against the manifest
    train_data = TrainData(data.folder / "train.beton", data.folder / "val.beton", data.num_classes,
                           data.base_resolution, workers=profile.data.workers, decode=profile.data.decode)
    outcome = fit(model, train_data, recipe, seed, arch.resolution, results / CHECKPOINTS / key, device, log)
    weights_path = results / WEIGHTS / f"{key}.pt"
    if is_main():
        from repro.train.trainer import save_checkpoint

        weights_path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(weights_path, model=model.state_dict(), arch=model_arch.to_dict())
    record = RunRecord(
        key=key, kind="retrain", method=protocol, variant="", family=arch.family, constraint={},
        arch=model_arch.to_dict(), profile=profile.name, profile_config={"train": to_mapping(recipe)},
        dataset=data.describe(), seed=seed, top1=outcome["top1"], top5=outcome["top5"], epochs=recipe.epochs,
        retrain_seconds=outcome["train_seconds"], retrain_protocol=protocol,
        artifacts={"weights": str(weights_path.relative_to(results))}, environment=environment(), created=now(),
        extra={k: outcome[k] for k in ("resolution", "resumed", "loading", "images_per_second", "loss")},
    )
    if is_main():
        write_record(records, record)
    barrier()
    return record


def _locked(results: Path, name: str, what: str, log: Callable[[str], None]):
    """The lock of a cell or shared artifact (``repro.lock``), held by rank 0 for the whole job under torchrun."""
    return hold(results / LOCKS / f"{name}.lock", what, log) if is_main() else contextlib.nullcontext()


def _found_by_all(records: Path, key: str) -> RunRecord | None:
    """The record, if the process this one waited for made it; every rank takes rank 0's answer."""
    found = find_record(records, key) if is_main() else None
    if not broadcast_object(found is not None):
        return None
    return found if found is not None else find_record(records, key)


def _state_hash(state: dict) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
