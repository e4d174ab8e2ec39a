"""Links under construction: successors and predecessors of every node, and walks along them."""

from __future__ import annotations

import numpy as np

__all__ = ["LinkState", "branch_length", "history_length", "history_median"]

#: Nodes of a track's past that describe its typical size and brightness (before a mitosis, say).
HISTORY = 10


class LinkState:
    """Mutable successor/predecessor structure over node ids.

    Most nodes have at most one successor, so successors are an array of each node's first one plus a
    dictionary of the later ones of the few that divide: no Python list per node, whose creation (and the
    garbage collector's passes over them) cost more than all the linking around it.

    Attributes
    ----------
    predecessor : numpy.ndarray of int, shape (N,)
        Predecessor of every node (-1: none).
    first_successor : numpy.ndarray of int, shape (N,)
        The earliest linked of every node's successors (-1: none).
    """

    def __init__(self, n: int, sources: np.ndarray, targets: np.ndarray) -> None:
        self.predecessor = np.full(n, -1, np.int64)
        self.first_successor = np.full(n, -1, np.int64)
        self._later: dict[int, list[int]] = {}
        self.add_many(sources, targets)

    def add(self, source: int, target: int) -> None:
        """Add a link ``source -> target``."""
        if self.predecessor[target] >= 0:
            raise RuntimeError(f"node {target} already has a predecessor")
        self.predecessor[target] = source
        if self.first_successor[source] < 0:
            self.first_successor[source] = target
        else:
            self._later.setdefault(source, []).append(target)

    def add_many(self, sources: np.ndarray, targets: np.ndarray) -> None:
        """Add links ``sources[k] -> targets[k]`` as :meth:`add` one after another would."""
        sources = np.asarray(sources, np.int64).reshape(-1)
        targets = np.asarray(targets, np.int64).reshape(-1)
        if len(sources) != len(targets):
            raise ValueError(f"sources and targets differ in length: {len(sources)} and {len(targets)}")
        _, first_of_target = np.unique(targets, return_index=True)
        refused = self.predecessor[targets] >= 0
        refused[np.setdiff1d(np.arange(len(targets)), first_of_target)] = True
        if refused.any():
            # The link that adding them one by one would refuse first.
            raise RuntimeError(f"node {int(targets[np.argmax(refused)])} already has a predecessor")
        self.predecessor[targets] = sources
        # A source without a successor takes its first new target; every other link is a later one.
        _, first_of_source = np.unique(sources, return_index=True)
        becomes_first = np.zeros(len(sources), bool)
        becomes_first[first_of_source] = self.first_successor[sources[first_of_source]] < 0
        self.first_successor[sources[becomes_first]] = targets[becomes_first]
        for link in np.flatnonzero(~becomes_first).tolist():
            self._later.setdefault(int(sources[link]), []).append(int(targets[link]))

    def remove(self, source: int, target: int) -> None:
        """Remove the link ``source -> target``."""
        later = self._later.get(source, [])
        if self.first_successor[source] == target:
            self.first_successor[source] = later.pop(0) if later else -1
        else:
            later.remove(target)
        if not later:
            self._later.pop(source, None)
        self.predecessor[target] = -1

    def successors(self, node: int) -> list[int]:
        """Successors of ``node`` in the order they were linked."""
        first = int(self.first_successor[node])
        return [first, *self._later.get(node, ())] if first >= 0 else []

    def out_degree(self) -> np.ndarray:
        """Successor count of every node."""
        return np.bincount(self.predecessor[self.predecessor >= 0], minlength=len(self.predecessor))

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """All links as ``(sources, targets)`` sorted by target."""
        targets = np.flatnonzero(self.predecessor >= 0)
        return self.predecessor[targets], targets


def history_median(values: np.ndarray | None, state: LinkState, nodes: np.ndarray) -> np.ndarray:
    """Median of ``values`` over up to :data:`HISTORY` predecessors of each node (NaN if none or unknown).

    Parameters
    ----------
    values : numpy.ndarray, shape (N,), or None
        A per-node quantity (area, intensity); None gives NaN everywhere.
    state : LinkState
    nodes : numpy.ndarray of int, shape (K,)

    Returns
    -------
    numpy.ndarray, shape (K,)
    """
    nodes = np.asarray(nodes, np.int64)
    reference = np.full(len(nodes), np.nan)
    if values is None or len(nodes) == 0:
        return reference
    # All nodes walk back one step at a time together: ``HISTORY`` array steps, no loop over nodes.
    history = np.full((len(nodes), HISTORY), np.nan)
    current = state.predecessor[nodes]
    for step in range(HISTORY):
        known = current >= 0
        if not known.any():
            break
        history[known, step] = values[current[known]]
        current = np.where(known, state.predecessor[np.maximum(current, 0)], -1)
    seen = ~np.isnan(history[:, 0])
    if seen.any():
        reference[seen] = np.nanmedian(history[seen], axis=1)
    return reference


def history_length(state: LinkState, nodes: np.ndarray, limit: int = HISTORY) -> np.ndarray:
    """Number of predecessors of each node, counted up to ``limit``."""
    current = state.predecessor[np.asarray(nodes, np.int64)]
    count = np.zeros(len(current), np.int64)
    for _ in range(limit):
        known = current >= 0
        if not known.any():
            break
        count += known
        current = np.where(known, state.predecessor[np.maximum(current, 0)], -1)
    return count


def branch_length(state: LinkState, nodes: np.ndarray, limit: int = HISTORY) -> np.ndarray:
    """Frames each node's branch lives from it while it has exactly one successor, counted up to ``limit``.

    1 for a node that ends or divides at once; a branch still going after ``limit`` frames counts ``limit``.
    """
    nodes = np.asarray(nodes, np.int64)
    length = np.ones(len(nodes), np.int64)
    degree = state.out_degree()
    current = nodes.copy()
    going = degree[current] == 1
    for _ in range(limit - 1):
        if not going.any():
            break
        current = np.where(going, state.first_successor[current], current)
        length += going
        going = going & (degree[current] == 1)
    return length
