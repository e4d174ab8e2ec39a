"""Tests for the sparse, component-wise assignment solver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from celltrack.link import solve_robust_assignment, solve_sparse_assignment


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


def _dense_optimum(rows, cols, costs, row_alt, col_alt) -> float:
    """Optimal total cost from one dense Jaqaman block matrix over the whole problem."""
    from scipy.optimize import linear_sum_assignment

    n, m = len(row_alt), len(col_alt)
    block = np.full((n + m, m + n), 1e9)
    block[rows, cols] = costs
    block[np.arange(n), m + np.arange(n)] = row_alt
    block[n + np.arange(m), np.arange(m)] = col_alt
    block[n:, m:] = 0.0
    r, c = linear_sum_assignment(block)
    return float(block[r, c].sum())


def test_many_components_solved_in_shared_batches_stay_optimal() -> None:
    # 60 components of up to 6 x 6 (far more rows plus columns than one batch holds), one much larger.
    rng = np.random.default_rng(1)
    rows, cols, offset_r, offset_c = [], [], 0, 0
    for size in [*rng.integers(1, 7, 60), 40]:
        mask = rng.random((size, size)) < 0.5
        mask[np.arange(size), np.arange(size)] = True  # connected enough to be one or a few components
        r, c = np.nonzero(mask)
        rows.append(r + offset_r)
        cols.append(c + offset_c)
        offset_r, offset_c = offset_r + size, offset_c + size
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    costs = rng.normal(1.0, 1.0, len(rows))
    row_alt, col_alt = rng.uniform(0.2, 1.5, offset_r), rng.uniform(0.2, 1.5, offset_c)
    r, c = solve_sparse_assignment(rows, cols, costs, row_alt, col_alt)
    assert len(set(r.tolist())) == len(r) and len(set(c.tolist())) == len(c)
    lookup = {(int(a), int(b)): float(v) for a, b, v in zip(rows, cols, costs, strict=True)}
    assert total_cost(r, c, lookup, row_alt, col_alt) == pytest.approx(
        _dense_optimum(rows, cols, costs, row_alt, col_alt)
    )


@pytest.mark.parametrize("seed", range(6))
def test_robust_assignment_is_optimal_for_any_costs_within_the_bounds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_rows, n_cols = 12, 12
    # Block-diagonal candidate graph: several small independent components.
    block = np.arange(n_rows)[:, None] // 3 == np.arange(n_cols)[None, :] // 3
    rows, cols = np.nonzero(block & (rng.random((n_rows, n_cols)) < 0.7))
    lower = rng.normal(1.0, 1.0, len(rows))
    upper = lower + rng.choice([0.0, 0.05, 1.5], len(rows))  # tight and loose bounds
    row_alt, col_alt = rng.uniform(0.5, 1.5, n_rows), rng.uniform(0.5, 1.5, n_cols)
    linked_r, linked_c, undecided = solve_robust_assignment(rows, cols, lower, upper, row_alt, col_alt)
    decided_rows = set(rows[~undecided].tolist()) - set(rows[undecided].tolist())
    for _ in range(20):
        costs = rng.uniform(lower, upper)
        best_r, best_c = solve_sparse_assignment(rows, cols, costs, row_alt, col_alt)
        best = {(a, b) for a, b in zip(best_r.tolist(), best_c.tolist(), strict=True) if a in decided_rows}
        assert set(zip(linked_r.tolist(), linked_c.tolist(), strict=True)) == best
    # Undecided pairs come in whole components: no decided link shares a row or column with them.
    assert not set(linked_r.tolist()) & set(rows[undecided].tolist())
    assert not set(linked_c.tolist()) & set(cols[undecided].tolist())


def test_robust_assignment_flags_only_components_the_bounds_can_flip() -> None:
    # Rows 0 and 1 compete for column 0 (costs overlap); row 2 has column 2 to itself, cheaply.
    rows, cols = np.array([0, 1, 2]), np.array([0, 0, 2])
    lower, upper = np.array([0.2, 0.3, 0.1]), np.array([0.6, 0.7, 0.4])
    r, c, undecided = solve_robust_assignment(rows, cols, lower, upper, np.ones(3), np.ones(3))
    assert undecided.tolist() == [True, True, False]
    assert r.tolist() == [2] and c.tolist() == [2]
    # Equal bounds: nothing is left to measure.
    r, c, undecided = solve_robust_assignment(rows, cols, lower, lower, np.ones(3), np.ones(3))
    assert not undecided.any() and dict(zip(r.tolist(), c.tolist(), strict=True)) == {0: 0, 2: 2}


def test_robust_assignment_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at most its upper"):
        solve_robust_assignment([0], [0], [1.0], [0.5], np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="equal lengths"):
        solve_robust_assignment([0, 1], [0], [1.0], [1.0], np.ones(2), np.ones(1))
    with pytest.raises(ValueError, match="distinct"):
        solve_robust_assignment([0, 0], [0, 0], [0.1, 0.2], [0.1, 0.2], np.ones(1), np.ones(1))


@pytest.mark.parametrize("seed", range(4))
def test_pair_components_are_the_graph_components_labelled_by_their_first_row(seed: int) -> None:
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    from celltrack.link.lap import _local_index, _pair_components

    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, 40, 60), rng.integers(0, 50, 60)
    # plus a long chain, where labels must travel far
    rows = np.concatenate([rows, np.arange(100, 130), np.arange(101, 130)])
    cols = np.concatenate([cols, np.arange(100, 130), np.arange(100, 129)])
    n_rows, n_cols = 130, 130
    label = _pair_components(rows, cols, n_rows, n_cols)
    graph = sparse.coo_matrix((np.ones(len(rows)), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2)
    component = connected_components(graph, directed=False)[1][rows]
    assert np.array_equal(
        np.unique(label, return_inverse=True)[1], np.unique(component, return_inverse=True)[1]
    )
    for value in np.unique(label).tolist():
        assert value == rows[label == value].min()
    assert len(_pair_components(rows[:0], cols[:0], n_rows, n_cols)) == 0
    # Ranks of each row among its component's rows, components in label order.
    dense = np.unique(label, return_inverse=True)[1]
    key_component, local = _local_index(dense, rows, int(dense.max()) + 1)
    keys = np.unique(dense * n_rows + rows)
    assert np.array_equal(key_component, keys // n_rows)
    for k in range(int(dense.max()) + 1):
        members = np.unique(rows[dense == k])
        assert np.array_equal(local[dense == k], np.searchsorted(members, rows[dense == k]))
