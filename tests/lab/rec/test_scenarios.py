"""Scenarios: the request is exact, held-out users never appear, the test subset ignores the run seed."""

import pytest

from eraserlib import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlab.rec import movielens_next_item, movielens_preference
from eraserlab.rec.pretrain import heldout_users
from eraserlab.rec.scenarios import build_scenario


@pytest.fixture(scope="module")
def next_item_data(data_root):
    return movielens_next_item(data_root, max_train_per_user=2)


@pytest.mark.parametrize("task, request_type", [("qm_removal", QueryModification),
                                                ("qm_replacement", QueryModification),
                                                ("rc", ResponseCorrection)])
def test_substitution_scenarios_turn_the_trained_set_into_the_retrained_one(next_item_data, task, request_type):
    held = heldout_users([e.user for e in next_item_data.train], 0.25, seed=0)
    scenario = build_scenario(task, next_item_data, 0.1, seed=3, excluded_users=held, max_test=50)
    assert isinstance(scenario.request, request_type)
    assert len(scenario.request) == int(0.1 * len(scenario.train))
    assert not {e.user for e in scenario.train + scenario.test} & held
    # applying the request to what Corrupted saw gives exactly what Retrain sees
    replaced = dict(zip(scenario.request.old, scenario.request.new))
    assert tuple(replaced.get(e, e) for e in scenario.train) == scenario.retrain_data
    assert scenario.forget == tuple(scenario.request.old) and scenario.corrected == tuple(scenario.request.new)
    assert len(scenario.test) == 50


def test_removal_scenario_and_a_test_set_independent_of_the_run_seed(data_root):
    data = movielens_preference(data_root, max_train_per_user=2)
    first = build_scenario("ir", data, 0.1, seed=0, max_test=40)
    second = build_scenario("ir", data, 0.1, seed=1, max_test=40)
    assert isinstance(first.request, InstanceRemoval)
    removed = set(first.request.examples)
    assert tuple(e for e in first.train if e not in removed) == first.retrain_data
    assert first.test == second.test  # the evaluation examples do not move with the seed
    assert set(first.request.examples) != set(second.request.examples)
