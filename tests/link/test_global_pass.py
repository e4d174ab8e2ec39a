"""The link structure of the global pass."""

from __future__ import annotations

import numpy as np
import pytest

from celltrack.link.global_pass import LinkState, _branch_length


def test_link_state_from_arrays_matches_links_added_one_by_one() -> None:
    sources = np.array([0, 2, 0, 5, 0, 3])
    targets = np.array([1, 3, 4, 6, 7, 8])
    built = LinkState(9, sources, targets)
    added = LinkState(9, sources[:0], targets[:0])
    for s, t in zip(sources.tolist(), targets.tolist(), strict=True):
        added.add(s, t)
    for state in (built, added):
        assert state.successors(0) == [1, 4, 7]  # in the order linked
        assert state.successors(1) == []
        assert state.out_degree().tolist() == [3, 0, 1, 1, 0, 1, 0, 0, 0]
        assert state.predecessor.tolist() == [-1, 0, -1, 2, 0, -1, 5, 0, 3]
    built.remove(0, 1)  # the first successor: the next one takes its place
    assert built.successors(0) == [4, 7]
    built.remove(0, 7)
    built.remove(0, 4)
    assert built.successors(0) == [] and built.out_degree()[0] == 0 and built.predecessor[4] == -1
    built.add(0, 4)
    assert built.successors(0) == [4]
    with pytest.raises(ValueError):
        built.remove(0, 6)
    with pytest.raises(RuntimeError, match="node 3 already"):
        LinkState(5, np.array([0, 1, 2, 0]), np.array([3, 4, 3, 4]))


def test_branch_length_stops_after_the_limit() -> None:
    # 0 -> 1 -> 2 -> 3 (ends); 4 -> 5 -> {6, 7} (divides)
    state = LinkState(8, np.array([0, 1, 2, 4, 5, 5]), np.array([1, 2, 3, 5, 6, 7]))
    assert _branch_length(state, 0, 10) == (4, True)
    assert _branch_length(state, 0, 4) == (4, True)
    assert _branch_length(state, 0, 2) == (3, False)  # longer than the limit: whether it ends is not asked
    assert _branch_length(state, 4, 10) == (2, False)
    assert _branch_length(state, 3, 10) == (1, True)
