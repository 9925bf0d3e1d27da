"""Input checks of the mechanisms: every bad input is a ValueError that names the argument and entry."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mercato.mechanisms import run_vcg_auction, solve_bmatching
from mercato.mechanisms.validation import as_capacity, as_matrix


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        # numpy integer arrays take a fast path; it must check what the general path checks
        (np.array([2, 0, -1]), "capacity must be non-negative, agent 2 has -1"),
        (np.array([1, 1, 1, 1], dtype=np.int32), "capacity has 4 entries but there are 3 agents"),
        (np.array([[1], [1], [1]]), "capacity must be 1-D with one entry per agent, got shape (3, 1)"),
        (np.array([1.0, 1.5, 2.0]), "capacity must be whole numbers, agent 1 has 1.5"),
        (np.array([1.0, -0.5, 2.0]), "capacity must be non-negative, agent 1 has -0.5"),
        ([1, 0, -2], "capacity must be non-negative, agent 2 has -2"),
        ([0, 2, 2.5], "capacity must be whole numbers, agent 2 has 2.5"),
        ([1, np.inf, 1], "capacity must be finite, got inf"),
        ([[1, 1, 1]], "capacity must be 1-D with one entry per agent, got shape (1, 3)"),
    ],
)
def test_bad_capacity_names_the_agent(capacity, message):
    with pytest.raises(ValueError, match=exactly(message)):
        solve_bmatching(np.ones((2, 3)), capacity)


@pytest.mark.parametrize("capacity", [np.array([0, 3, 1]), np.array([0, 3, 1], dtype=np.uint8), [0, 3, 1],
                                      [0.0, 3.0, 1.0], np.array([0.0, 3.0, 1.0])])
def test_zero_and_whole_capacities_are_accepted_in_any_form(capacity):
    cap = as_capacity(capacity, 3)
    assert cap.dtype == np.int64 and cap.tolist() == [0, 3, 1]
    result = solve_bmatching(np.ones((5, 3)), capacity)
    assert np.bincount(result.assignment[result.assignment >= 0], minlength=3).tolist() == [0, 3, 1]


def test_a_scalar_capacity_applies_to_every_agent():
    assert as_capacity(2, 3).tolist() == [2, 2, 2]
    result = solve_bmatching(np.ones((7, 3)), 2)
    assert np.bincount(result.assignment[result.assignment >= 0], minlength=3).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    ("values", "costs", "message"),
    [
        (np.array([[1.0, 2.0], [np.inf, 0.0]]), np.zeros((2, 2)), "values contains +inf at (1, 0)"),
        (np.zeros((2, 2)), np.array([[0.0, 0.0], [0.0, np.nan]]), "costs contains NaN at (1, 1)"),
        (np.zeros((2, 2)), np.array([[0.0, -np.inf], [-np.inf, 0.0]]), "costs contains -inf at (0, 1)"),
        (np.zeros((2, 2)), np.zeros((2, 1)), "shape mismatch: values is (2, 2) but costs is (2, 1)"),
    ],
)
def test_bad_matrices_name_the_entry(values, costs, message):
    with pytest.raises(ValueError, match=exactly(message)):
        run_vcg_auction(values, costs, [1, 1])


def test_matrices_keep_what_they_are_allowed_to_hold():
    data = np.array([[np.nan, -np.inf], [np.inf, 1.0]])
    kept = as_matrix("w", data, allow_nan=True, allow_neg_inf=True, allow_pos_inf=True)
    np.testing.assert_array_equal(kept, data)
    for flags, message in [
        ({"allow_nan": False, "allow_neg_inf": True, "allow_pos_inf": True}, "w contains NaN at (0, 0)"),
        ({"allow_nan": True, "allow_neg_inf": False, "allow_pos_inf": True}, "w contains -inf at (0, 1)"),
        ({"allow_nan": True, "allow_neg_inf": True, "allow_pos_inf": False}, "w contains +inf at (1, 0)"),
    ]:
        with pytest.raises(ValueError, match=exactly(message)):
            as_matrix("w", data, **flags)
