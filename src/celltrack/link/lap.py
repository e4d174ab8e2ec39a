"""Sparse linear assignment with "leave unassigned" alternatives, solved per connected component.

Only candidate pairs are given (e.g. from a KD-tree), never a dense N x M matrix. The candidate pairs form
a bipartite graph; each connected component is an independent assignment problem, solved with scipy's
``linear_sum_assignment`` on Jaqaman's block matrix ``[[links, row alternatives], [column alternatives,
0]]``. Work therefore grows with the number of points times the (small) component size.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)

__all__ = ["solve_robust_assignment", "solve_sparse_assignment"]

#: Cost standing in for a forbidden cell of a block matrix; far above any real cost.
_FORBIDDEN = 1e9


def solve_sparse_assignment(
    rows: np.ndarray,
    cols: np.ndarray,
    costs: np.ndarray,
    row_alternative: np.ndarray,
    col_alternative: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one links among candidate pairs; every row and column may stay unlinked.

    Minimises ``sum(link costs) + sum(row_alternative of unlinked rows) + sum(col_alternative of unlinked
    columns)``. A link is therefore made only when it beats leaving both ends unlinked.

    Parameters
    ----------
    rows, cols : numpy.ndarray of int, shape (P,)
        Candidate pairs: row index in ``[0, R)``, column index in ``[0, C)``. Duplicates keep the cheapest.
    costs : numpy.ndarray of float, shape (P,)
        Link costs (may be negative; ``inf``/NaN drop the pair).
    row_alternative : numpy.ndarray of float, shape (R,)
        Cost of leaving each row unlinked (e.g. a track ending).
    col_alternative : numpy.ndarray of float, shape (C,)
        Cost of leaving each column unlinked (e.g. a track starting).

    Returns
    -------
    linked_rows, linked_cols : numpy.ndarray of int
        The chosen pairs, sorted by row.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(cols, dtype=np.int64).reshape(-1)
    costs = np.asarray(costs, dtype=np.float64).reshape(-1)
    row_alternative = np.asarray(row_alternative, dtype=np.float64).reshape(-1)
    col_alternative = np.asarray(col_alternative, dtype=np.float64).reshape(-1)
    if not len(rows) == len(cols) == len(costs):
        raise ValueError(
            f"rows, cols and costs must have equal lengths, got {len(rows)}, {len(cols)}, {len(costs)}"
        )
    n_rows, n_cols = len(row_alternative), len(col_alternative)
    empty = np.zeros(0, np.int64)
    keep = np.isfinite(costs)
    rows, cols, costs = rows[keep], cols[keep], costs[keep]
    if len(rows) == 0:
        return empty, empty.copy()
    if rows.min() < 0 or rows.max() >= n_rows or cols.min() < 0 or cols.max() >= n_cols:
        raise ValueError(f"candidate indices out of range for {n_rows} rows and {n_cols} columns")
    # A pair is only worth considering when it beats leaving both ends unlinked.
    useful = costs < row_alternative[rows] + col_alternative[cols]
    rows, cols, costs = rows[useful], cols[useful], costs[useful]
    if len(rows) == 0:
        return empty, empty.copy()
    order = np.lexsort((costs, cols, rows))
    rows, cols, costs = rows[order], cols[order], costs[order]
    first = np.ones(len(rows), bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols, costs = rows[first], cols[first], costs[first]

    savings = costs - row_alternative[rows] - col_alternative[cols]
    chosen = _choose(rows, cols, savings, _pair_components(rows, cols, n_rows, n_cols))
    order = np.argsort(rows[chosen], kind="stable")
    return rows[chosen][order], cols[chosen][order]


def _pair_components(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Connected component of each candidate pair in the bipartite graph of rows and columns.

    A component is labelled by its smallest row, so sorting by label orders components by their first
    row (as ``scipy.sparse.csgraph.connected_components`` numbers them; the solver's batches follow that
    order). Labels spread as minima, row to column and back, with pointer jumping: the components are
    small, so a few rounds of array operations beat building a sparse matrix for scipy.
    """
    label = np.arange(n_rows)
    if len(rows) == 0:
        return label[rows]
    by_row = np.argsort(rows, kind="stable")
    row_starts = _run_starts(rows[by_row])
    row_ids = rows[by_row][row_starts]
    by_col = np.argsort(cols, kind="stable")
    col_starts = _run_starts(cols[by_col])
    col_ids = cols[by_col][col_starts]
    col_label = np.empty(n_cols, np.int64)
    while True:
        col_label[col_ids] = np.minimum.reduceat(label[rows][by_col], col_starts)
        spread = label.copy()
        # A column's label is at most those of its rows, so the minimum over a row's columns is too.
        spread[row_ids] = np.minimum.reduceat(col_label[cols][by_row], row_starts)
        # Labels are rows of the same component, so a label's own label is one as well, and no larger.
        spread = spread[spread]
        if np.array_equal(spread, label):
            return label[rows]
        label = spread


def _choose(
    rows: np.ndarray, cols: np.ndarray, savings: np.ndarray, pair_component: np.ndarray
) -> np.ndarray:
    """Which pairs the optimal assignment links, given each link's saving (cost minus both alternatives).

    Returns
    -------
    numpy.ndarray of bool, shape (P,)
    """
    counts = np.bincount(pair_component)
    single = counts[pair_component] == 1
    # A component of one pair needs no solver: it is linked when the link pays.
    chosen = single & (savings < 0.0)
    multi = np.flatnonzero(~single)
    if len(multi):
        chosen[multi] = _solve_components(rows[multi], cols[multi], savings[multi], pair_component[multi])
    return chosen


#: Components are solved together in one block-diagonal matrix of about this many rows plus columns: one
#: solver call for many small components, while the dense solve stays far below its cubic regime.
_BATCH_SIZE = 64


def _solve_components(
    rows: np.ndarray, cols: np.ndarray, savings: np.ndarray, pair_component: np.ndarray
) -> np.ndarray:
    """Which pairs of many small components are linked, each component maximising its total saving.

    ``savings`` are link costs minus both ends' alternatives (negative: the link pays). Each component
    of ``n`` rows and ``m`` columns is an ``n x (m + n)`` block: its pairs, then one zero "stay unlinked"
    column per row; a row's dummy and a column nobody takes leave it unlinked. This is Jaqaman's block
    matrix with the constant alternatives taken out. Components sit on the diagonal of shared matrices
    (forbidden elsewhere), so one solver call serves many of them.

    Returns
    -------
    numpy.ndarray of bool, shape (P,)
    """
    # Dense component numbers, in label order.
    present = np.zeros(int(pair_component.max()) + 1, bool)
    present[pair_component] = True
    component = (np.cumsum(present) - 1)[pair_component]
    n_components = int(np.count_nonzero(present))
    row_component, row_local = _local_index(component, rows, n_components)
    col_component, col_local = _local_index(component, cols, n_components)
    n_rows = np.bincount(row_component, minlength=n_components)
    n_cols = np.bincount(col_component, minlength=n_components)
    # Consecutive components share a batch by where they start: a batch holds at most one batch size plus
    # its last component.
    width = n_rows + n_cols
    row_start = _cumsum0(n_rows)
    width_start = _cumsum0(width)
    start_batch = width_start[:-1] // _BATCH_SIZE
    batch = _cumsum0(start_batch[1:] != start_batch[:-1])
    n_batches = int(batch[-1]) + 1
    # Components, their rows and the rows' block positions all run in batch order, so a batch is a slice.
    bounds = np.searchsorted(batch, np.arange(n_batches + 1))
    row_bounds, width_bounds = row_start[bounds], width_start[bounds]
    row_offset = row_start[:-1] - row_bounds[batch]
    col_offset = width_start[:-1] - width_bounds[batch]
    pair_row = row_offset[component] + row_local
    pair_col = col_offset[component] + col_local
    # Each row's own "stay unlinked" column.
    local = np.arange(len(row_component)) - row_start[row_component]
    own_row = row_offset[row_component] + local
    own_col = col_offset[row_component] + n_cols[row_component] + local
    pair_batch = batch[component]
    by_batch = np.argsort(pair_batch, kind="stable")
    pair_bounds = np.searchsorted(pair_batch[by_batch], np.arange(n_batches + 1))
    chosen = np.zeros(len(rows), bool)
    for b in range(n_batches):
        block = np.full(
            (row_bounds[b + 1] - row_bounds[b], width_bounds[b + 1] - width_bounds[b]), _FORBIDDEN
        )
        pairs = by_batch[pair_bounds[b] : pair_bounds[b + 1]]
        block[pair_row[pairs], pair_col[pairs]] = savings[pairs]
        own = slice(row_bounds[b], row_bounds[b + 1])
        block[own_row[own], own_col[own]] = 0.0
        r, c = linear_sum_assignment(block)
        column = np.empty(len(block), np.int64)
        column[r] = c
        taken = pairs[column[pair_row[pairs]] == pair_col[pairs]]
        chosen[taken[savings[taken] < 0.0]] = True
    return chosen


def _local_index(
    component: np.ndarray, index: np.ndarray, n_components: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (component, index) pairs sorted by component, and each element's rank in its component.

    Every index must lie in one component only, as the rows and the columns of graph components do.

    Returns
    -------
    key_component : numpy.ndarray
        Component of each distinct (component, index) pair, in sorted order.
    local : numpy.ndarray
        For each element, the rank of its index among its component's distinct indices.
    """
    # The distinct pairs are then the distinct indices; a stable sort of them by component keeps them by
    # index within it (cheaper than np.unique on all elements).
    span = int(index.max()) + 1
    owner = np.full(span, n_components, np.int64)
    owner[index] = component
    keys = np.argsort(owner, kind="stable")[: np.count_nonzero(owner < n_components)]
    key_component = owner[keys]
    rank = np.empty(span, np.int64)
    rank[keys] = np.arange(len(keys))
    first = _cumsum0(np.bincount(key_component, minlength=n_components))
    return key_component, rank[index] - first[component]


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in a sorted, non-empty array."""
    change = np.empty(len(values), bool)
    change[0] = True
    np.not_equal(values[1:], values[:-1], out=change[1:])
    return np.flatnonzero(change)


def _cumsum0(sizes: np.ndarray) -> np.ndarray:
    """Cumulative sums of integers with a leading zero: run boundaries from run sizes."""
    total = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=total[1:])
    return total


def solve_robust_assignment(
    rows: np.ndarray,
    cols: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    row_alternative: np.ndarray,
    col_alternative: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The assignment wherever it is the same for every link cost between ``lower`` and ``upper``.

    Some cost terms are expensive to measure (the filter responses) but bounded. An assignment ``S``
    that stays optimal when its own links cost their upper bound and every other pair its lower bound
    is optimal for any costs within the bounds: against any other assignment ``S'``, the pairs of ``S``
    not in ``S'`` cost at most their upper bounds and those of ``S'`` not in ``S`` at least their lower
    bounds. The test runs per connected component of the candidate graph, so the components it
    cannot decide are the only ones whose costs need measuring.

    Parameters
    ----------
    rows, cols : numpy.ndarray of int, shape (P,)
        Distinct candidate pairs (see :func:`solve_sparse_assignment`).
    lower, upper : numpy.ndarray of float, shape (P,)
        Bounds of each pair's cost (``lower <= upper``; ``inf`` lower bounds drop the pair).
    row_alternative : numpy.ndarray of float, shape (R,)
        Cost of leaving each row unlinked.
    col_alternative : numpy.ndarray of float, shape (C,)
        Cost of leaving each column unlinked.

    Returns
    -------
    linked_rows, linked_cols : numpy.ndarray of int
        The links of the decided components, sorted by row.
    undecided : numpy.ndarray of bool, shape (P,)
        Pairs of components whose assignment depends on where the costs lie within their bounds; solve
        them with their measured costs (:func:`solve_sparse_assignment`): they form whole components,
        independent of the rest.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(cols, dtype=np.int64).reshape(-1)
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(upper, dtype=np.float64).reshape(-1)
    row_alternative = np.asarray(row_alternative, dtype=np.float64).reshape(-1)
    col_alternative = np.asarray(col_alternative, dtype=np.float64).reshape(-1)
    if not len(rows) == len(cols) == len(lower) == len(upper):
        raise ValueError(
            f"rows, cols, lower and upper must have equal lengths, got {len(rows)}, {len(cols)}, "
            f"{len(lower)}, {len(upper)}"
        )
    if np.any(lower > upper):
        raise ValueError("every lower cost bound must be at most its upper bound")
    undecided = np.zeros(len(rows), bool)
    empty = np.zeros(0, np.int64)
    # Pairs that lose to leaving both ends unlinked even at their lower bound are never linked.
    possible = np.flatnonzero(np.isfinite(lower))
    possible = possible[lower[possible] < row_alternative[rows[possible]] + col_alternative[cols[possible]]]
    if len(possible) == 0:
        return empty, empty.copy(), undecided
    keys = np.sort(rows[possible] * len(col_alternative) + cols[possible])
    if np.any(keys[1:] == keys[:-1]):
        raise ValueError("candidate pairs must be distinct")
    r, c = rows[possible], cols[possible]
    alternatives = row_alternative[r] + col_alternative[c]
    pair_component = _pair_components(r, c, len(row_alternative), len(col_alternative))
    guess = _choose(r, c, 0.5 * (lower[possible] + upper[possible]) - alternatives, pair_component)
    adversarial = np.where(guess, upper[possible], lower[possible])
    check = _choose(r, c, adversarial - alternatives, pair_component)
    changed = np.zeros(pair_component.max() + 1, bool)
    changed[pair_component[guess != check]] = True
    undecided[possible] = changed[pair_component]
    decided = guess & ~changed[pair_component]
    order = np.argsort(r[decided], kind="stable")
    return r[decided][order], c[decided][order], undecided
