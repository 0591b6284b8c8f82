"""The paper's method: the NES estimator, the joint optimizer on a planted loss, the constraint on every
scored vector, determinism, two DDP ranks, and a whole cell on the tiny data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_data

from repro.arch import ArchConfig
from repro.constraint import Constraint
from repro.cost.budget import Budget, flops_budget
from repro.discover import get_method
from repro.profiles import load_profile
from repro.search.joint import HyperConfig, JointConfig, hyper_steps_of, joint_search
from repro.search.nes import NESConfig, adapt_sigma, antithetic_gradient
from repro.search.proposed import NetworkProblem, proposed_config
from repro.space import SearchSpace

# --- the estimator ---------------------------------------------------------------------------------


def _smooth(v: np.ndarray) -> float:
    return float(np.sin(3 * v).sum() + (v ** 2 * np.arange(1, len(v) + 1)).sum())


def _smooth_grad(v: np.ndarray) -> np.ndarray:
    return 3 * np.cos(3 * v) + 2 * v * np.arange(1, len(v) + 1)


def _estimate(v, pairs, sigma, rng):
    z = rng.standard_normal((pairs, len(v)))
    plus = np.array([_smooth(v + sigma * zk) for zk in z])
    minus = np.array([_smooth(v - sigma * zk) for zk in z])
    return antithetic_gradient(z, plus, minus, np.full(len(v), sigma))


def test_nes_recovers_the_gradient_of_a_smooth_function():
    rng = np.random.default_rng(0)
    v = rng.uniform(-1, 1, 12)
    g = _estimate(v, 2000, 0.01, rng)
    true = _smooth_grad(v)
    assert g @ true / (np.linalg.norm(g) * np.linalg.norm(true)) >= 0.9


def test_nes_variance_falls_as_samples_grow():
    rng = np.random.default_rng(1)
    v = rng.uniform(-1, 1, 12)
    true = _smooth_grad(v)
    error = {n: np.mean([np.sum((_estimate(v, n, 0.01, rng) - true) ** 2) for _ in range(60)]) for n in (4, 32, 256)}
    assert error[4] > 4 * error[32] > 16 * error[256]  # about 1 / n


def test_sigma_shrinks_at_a_minimum_and_grows_down_a_concave_slope():
    cfg = NESConfig(pairs=500, sigma=0.05, sigma_lr=0.5)
    rng = np.random.default_rng(2)
    z = rng.standard_normal((500, 4))
    sigma = np.full(4, 0.05)
    for loss, direction in ((lambda x: float((x ** 2).sum()), -1), (lambda x: -float((x ** 2).sum()), 1)):
        plus = np.array([loss(sigma * zk) for zk in z])
        minus = np.array([loss(-sigma * zk) for zk in z])
        new = adapt_sigma(sigma, z, plus, minus, loss(np.zeros(4)), cfg)
        assert np.all(np.sign(new - sigma) == direction)
        assert np.all((new >= cfg.sigma_min) & (new <= cfg.sigma_max))


# --- the joint optimizer on planted losses ------------------------------------------------------------


class LinearSpace:
    """A space whose architecture is the vector itself and whose cost is linear: the constrained optimum of a
    quadratic loss is known in closed form."""

    family = variant = "planted"

    def __init__(self, dim: int):
        self.dim, self.lower, self.upper = dim, np.zeros(dim), np.ones(dim)
        self.names = [f"x{i}" for i in range(dim)]
        self.grid_step = np.zeros(dim)  # no rounding
        self.held = np.zeros(dim, dtype=bool)

    def clip(self, v):
        return np.clip(np.asarray(v, dtype=float), 0, 1)

    def decode(self, v):
        return tuple(self.clip(v))

    def uniform(self, t):
        return self.clip(np.full(self.dim, t))


class Planted:
    """A loss of the vector only; weight steps do nothing."""

    def __init__(self, loss):
        self.loss, self.trained = loss, []

    def weight_step(self, arch, step):
        self.trained.append(arch)
        return 0.0

    def score(self, vectors, archs, step):
        return [self.loss(np.asarray(v)) for v in vectors]


def test_joint_optimizer_ends_at_the_known_constrained_optimum():
    c = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 1.0])
    target = np.array([0.9, 0.8, 0.7, 0.9, 0.6, 0.95])  # over the budget
    limit = 4.0
    optimum = target - (c @ target - limit) / (c @ c) * c  # Euclidean projection onto c.v <= limit (inside the box)
    assert np.all((optimum > 0) & (optimum < 1))
    budget = Budget(lambda x: float(c @ np.array(x)), limit, "units")
    cfg = JointConfig(hyper_every=1, hyper_start=0.0, nes=NESConfig(pairs=8),
                      hyper=HyperConfig(lr=0.2, max_step=0.05))
    out = joint_search(LinearSpace(6), budget, cfg, 300, Planted(lambda v: float(((v - target) ** 2).sum())), seed=0)
    assert np.abs(out.vector - optimum).max() < 0.05
    assert np.abs(out.start - optimum).max() > 0.3  # it had somewhere to go
    assert max(out.scored_costs) <= limit


def test_every_scored_vector_meets_the_constraint_on_a_real_space():
    """A loss that wants everything bigger presses the run against the limit all along."""
    space = SearchSpace("mobilenet_v2", "channel+input+depth")
    budget = flops_budget(150e6)
    problem = Planted(lambda v: -float(v @ np.linspace(1, 2, len(v))))
    cfg = JointConfig(hyper_every=1, hyper_start=0.0, hyper=HyperConfig(lr=0.1))
    out = joint_search(space, budget, cfg, 12, problem, seed=3)
    assert len(out.scored_costs) == 12 * (2 * cfg.nes.pairs + 1)
    assert max(out.scored_costs) <= 150e6
    assert all(budget.fits(a) for a in problem.trained)  # the weight steps' samples too
    assert budget.fits(out.arch) and out.arch != space.decode(out.start)
    assert [e["step"] for e in out.trajectory] == list(range(1, 13))


class FewerBlocks:
    """A loss of the decoded architecture that falls by one per block removed: only rounding steps count."""

    def weight_step(self, arch, step):
        return 0.0

    def score(self, vectors, archs, step):
        return [float(sum(a.depths)) for a in archs]


@pytest.mark.parametrize("floor_steps, coarse_power, most_blocks", [(0.0, 0.0, 17), (0.5, 1.0, 14)])
def test_depth_moves_once_sigma_and_steps_fit_its_rounding(floor_steps, coarse_power, most_blocks):
    """A loss that wants fewer blocks, under a budget the search fills. At sigma 0.05 a depth coordinate's
    perturbations from 1.0 almost never reach the next block (0.875 of a four-block stage), and the widths'
    noisier estimates take up max_step: the blocks stay (the defect measured on Table 2's depth cells). A
    sigma floor of half a rounding step and steps scaled to it remove blocks."""
    space = SearchSpace("mobilenet_v2", "channel+input+depth")
    budget = flops_budget(300e6)
    cfg = JointConfig(hyper_every=1, hyper_start=0.0, nes=NESConfig(floor_steps=floor_steps),
                      hyper=HyperConfig(coarse_power=coarse_power))
    out = joint_search(space, budget, cfg, 20, FewerBlocks(), seed=0, start=space.upper)
    assert sum(space.decode(space.upper).depths) == 17
    blocks = sum(out.arch.depths)
    assert blocks <= most_blocks and (blocks >= 16 if floor_steps == 0 else True)
    assert budget.fits(out.arch) and max(out.scored_costs) <= 300e6


def test_hyperparameter_steps_start_after_the_warm_up_share():
    cfg = JointConfig(hyper_every=2, hyper_start=0.25)
    assert hyper_steps_of(cfg, 16) == [5, 7, 9, 11, 13, 15]


# --- the network problem: determinism and DDP ---------------------------------------------------------


def _network_run(seed: int, rank: int = 0, steps: int = 6):
    from repro.data import Normalize
    from repro.models.supernet import SuperNet
    from repro.train.loop import param_groups
    from repro.train.trainer import data_resolution

    torch.manual_seed(seed)
    space = SearchSpace("mobilenet_v1", "channel+input+depth", num_classes=4)
    net = SuperNet("mobilenet_v1", 4)
    model = net
    if torch.distributed.is_initialized():
        model = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    opt = torch.optim.SGD(param_groups(net, 1e-4), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data, as a sharded loader gives

    def batches(n):
        while True:
            images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=gen)
            yield images, torch.randint(0, 4, (n,), generator=gen)

    scaler = torch.amp.GradScaler("cpu", enabled=False)
    problem = NetworkProblem(net, model, opt, sched, scaler, batches(8), batches(8), Normalize(),
                             lambda a: data_resolution(a.resolution, 16), 0.1, None, torch.device("cpu"))
    cfg = JointConfig(hyper_every=2, hyper_start=0.0, nes=NESConfig(pairs=2))
    start = space.uniform(0.6)
    start[[i for i, n in enumerate(space.names) if n.startswith("depth")]] = 0.55  # drop blocks from the start
    out = joint_search(space, flops_budget(150e6), cfg, steps, problem, seed=seed,
                       start=start)
    return out, problem, net


def test_a_fixed_seed_returns_the_same_architecture_twice():
    a, pa, _ = _network_run(seed=5)
    b, pb, _ = _network_run(seed=5)
    assert a.arch == b.arch and pa.archs_trained == pb.archs_trained
    np.testing.assert_array_equal(a.vector, b.vector)
    assert [e["loss"] for e in a.trajectory] == [e["loss"] for e in b.trajectory]


def _ddp_search(rank: int, world: int, init: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    result, problem, net = _network_run(seed=7, rank=rank, steps=4)
    digest = float(sum(p.detach().double().sum() for p in net.parameters()))
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"archs": [a.to_dict() for a in problem.archs_trained], "vector": result.vector.tolist(),
                   "losses": [e["loss"] for e in result.trajectory], "weights": digest}, f)
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_sample_alike_reduce_scores_and_survive_skipped_blocks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_search, args=(2, f"file://{tmp_path / 'rdv'}", str(tmp_path / "rank")), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank.{r}").read_text()) for r in (0, 1))
    assert r0["archs"] == r1["archs"]  # the same architectures on every rank
    depths = {tuple(a["depths"]) for a in r0["archs"]}
    assert any(d != (1, 2, 2, 6, 2) for d in depths)  # blocks were skipped, and DDP went on
    assert r0["losses"] == r1["losses"] and r0["vector"] == r1["vector"]  # scores all-reduced before the step
    assert r0["weights"] == pytest.approx(r1["weights"], rel=1e-6)  # DDP kept the shared weights equal


# --- the Method ---------------------------------------------------------------------------------------


def test_method_is_registered_with_three_variants_and_typed_settings():
    method = get_method("proposed")
    assert method.variants == ("channel", "channel+input", "channel+input+depth") and method.retrain == "scratch"
    for name in ("smoke", "imagenet"):
        cfg = proposed_config(load_profile(name).methods)
        assert 0 < cfg.epochs_fraction <= 1
    with pytest.raises(ValueError, match="methods.proposed.joint.nes.pairz"):
        proposed_config({"proposed": {"joint": {"nes": {"pairz": 3}}}})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("search-data"), seed=3, train_per_class=8, per_class=3)


def test_a_proposed_cell_searches_logs_its_trajectory_and_retrains(tiny_data, tmp_path):
    from repro.pipeline import prepare_data, run_cell

    profile = load_profile("smoke", [f"data.path={tiny_data}", "train.epochs=2", "train.batch_size=16",
                                     "train.lr_reference_batch=16", "methods.proposed.score_batch_size=16",
                                     "methods.proposed.epochs_fraction=1.0"])
    data = prepare_data(profile, log=lambda s: None)
    record, ran = run_cell("proposed", "channel+input", "mobilenet_v1", Constraint("flops", 150e6), profile, 0,
                           data, tmp_path, log=lambda s: None, quiet=True)
    assert ran and record.macs <= 150e6 and record.top1 is not None and record.retrain_protocol == "scratch"
    info = record.extra["search"]
    folder = tmp_path / info["folder"]
    lines = (folder / "trajectory.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["coordinates"][-1] == "resolution"
    steps = [json.loads(line) for line in lines[1:]]
    assert len(steps) == info["hyper_steps"] > 0 and all(s["cost"] <= 150e6 for s in steps)
    assert (folder / "trajectory.png").stat().st_size > 0
    assert json.loads((folder / "result.json").read_text())["max_scored_cost"] <= 150e6
    assert record.search_seconds > 0 and info["seconds"] > 0
    assert not (folder / "checkpoint.pt").exists()  # removed once the search is done
    _, again = run_cell("proposed", "channel+input", "mobilenet_v1", Constraint("flops", 150e6), profile, 0, data,
                        tmp_path, log=lambda s: None, quiet=True)
    assert not again


def test_a_latency_cell_searches_under_the_predictor_and_measures_against_the_reference(tiny_data, tmp_path):
    """Table 2's CPU sub-table through the same pipeline: the search's budget is the table's prediction of the
    uniform Channel reference at the column's width; the record holds both networks measured in this run."""
    from repro.pipeline import prepare_data, run_cell
    from repro.reference import reference_arch

    quick = ["latency.cpu.repeats=3", "latency.cpu.warmup=1", "latency.cpu.max_cv=10", f"latency.tables={tmp_path}"]
    profile = load_profile("smoke", [f"data.path={tiny_data}", "train.epochs=2", "train.batch_size=16",
                                     "train.lr_reference_batch=16", "methods.proposed.score_batch_size=16",
                                     "methods.proposed.epochs_fraction=1.0", *quick])
    data = prepare_data(profile, log=lambda s: None)
    limit = Constraint("cpu_latency", 0.5)
    record, ran = run_cell("proposed", "channel+input", "mobilenet_v1", limit, profile, 0, data, tmp_path,
                           log=lambda s: None, quiet=True)
    lat = record.latency
    assert ran and lat["kind"] == "cpu" and lat["batch_size"] == 1 and lat["settings"]["repeats"] == 3
    assert lat["ratio"] == pytest.approx(lat["ms"] / lat["reference_ms"])
    assert lat["predicted_ms"] <= lat["reference_predicted_ms"]  # the constraint the search met
    info = record.extra["search"]
    assert info["unit"] == "ms" and info["limit"] == pytest.approx(lat["reference_predicted_ms"])
    assert info["max_scored_cost"] <= info["limit"]
    assert ArchConfig.from_dict(lat["reference_arch"]) == reference_arch("mobilenet_v1", 0.5)
    table = json.loads(next(tmp_path.glob("cpu-*.json")).read_text())
    assert table["device_id"] == lat["table"] and len(table["entries"]) > 0
    # measuring again (a rerun after a refused measurement) reuses the finished search
    (tmp_path / "records" / f"cell-proposed-{record.key}.json").unlink()
    logs: list[str] = []
    again, ran = run_cell("proposed", "channel+input", "mobilenet_v1", limit, profile, 0, data, tmp_path,
                          log=logs.append, quiet=True)
    assert ran and again.arch == record.arch and any("search already done" in line for line in logs)
    assert again.search_seconds == pytest.approx(info["seconds"])  # the search's own time, not the reuse's
    # the uniform row of the column is the reference itself
    uniform, _ = run_cell("uniform", "channel", "mobilenet_v1", limit, profile, 0, data, tmp_path,
                          log=lambda s: None, quiet=True)
    assert uniform.latency["predicted_ms"] == uniform.latency["reference_predicted_ms"]
    assert uniform.arch == lat["reference_arch"]


def test_joint_state_resumes_exactly():
    """A run checkpointed and stopped after its 5th step, then resumed from that state, ends where the
    uninterrupted run ends."""
    import copy

    space = SearchSpace("mobilenet_v1", "channel+input")
    budget = flops_budget(150e6)
    cfg = JointConfig(hyper_every=1, hyper_start=0.0)

    def loss(v):
        return float(((v - 0.7) ** 2 * np.arange(len(v))).sum())

    full = joint_search(space, budget, cfg, 12, Planted(loss), seed=4)
    saved: list = []

    class Stop(Exception):
        pass

    def checkpoint(state):
        saved.append(copy.deepcopy(state))
        raise Stop

    with pytest.raises(Stop):
        joint_search(space, budget, cfg, 12, Planted(loss), seed=4, checkpoint=checkpoint, checkpoint_every=5)
    resumed = joint_search(space, budget, cfg, 12, Planted(loss), seed=4, state=saved[0])
    np.testing.assert_array_equal(resumed.vector, full.vector)
    assert resumed.trajectory == full.trajectory and resumed.scored_costs == full.scored_costs


def test_an_interrupted_search_resumes_to_the_same_architecture(tiny_data, tmp_path, monkeypatch):
    import repro.train.trainer as trainer
    from repro.pipeline import prepare_data, search

    profile = load_profile("smoke", [f"data.path={tiny_data}", "train.epochs=2", "train.batch_size=16",
                                     "train.lr_reference_batch=16", "methods.proposed.score_batch_size=16",
                                     "methods.proposed.epochs_fraction=1.0", "methods.proposed.checkpoint_every=3",
                                     "methods.proposed.joint.hyper_every=1"])
    data = prepare_data(profile, log=lambda s: None)
    method, limit = get_method("proposed"), Constraint("flops", 150e6)

    def run(results):
        return search(method, "channel+input", "mobilenet_v1", limit, profile, 0, data, results, log=lambda s: None,
                      quiet=True)

    whole = run(tmp_path / "whole")

    class Killed(Exception):
        pass

    save_state = trainer.save_state

    def save_then_die(path, parts, **extra):  # the process dies after the checkpoint past the first NES steps
        if extra["joint"].next_step >= 6:  # the last checkpoint says 1,000 s more went into weight steps
            extra["split"]["weight_steps"] += 1000.0
            extra["seconds"] += 1000.0
            save_state(path, parts, **extra)
            raise Killed
        save_state(path, parts, **extra)

    monkeypatch.setattr(trainer, "save_state", save_then_die)
    with pytest.raises(Killed):
        run(tmp_path / "cut")
    monkeypatch.setattr(trainer, "save_state", save_state)
    resumed = run(tmp_path / "cut")
    assert resumed.info["resumed_at_step"] > 0
    assert resumed.arch == whole.arch and resumed.info["vector"] == whole.info["vector"]
    assert resumed.info["last_loss"] == whole.info["last_loss"]
    # the compute it spent counts the interrupted part too: the same as the uninterrupted run's
    compute = whole.info["compute"]
    assert resumed.info["compute"] == compute
    assert compute["search_image_macs"] == compute["weight_step_image_macs"] + compute["score_image_macs"]
    assert compute["weight_step_image_macs"] > 0 and compute["score_image_macs"] > 0
    from repro.cost.flops import count_macs

    train_images = sum(data.manifest["counts"]["train"].values())
    assert compute["retrain_image_macs"] == 3 * 2 * train_images * count_macs(whole.arch)
    assert compute["ratio"] == pytest.approx(compute["search_image_macs"] / compute["retrain_image_macs"])
    for done in (whole, resumed):  # where the seconds went
        split = done.info["seconds_split"]
        assert split["weight_steps"] > 0 and split["scores"] > 0 and split["other"] >= 0
    assert resumed.info["seconds_split"]["weight_steps"] > 1000  # the interrupted part's, from its checkpoint
    again = run(tmp_path / "cut")  # a finished search is read back, not run again
    assert again.arch == resumed.arch and again.seconds == resumed.seconds


def test_run_table_can_run_one_methods_rows_and_names_a_wrong_one(tmp_path):
    from repro.runner import run_table

    with pytest.raises(ValueError, match="--method nope: table 2 has no such rows; its methods: .*proposed"):
        run_table(2, load_profile("smoke"), None, tmp_path, methods=["nope"])


def _key_inputs():
    """A prepared data set's identity (no files behind it) and a constraint: enough to compute cell keys."""
    from repro.dataset import PreparedData

    manifest = {"classes": ["a", "b"], "base_resolution": 32, "listing_sha256": {"train": "x"},
                "betons": {"train": {"quick_sha256": "y"}}, "split": {"seed": 0, "per_class": 1}}
    return PreparedData(Path("."), manifest, np.arange(2), np.arange(2)), Constraint("flops", 150e6)


def test_cell_keys_hold_the_methods_resolved_settings_only():
    from repro.pipeline import cell_key

    data, limit = _key_inputs()

    def keys(*overrides):
        profile = load_profile("smoke", list(overrides))
        return tuple(cell_key(m, "channel", "mobilenet_v1", limit, profile, 0, data) for m in ("proposed", "uniform"))

    base = keys()
    assert keys("methods.proposed.joint.nes.pairs=4") == base  # the value the profile already states
    changed = keys("methods.proposed.joint.nes.pairs=8")
    assert changed[0] != base[0] and changed[1] == base[1]  # only the proposed cells change
    # settings left out resolve to the code's defaults: the same key as writing the defaults out
    stated = keys("methods.proposed.joint.nes={}")
    written = keys("methods.proposed.joint.nes={pairs: 4, sigma: 0.05, sigma_min: 0.01, sigma_max: 0.2, "
                   "sigma_lr: 0.1, floor_steps: 0.5}")
    assert stated == written


def test_family_settings_change_that_familys_cells_only():
    """``train_by_family.<f>`` and ``methods.<m>.by_family.<f>`` change the cells of family f and no other;
    nested settings merge key by key; a wrong family name is an error naming the key."""
    from repro.config import ConfigError
    from repro.pipeline import cell_key

    data, limit = _key_inputs()

    def keys(*overrides):
        profile = load_profile("smoke", list(overrides))
        return {(m, f): cell_key(m, "channel", f, limit, profile, 0, data)
                for m in ("metapruning", "uniform") for f in ("mobilenet_v1", "resnet50")}

    base = keys()
    recipe = keys("train_by_family.resnet50.epochs=2")
    assert {k for k in base if recipe[k] != base[k]} == {("metapruning", "resnet50"), ("uniform", "resnet50")}
    method = keys("methods.metapruning.by_family.resnet50.hidden=4")
    assert {k for k in base if method[k] != base[k]} == {("metapruning", "resnet50")}

    mp = get_method("metapruning")
    profile = load_profile("smoke")
    v1, r50 = mp.config(profile.methods, "mobilenet_v1"), mp.config(profile.methods, "resnet50")
    assert (v1.pruningnet_epochs, v1.evolution.population, v1.evolution.mutation_prob) == (2, 12, 0.1)
    # the profile's ResNet-50 entry sets population, not mutation_prob: the latter is kept from the shared entry
    assert (r50.pruningnet_epochs, r50.evolution.population, r50.evolution.mutation_prob) == (1, 8, 0.1)
    assert r50.hidden == v1.hidden == 8
    bad = load_profile("smoke", ["methods.metapruning.by_family.resnet18.hidden=4"])
    with pytest.raises(ConfigError, match=r"methods.metapruning.by_family.resnet18: not a family"):
        mp.config(bad.methods, "resnet50")
    bad = load_profile("smoke", ["methods.metapruning.by_family.resnet50=3"])
    with pytest.raises(ConfigError, match=r"methods.metapruning.by_family.resnet50 must be a mapping"):
        mp.config(bad.methods, "resnet50")
    bad = load_profile("smoke", ["methods.metapruning.by_family.resnet50.hidden=0"])
    with pytest.raises(ConfigError, match=r"methods.metapruning \(with by_family.resnet50\).*hidden=0"):
        mp.config(bad.methods, "resnet50")
    assert mp.config(bad.methods, "mobilenet_v1").hidden == 8  # another family's changes do not apply
    # the paper's method reads its settings for the family too
    both = load_profile("smoke", ["methods.proposed.by_family.resnet50.joint.nes.pairs=2"])
    assert proposed_config(both.methods, "resnet50").joint.nes.pairs == 2
    assert proposed_config(both.methods, "mobilenet_v2").joint.nes.pairs == 4
