"""Sparse linear assignment with "leave unassigned" alternatives, solved per connected component.

Only candidate pairs are given (e.g. from a KD-tree), never a dense N x M matrix. The candidate pairs form
a bipartite graph; each connected component is an independent assignment problem, solved with scipy's
``linear_sum_assignment`` on Jaqaman's block matrix ``[[links, row alternatives], [column alternatives,
0]]``. Work therefore grows with the number of points times the (small) component size.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

logger = logging.getLogger(__name__)

__all__ = ["solve_sparse_assignment"]

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

    graph = sparse.coo_matrix((np.ones(len(rows)), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2)
    _, component = connected_components(graph, directed=False)
    pair_component = component[rows]
    linked_rows, linked_cols = [], []

    # Components with a single candidate pair need no solver: the filter above already accepted it.
    counts = np.bincount(pair_component)
    single = counts[pair_component] == 1
    linked_rows.append(rows[single])
    linked_cols.append(cols[single])

    multi = np.flatnonzero(~single)
    if len(multi):
        order = multi[np.argsort(pair_component[multi], kind="stable")]
        labels = pair_component[order]
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts, ends, strict=True):
            pairs = order[start:end]
            r, c = _solve_component(rows[pairs], cols[pairs], costs[pairs], row_alternative, col_alternative)
            linked_rows.append(r)
            linked_cols.append(c)
    out_rows = np.concatenate(linked_rows)
    out_cols = np.concatenate(linked_cols)
    order = np.argsort(out_rows, kind="stable")
    return out_rows[order], out_cols[order]


def _solve_component(
    rows: np.ndarray,
    cols: np.ndarray,
    costs: np.ndarray,
    row_alternative: np.ndarray,
    col_alternative: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    used_rows, row_index = np.unique(rows, return_inverse=True)
    used_cols, col_index = np.unique(cols, return_inverse=True)
    n, m = len(used_rows), len(used_cols)
    block = np.full((n + m, m + n), _FORBIDDEN)
    block[row_index, col_index] = costs
    block[np.arange(n), m + np.arange(n)] = row_alternative[used_rows]
    block[n + np.arange(m), np.arange(m)] = col_alternative[used_cols]
    block[n:, m:] = 0.0
    r, c = linear_sum_assignment(block)
    is_link = (r < n) & (c < m)
    r, c = r[is_link], c[is_link]
    real = block[r, c] < _FORBIDDEN
    return used_rows[r[real]], used_cols[c[real]]
