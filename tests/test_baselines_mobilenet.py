"""The MobileNet baselines' pieces, without data: channel surgery (repro.models.prune), MetaPruning's
PruningNet and evolution, NetAdapt's schedule and proposals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.arch import ArchConfig
from repro.cost.flops import count_macs
from repro.models import build_model
from repro.models.prune import consumers, filter_norms, group_of, producers, select_channels

FAMILIES = ("mobilenet_v1", "mobilenet_v2", "resnet50")


@pytest.mark.parametrize("family", FAMILIES)
def test_keeping_every_channel_in_a_new_order_computes_the_same_function(family):
    torch.manual_seed(0)
    arch = ArchConfig.uniform(family, 0.25, 64, num_classes=10)
    model = build_model(arch).eval()
    gen = torch.Generator().manual_seed(1)
    # a permutation of each free slot's channels: the network computes the same function
    keep = {s: torch.randperm(arch.widths[s], generator=gen) for s in range(arch.spec.num_widths)
            if group_of(arch, s) == s}
    new_arch, state = select_channels(model.state_dict(), arch, keep)
    assert new_arch == arch
    other = build_model(new_arch).eval()
    other.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(other(x), model(x), atol=1e-4, rtol=1e-4)


def test_pruning_a_slot_narrows_its_producer_consumer_and_depthwise():
    arch = ArchConfig.uniform("mobilenet_v1", 0.25, 32, num_classes=10)
    model = build_model(arch)
    state = model.state_dict()
    slot = 3  # s1.b1.pw: 32 channels at 0.25x
    norms = filter_norms(state, arch, slot)
    keep = norms.argsort(descending=True)[:5].sort().values
    new_arch, new_state = select_channels(state, arch, {slot: keep})
    assert new_arch.widths[slot] == 5 and new_arch.widths[:slot] == arch.widths[:slot]
    (prod,), (cons,) = producers(arch, slot), consumers(arch, slot)
    torch.testing.assert_close(new_state[prod], state[prod][keep])
    torch.testing.assert_close(new_state[cons], state[cons][:, keep])
    # the next block's depthwise conv carries the slot: its filters are cut the same way
    dw = cons.replace(".1.0.weight", ".0.0.weight")
    torch.testing.assert_close(new_state[dw], state[dw][keep])
    pruned = build_model(new_arch)
    pruned.load_state_dict(new_state)
    assert pruned.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    # the largest-norm filters are the ones kept
    assert norms[keep].min() >= norms[[i for i in range(len(norms)) if i not in keep.tolist()]].max()


def test_select_channels_refuses_bad_indices_and_split_ties():
    arch = ArchConfig.uniform("resnet50", 0.25, 32, num_classes=10)
    state = build_model(arch).state_dict()
    with pytest.raises(ValueError, match="distinct channel indices"):
        select_channels(state, arch, {1: [0, 0]})
    group = arch.spec.ties[0]
    with pytest.raises(ValueError, match="tied"):
        select_channels(state, arch, {group[0]: [0, 1], group[1]: [1, 2]})
    new_arch, _ = select_channels(state, arch, {group[1]: [0, 1, 2]})  # any member stands for the group
    assert all(new_arch.widths[i] == 3 for i in group)


# --- MetaPruning ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["mobilenet_v1", "mobilenet_v2", "resnet50"])
def test_pruningnet_generates_every_weight_of_a_sampled_network(family):
    from baselines.metapruning_net import SCALES, PruningNet, encoding

    torch.manual_seed(0)
    enc = encoding(family)
    net = PruningNet(enc, num_classes=10, hidden=2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = enc.decode(rng.integers(0, len(SCALES), enc.size)).replace(num_classes=10)
        net.set_arch(arch)
        net.train()
        x = torch.randn(4, 3, 32, 32)
        out = net(x)
        assert out.shape == (4, 10)
        out.sum().backward()  # gradients reach the generators
        assert all(p.grad is not None for p in net.generators.parameters())
        net.zero_grad()
        small = net.extract(arch)
        reference = build_model(arch)
        assert {k: v.shape for k, v in small.state_dict().items()} == \
            {k: v.shape for k, v in reference.state_dict().items()}
        # both normalize with the batch's statistics (dropout off): the same function
        net.eval()
        for m in small.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.train()
        with torch.no_grad():
            torch.testing.assert_close(small(x), net(x), atol=1e-4, rtol=1e-4)


def test_pruningnet_weights_start_at_a_default_convolution_scale():
    """Generated weights start with the std of nn.Conv2d's default init (1 / sqrt(3 fan_in)), not the ~10x
    larger weights that default-initialized generators give (which behind BatchNorm cut the effective learning
    rate ~100x: the smoke PruningNet did not learn)."""
    from baselines.metapruning_net import PruningNet, encoding

    torch.manual_seed(0)
    enc = encoding("mobilenet_v1")
    net = PruningNet(enc, num_classes=10, hidden=4)
    arch = enc.widest.replace(num_classes=10)
    net.set_arch(arch)
    model = net.extract(arch)
    ratios = []
    for p in model.parameters():
        if p.ndim == 4:
            target = 1 / (3 * p[0].numel()) ** 0.5
            ratios.append(float(p.detach().std()) / target)
    assert len(ratios) == 27 and all(0.5 < r < 2.0 for r in ratios), ratios


def test_metapruning_encoding_follows_their_models():
    from baselines.metapruning_net import encoding

    v1 = encoding("mobilenet_v1")
    assert v1.size == 13 and v1.decode([30] * 13) == ArchConfig.canonical("mobilenet_v1")
    assert v1.decode([0] * 13).widths[:3] == (3, 6, 12)  # int(32 x 0.1), int(64 x 0.1), int(128 x 0.1)
    assert v1.decode([0] * 13).widths[-1] == 1024  # the last pointwise conv is not encoded
    v2 = encoding("mobilenet_v2")
    assert v2.size == 1 + 1 + 16 + 6  # stem, first block, each expansion, each later stage's output
    widest = v2.decode([30] * v2.size)
    assert widest.widths[0] == 44 and widest.widths[-1] == 1280 and widest.widths[2] == 6 * 22
    r50 = encoding("resnet50")
    assert r50.size == 1 + 3 + 16  # stem, stage outputs 1-3, one mid scale per bottleneck (their search.py)
    assert r50.decode([30] * 20) == ArchConfig.canonical("resnet50")
    half = r50.decode([13] * 20)  # scale 0.49
    spec = half.spec
    for blk in spec.blocks:  # conv1 and conv2 share their gene; the last stage's output stays at 2048
        assert half.widths[blk.slot("conv1")] == half.widths[blk.slot("conv2")]
        assert half.widths[blk.slot("conv3")] == (2048 if blk.stage == 3 else int(256 * 2 ** blk.stage * 0.49))
    assert half.widths[0] == int(64 * 0.49)


def test_evolution_respects_the_budget_and_improves_a_toy_objective():
    from baselines.metapruning import EvolutionConfig, evolve

    target = np.array([3, 20, 7, 12, 25, 1, 9, 14])  # sum 91: inside the budget
    fits = lambda g: sum(g) <= 100  # noqa: E731
    scored = []

    def score(g):
        assert fits(g), f"scored an over-budget genome {g}"
        scored.append(g)
        return float(np.sum((np.array(g) - target) ** 2))

    cfg = EvolutionConfig(population=20, iterations=8, mutations=8, crossovers=8, parents=5, keep=20)
    state = evolve(8, 31, fits, score, cfg, seed=0)
    first = min(score_ for score_ in map(lambda g: state.scores[g], scored[:20]))
    best = state.scores[state.top[0]]
    assert fits(state.top[0])
    assert best < 0.5 * first, (first, best)
    assert len(set(scored)) == len(scored)  # nothing scored twice


def test_evolution_resumes_from_its_snapshot_with_the_same_result():
    from baselines.metapruning import EvolutionConfig, EvolutionState, evolve

    fits = lambda g: sum(g) <= 60  # noqa: E731
    score = lambda g: float(abs(sum(g) - 55) + g[0])  # noqa: E731
    cfg = EvolutionConfig(population=10, iterations=5, mutations=4, crossovers=4, parents=3, keep=10)
    full = evolve(6, 31, fits, score, cfg, seed=3)
    snaps = []
    evolve(6, 31, fits, score, EvolutionConfig(**{**cfg.__dict__, "iterations": 5}), seed=3,
           checkpoint=lambda s: snaps.append(s.to_dict()))
    resumed = evolve(6, 31, fits, score, cfg, seed=3, state=EvolutionState.from_dict(snaps[1]))
    assert resumed.top == full.top and resumed.scores == full.scores


def test_evolution_cap_makes_a_tight_budget_samplable():
    from baselines.metapruning import scale_cap
    from baselines.metapruning_net import SCALES, encoding

    enc = encoding("mobilenet_v1")
    fits = lambda g: count_macs(enc.decode(g)) <= 45e6  # noqa: E731
    cap = scale_cap(enc.size, len(SCALES), fits, np.random.default_rng(0), 0.01)
    assert 0 < cap < len(SCALES) - 1
    loose = scale_cap(enc.size, len(SCALES), lambda g: count_macs(enc.decode(g)) <= 600e6,
                      np.random.default_rng(0), 0.01)
    assert loose == len(SCALES) - 1  # their uniform draws whenever those fit often enough


@pytest.mark.parametrize("limit", [3e9, 2e9, 1e9])
def test_metapruning_resnet_search_never_leaves_its_flops_window(limit):
    """Their ResNet-50 search keeps candidates within 1950M-2050M of its 2G target; ours within 2.5% under the
    budget (``flops_window``). Every candidate scored and the best one lie in [0.975 x limit, limit], at 3G too,
    where uniform draws over all scales cost far less than the window (the draws' lowest scale is raised)."""
    from baselines.metapruning import EvolutionConfig, evolve, fits_within
    from baselines.metapruning_net import SCALES, encoding
    from repro.cost.budget import flops_budget

    enc = encoding("resnet50")
    fits, lowest = fits_within(enc, flops_budget(limit), 0.025)  # what the search evolves under
    assert lowest == pytest.approx(0.975 * limit)
    scored = []

    def score(g):
        scored.append(count_macs(enc.decode(g)))
        return float(sum(g) % 7)  # any score: the window is the point

    cfg = EvolutionConfig(population=8, iterations=3, mutations=3, crossovers=3, parents=3, keep=8)
    state = evolve(enc.size, len(SCALES), fits, score, cfg, seed=0)
    assert scored and all(lowest <= m <= limit for m in scored), (min(scored), max(scored))
    assert lowest <= count_macs(enc.decode(state.top[0])) <= limit
    assert (state.floor > 0) == (limit == 3e9)  # raised only where the full range cannot reach the window


# --- NetAdapt ----------------------------------------------------------------------------------------

def test_netadapt_resource_falls_by_the_scheduled_step_each_iteration():
    from baselines.netadapt import NetAdaptConfig, iteration

    cfg = NetAdaptConfig(init_reduction=0.1, decay=0.9, channel_step=8)
    arch = ArchConfig.canonical("mobilenet_v1", num_classes=10)
    state = build_model(arch).state_dict()
    cost = lambda a: float(count_macs(a.with_imagenet_geometry()))  # noqa: E731
    r0 = cost(arch)
    rng = np.random.default_rng(0)
    for i in range(1, 5):
        current = cost(arch)
        target = current - cfg.init_reduction * r0 * cfg.decay ** (i - 1)
        best, proposals = iteration(arch, state, cost, target, cfg.channel_step,
                                    lambda a, s: (float(rng.random()), s, 0.0))
        assert proposals and all(p["cost"] <= target for p in proposals)
        _, arch, state = best
        new = cost(arch)
        assert new <= target
        # the largest width that meets the target: one more channel step would miss it
        chosen = max(proposals, key=lambda p: p["top1"])
        slot = [s.name for s in arch.spec.slots].index(chosen["layer"])
        wider = list(arch.widths)
        wider[slot] += cfg.channel_step
        assert cost(arch.replace(widths=tuple(wider))) > target


def test_netadapt_schedule():
    from baselines.netadapt import NetAdaptConfig, schedule_targets

    cfg = NetAdaptConfig(init_reduction=0.025, decay=0.96)
    targets = schedule_targets(568.7, 330.0, cfg)
    steps = np.diff([568.7, *targets])
    np.testing.assert_allclose(steps, -0.025 * 568.7 * 0.96 ** np.arange(len(targets)))
    assert targets[-1] <= 330 < targets[-2] and len(targets) == 28


# --- AMC ---------------------------------------------------------------------------------------------

class _Features:
    """Random features for every reading layer (the environment's least squares needs some)."""

    def __init__(self, arch, state, readers, rows=64):
        gen = torch.Generator().manual_seed(0)
        self.X = {r: torch.randn(rows, state[r].shape[1], generator=gen) for r in readers}
        self.Y = {r: self.X[r] @ state[r].reshape(state[r].shape[0], -1).T for r in readers}


@pytest.mark.parametrize("family,limit", [("mobilenet_v1", 150e6), ("mobilenet_v2", 150e6)])
def test_amc_action_wall_makes_every_episode_meet_the_budget(family, limit):
    from baselines.amc import AMCConfig, ChannelPruningEnv, prunable
    from repro.cost.budget import flops_budget

    arch = ArchConfig.canonical(family, num_classes=10)
    state = build_model(arch).state_dict()
    readers = [r for _, r in prunable(arch)]
    budget = flops_budget(limit)
    scores = []
    env = ChannelPruningEnv(arch, state, _Features(arch, state, readers), budget, AMCConfig(),
                            lambda a, s: scores.append(budget.cost(a)) or 0.5)
    rng = np.random.default_rng(0)
    for episode in range(6):
        obs, done = env.reset(), False
        assert obs.shape == (10,) and np.all((obs >= 0) & (obs <= 1))
        while not done:  # greedy and random agents alike: the wall keeps the budget reachable
            obs, reward, done, info = env.step(1.0 if episode % 2 else float(rng.random()))
        assert info["cost"] <= limit and reward == 0.5
        assert all(w % 8 == 0 for w in info["widths"])
        pruned, pruned_state = env.build(info["widths"])
        net = build_model(pruned)
        net.load_state_dict(pruned_state)
        assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert max(scores) <= limit
    # greedy episodes use the budget: within one channel step of the limit
    assert max(scores) > 0.9 * limit


def test_amc_least_squares_refit_recovers_a_layer_from_fewer_channels():
    from baselines.amc import least_squares

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=gen)
    x[:, 5] = x[:, 0] + x[:, 1]  # a redundant channel: dropping it loses nothing after the refit
    w = torch.randn(4, 6, generator=gen)
    y = x @ w.T
    keep = torch.tensor([0, 1, 2, 3, 4])
    refit = least_squares(x, y, keep)
    torch.testing.assert_close(x[:, keep] @ refit.T, y, atol=1e-4, rtol=1e-4)
    naive = x[:, keep] @ w[:, keep].T  # just dropping the channel does not
    assert (naive - y).abs().max() > 0.1


def test_searches_refuse_several_processes_with_a_way_out(monkeypatch):
    import repro.distributed as dist

    dist.require_single_process("a search")  # one process: nothing to say
    monkeypatch.setattr(dist, "world_size", lambda: 4)
    with pytest.raises(RuntimeError, match=r"a search runs in one process, not under torchrun with 4: .*run-cell"):
        dist.require_single_process("a search")


def test_rendered_tables_show_released_macs_beside_the_reported_ones():
    from baselines.zoo import table_notes
    from tables.render import build_view, to_latex, to_markdown

    notes = table_notes(1)
    amc = next(n for n in notes if n.startswith("AMC, 330M"))
    assert "293.87M" in amc and "285M" in amc and "281M" in amc  # ours, AMC's paper, this paper
    assert all(n.startswith(("AMC", "MetaPruning", "NetAdapt")) for n in notes)
    view = build_view(1, None, "smoke")
    view.notes = notes
    assert amc in to_markdown(view) and f"% released architecture: {amc}" in to_latex(view)
