"""The link structure of the global pass."""

from __future__ import annotations

import numpy as np
import pytest

from celltrack.link.global_pass import _branch_length, _pairs_within_groups
from celltrack.link.state import LinkState, branch_length, history_length, history_median


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


def test_add_many_matches_adding_one_by_one() -> None:
    existing_sources, existing_targets = np.array([0, 2]), np.array([1, 3])
    sources, targets = np.array([0, 4, 4, 2, 6]), np.array([5, 7, 8, 9, 10])
    together = LinkState(11, existing_sources, existing_targets)
    together.add_many(sources, targets)
    one_by_one = LinkState(11, existing_sources, existing_targets)
    for s, t in zip(sources.tolist(), targets.tolist(), strict=True):
        one_by_one.add(s, t)
    for node in range(11):
        assert together.successors(node) == one_by_one.successors(node)
    assert together.predecessor.tolist() == one_by_one.predecessor.tolist()
    with pytest.raises(RuntimeError, match="node 5 already"):
        together.add_many(np.array([6]), np.array([5]))
    with pytest.raises(RuntimeError, match="node 2 already"):
        LinkState(4, np.zeros(0, int), np.zeros(0, int)).add_many(np.array([0, 1]), np.array([2, 2]))


def test_branch_length_stops_after_the_limit() -> None:
    # 0 -> 1 -> 2 -> 3 (ends); 4 -> 5 -> {6, 7} (divides)
    state = LinkState(8, np.array([0, 1, 2, 4, 5, 5]), np.array([1, 2, 3, 5, 6, 7]))
    assert _branch_length(state, 0, 10) == (4, True)
    assert _branch_length(state, 0, 4) == (4, True)
    assert _branch_length(state, 0, 2) == (3, False)  # longer than the limit: whether it ends is not asked
    assert _branch_length(state, 4, 10) == (2, False)
    assert _branch_length(state, 3, 10) == (1, True)


def test_pairs_within_groups_lists_every_pair_of_each_run() -> None:
    group = np.array([3, 3, 3, 5, 7, 7])
    first, second = _pairs_within_groups(group)
    expected = [(i, j) for i in range(6) for j in range(i + 1, 6) if group[i] == group[j]]
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == expected
    assert len(_pairs_within_groups(np.array([1]))[0]) == 0


def test_history_median_is_the_median_of_up_to_ten_predecessors() -> None:
    # a chain 0 -> 1 -> ... -> 13 and a lone node 14
    n = 15
    state = LinkState(n, np.arange(13), np.arange(1, 14))
    intensity = np.arange(n, dtype=float) ** 1.5
    nodes = np.array([13, 3, 0, 14, 1])
    got = history_median(intensity, state, nodes)
    assert got[0] == np.median(intensity[3:13])  # ten predecessors of 13
    assert got[1] == np.median(intensity[0:3])
    assert np.isnan(got[2]) and np.isnan(got[3])
    assert got[4] == intensity[0]
    assert np.isnan(history_median(None, state, nodes)).all()
    assert history_length(state, nodes).tolist() == [10, 3, 0, 0, 1]
    assert history_length(state, nodes, limit=2).tolist() == [2, 2, 0, 0, 1]


def test_branch_lengths_count_frames_until_an_end_or_a_division() -> None:
    # 0 -> 1 -> 2 -> {3, 4}; 4 -> 5; lone 6
    state = LinkState(7, np.array([0, 1, 2, 2, 4]), np.array([1, 2, 3, 4, 5]))
    assert branch_length(state, np.array([0, 1, 3, 4, 6])).tolist() == [3, 2, 1, 2, 1]
    assert branch_length(state, np.array([0]), limit=2).tolist() == [2]
