"""Tests for the sparse, component-wise assignment solver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from celltrack.link import solve_sparse_assignment


def brute_force(pairs: dict[tuple[int, int], float], row_alt: np.ndarray, col_alt: np.ndarray) -> float:
    """Minimum total cost over all matchings of the candidate pairs (tiny problems only)."""
    best = float(row_alt.sum() + col_alt.sum())
    keys = list(pairs)
    for k in range(1, min(len(row_alt), len(col_alt)) + 1):
        for chosen in itertools.combinations(keys, k):
            rows = [r for r, _ in chosen]
            cols = [c for _, c in chosen]
            if len(set(rows)) < k or len(set(cols)) < k:
                continue
            total = sum(pairs[p] for p in chosen)
            total += row_alt.sum() - row_alt[rows].sum() + col_alt.sum() - col_alt[cols].sum()
            best = min(best, total)
    return best


def total_cost(rows, cols, pairs, row_alt, col_alt) -> float:
    linked = sum(pairs[(int(r), int(c))] for r, c in zip(rows, cols, strict=True))
    return float(linked + row_alt.sum() - row_alt[rows].sum() + col_alt.sum() - col_alt[cols].sum())


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_on_random_sparse_problems(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_rows, n_cols = 5, 4
    mask = rng.random((n_rows, n_cols)) < 0.45
    rows, cols = np.nonzero(mask)
    costs = rng.normal(1.0, 1.0, len(rows))  # some negative: the solver must accept them
    row_alt = rng.uniform(0.2, 1.5, n_rows)
    col_alt = rng.uniform(0.2, 1.5, n_cols)
    pairs = {(int(r), int(c)): float(v) for r, c, v in zip(rows, cols, costs, strict=True)}
    r, c = solve_sparse_assignment(rows, cols, costs, row_alt, col_alt)
    assert len(set(r.tolist())) == len(r) and len(set(c.tolist())) == len(c)
    assert all((int(a), int(b)) in pairs for a, b in zip(r, c, strict=True))
    assert total_cost(r, c, pairs, row_alt, col_alt) == pytest.approx(brute_force(pairs, row_alt, col_alt))


def test_link_made_only_when_cheaper_than_both_alternatives() -> None:
    rows, cols = np.array([0, 1]), np.array([0, 1])
    r, c = solve_sparse_assignment(rows, cols, np.array([1.9, 2.1]), np.ones(2), np.ones(2))
    assert r.tolist() == [0] and c.tolist() == [0]


def test_competition_resolved_globally() -> None:
    # Greedy would give column 0 to row 0 (cost 1) and leave row 1 unlinked; the optimum swaps.
    rows, cols = np.array([0, 0, 1]), np.array([0, 1, 0])
    r, c = solve_sparse_assignment(rows, cols, np.array([1.0, 1.5, 1.2]), np.full(2, 5.0), np.full(2, 5.0))
    assert dict(zip(r.tolist(), c.tolist(), strict=True)) == {0: 1, 1: 0}


def test_independent_components_and_duplicates() -> None:
    rows = np.array([0, 0, 1, 2, 3, 3])
    cols = np.array([0, 0, 1, 2, 3, 2])
    costs = np.array([3.0, 0.5, 0.1, 0.2, 0.3, 0.1])  # duplicate (0, 0): the cheaper one counts
    r, c = solve_sparse_assignment(rows, cols, costs, np.ones(4), np.ones(4))
    assert dict(zip(r.tolist(), c.tolist(), strict=True)) == {0: 0, 1: 1, 2: 2, 3: 3}


def test_empty_and_infinite_pairs() -> None:
    r, c = solve_sparse_assignment([], [], [], np.ones(3), np.ones(2))
    assert len(r) == len(c) == 0
    r, c = solve_sparse_assignment([0], [0], [np.inf], np.ones(1), np.ones(1))
    assert len(r) == 0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        solve_sparse_assignment([0, 1], [0], [1.0], np.ones(2), np.ones(1))
    with pytest.raises(ValueError, match="out of range"):
        solve_sparse_assignment([2], [0], [0.1], np.ones(2), np.ones(1))
