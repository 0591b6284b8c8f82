"""The random-architecture control: k draws of the proposed space at equal cost, each trained and scored on
sub-eval, the best kept."""

from __future__ import annotations

import numpy as np
import pytest

from repro.constraint import Constraint
from repro.cost.budget import flops_budget
from repro.discover import get_method
from repro.profiles import load_profile
from repro.space import SearchSpace
from tests.conftest import make_tiny_data


def test_the_draws_meet_the_budget_and_do_not_depend_on_k():
    from baselines.random_search import draw

    space = SearchSpace("mobilenet_v1", "channel+input")
    budget = flops_budget(150e6)
    three, v3 = draw(space, budget, 3, seed=0, fill=0.97)
    two, _ = draw(space, budget, 2, seed=0, fill=0.97)
    other, _ = draw(space, budget, 3, seed=1, fill=0.97)
    assert three[:2] == two  # the i-th draw is the seed's, whatever k
    assert three != other and len({a.to_json() for a in three}) == 3
    for arch in three:
        assert budget.cost(arch) <= 150e6
        assert budget.cost(arch) >= 0.9 * 150e6  # projected onto the budget's boundary, as the search's are
    assert all(np.all(v >= space.lower - 1e-9) and np.all(v <= space.upper + 1e-9) for v in v3)


def test_a_random_cell_trains_its_candidates_and_keeps_the_best(tmp_path):
    from repro.pipeline import prepare_data, search

    folder = make_tiny_data(tmp_path / "data", seed=3, train_per_class=6, per_class=2)
    profile = load_profile("smoke", [f"data.path={folder}", "train.epochs=1", "train.batch_size=16",
                                     "train.lr_reference_batch=16", "methods.random.candidates=2"])
    data = prepare_data(profile, log=lambda s: None)
    method = get_method("random")
    found = search(method, "channel", "mobilenet_v1", Constraint("flops", 150e6), profile, 0, data, tmp_path / "r",
                   log=lambda s: None, quiet=True)
    candidates = found.info["candidates"]
    assert len(candidates) == 2 and all(c["cost"] <= 150e6 for c in candidates)
    best = max(candidates, key=lambda c: (c["sub_eval_top1"], -c["index"]))
    assert found.info["best"] == best["index"] and found.arch.to_dict() == best["arch"]
    assert all(0 <= c["sub_eval_top1"] <= 1 for c in candidates)
    assert found.seconds == pytest.approx(sum(c["train_seconds"] for c in candidates))  # the candidates' trainings
    again = search(method, "channel", "mobilenet_v1", Constraint("flops", 150e6), profile, 0, data, tmp_path / "r",
                   log=lambda s: None, quiet=True)
    assert again.arch == found.arch  # a finished search is read back


def test_candidates_below_one_are_refused():
    from baselines.random_search import RandomSearchConfig

    with pytest.raises(ValueError, match=r"candidates=0 must be at least 1"):
        RandomSearchConfig(candidates=0)


def test_the_control_cells_come_after_the_papers_so_their_indices_stay():
    from tables.spec import table_cells

    for table, n in ((1, 6), (2, 9), (3, 3)):
        paper, with_controls = table_cells(table), table_cells(table, controls=True)
        assert with_controls[:len(paper)] == paper
        extra = with_controls[len(paper):]
        assert len(extra) == n and {c.method for c in extra} == {"random"} and not any(c.reported for c in extra)
