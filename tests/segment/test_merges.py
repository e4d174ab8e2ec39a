"""Temporal split of objects that merge two nuclei of the previous frame."""

from __future__ import annotations

import numpy as np
import pytest

from celltrack.segment import MergeSplitConfig, MergeSplitter, split_merged_nuclei
from celltrack.synthetic import disc_labels


def discs(shape: tuple[int, int], centres: list[tuple[float, float]], radius: float) -> np.ndarray:
    return disc_labels(shape, centres, radius, np.uint16)


def test_two_touching_nuclei_merged_into_one_object_are_cut_apart() -> None:
    previous = discs((60, 80), [(30, 25), (30, 50)], 10)
    moved = discs((60, 80), [(30, 28), (30, 46)], 10)  # the two nuclei now overlap: one object
    current = (moved > 0).astype(np.uint16) * 7
    assert MergeSplitter().merged_objects(previous, current) == {7: [1, 2]}
    split = split_merged_nuclei(previous, current)
    assert sorted(np.unique(split).tolist()) == [0, 7, 8]
    assert np.array_equal(split > 0, current > 0), "no pixel gained or lost"
    # Each part sits on one nucleus: the cut is the neck between them.
    left, right = split[30, 20], split[30, 55]
    assert left != right and {int(left), int(right)} == {7, 8}
    assert abs(int(np.flatnonzero(split[30] == left).max()) - 37) <= 1


def test_convex_nucleus_over_split_in_the_previous_frame_stays_whole() -> None:
    # Other nuclei of the same size in the frame: the halves are fragments, not whole nuclei.
    whole = discs((90, 120), [(30, 30), (30, 75), (30, 105), (70, 20), (70, 60), (70, 100)], 12)
    halves = whole.copy()
    halves[:, 30:45][halves[:, 30:45] == 1] = 9  # the previous frame cut nucleus 1 in two
    assert MergeSplitter().merged_objects(halves, whole) == {1: [1, 9]}
    assert split_merged_nuclei(halves, whole) is whole
    # Without other nuclei the two halves look whole; a neck is then required, and there is none.
    alone = discs((60, 60), [(30, 30)], 12)
    two = alone.copy()
    two[:, 30:][two[:, 30:] > 0] = 2
    assert split_merged_nuclei(two, alone, MergeSplitConfig(whole_fraction=None)) is alone


def test_two_whole_nuclei_pressed_flat_together_are_cut_without_a_neck() -> None:
    previous = np.zeros((60, 120), np.uint16)
    previous[20:40, 10:30] = 1
    previous[20:40, 30:50] = 2  # two square nuclei side by side, as separate objects
    previous[20:40, 80:100] = 3  # a third, typical nucleus
    current = previous.copy()
    current[current == 2] = 1  # the segmenter now returns the pair as one rectangle: no neck
    split = split_merged_nuclei(previous, current)
    assert len(np.unique(split[split > 0])) == 3
    assert split[30, 15] != split[30, 45]
    # Requiring a neck (the old rule) leaves the rectangle whole.
    assert split_merged_nuclei(previous, current, MergeSplitConfig(whole_fraction=None)) is current
    # A large nucleus over-split for one frame only (one object two frames back) is not cut again.
    assert split_merged_nuclei(previous, current, before=current) is current


def test_a_small_nucleus_pressed_against_a_neighbour_is_cut_off_when_they_were_apart_before() -> None:
    def frame(partner_width: int) -> np.ndarray:
        labels = np.zeros((60, 160), np.uint16)
        labels[20:40, 10 : 10 + partner_width] = 1
        labels[20:40, 10 + partner_width : 20 + partner_width] = 2  # a small nucleus (200 px) touching it
        for index, left in enumerate((70, 100, 130), start=3):
            labels[20:40, left : left + 20] = index  # typical nuclei (400 px) set the median
        return labels

    previous = frame(22)
    current = previous.copy()
    current[current == 2] = 1  # one rectangle of 640 px: no neck, and nucleus 2 is below whole size
    split = MergeSplitter().split(previous, current, before=previous)
    assert split[30, 20] != split[30, 36] and np.array_equal(split > 0, current > 0)
    assert 150 <= np.count_nonzero(split == split[30, 36]) <= 300  # a distance watershed: about 200
    # Without the frame before (or with the option off), the small one may be a fragment: left joined.
    assert split_merged_nuclei(previous, current) is current
    off = MergeSplitConfig(cut_apart_nuclei=False)
    assert split_merged_nuclei(previous, current, off, before=previous) is current
    # One object two frames back (a division or an over-split) stays joined, ...
    assert split_merged_nuclei(previous, current, before=current) is current
    # ... and so does an object no larger than one nucleus (1.5 x the median object) however it came about.
    previous = frame(16)
    current = previous.copy()
    current[current == 2] = 1  # 520 px
    assert split_merged_nuclei(previous, current, before=previous) is current


def test_divisions_neighbours_and_disabled_config_are_left_alone() -> None:
    mother = discs((60, 80), [(30, 40)], 12)
    daughters = discs((60, 80), [(30, 30), (30, 52)], 8)
    assert split_merged_nuclei(mother, daughters) is daughters
    # A nucleus grown into its neighbour holds less than half of it: not a merge.
    previous = discs((60, 80), [(30, 25), (30, 45)], 10)
    grown = discs((60, 80), [(30, 27)], 14)
    assert MergeSplitter(MergeSplitConfig(min_area_ratio=0.9)).merged_objects(previous, grown) == {}
    merged = (discs((60, 80), [(30, 28), (30, 46)], 10) > 0).astype(np.uint16)
    off = MergeSplitConfig(enabled=False)
    assert split_merged_nuclei(discs((60, 80), [(30, 25), (30, 50)], 10), merged, off) is merged


def test_bad_label_images_are_rejected() -> None:
    labels = discs((20, 20), [(10, 10)], 4)
    with pytest.raises(ValueError, match="differ in shape"):
        split_merged_nuclei(labels, labels[:10])
    with pytest.raises(TypeError, match="integer label image"):
        split_merged_nuclei(labels.astype(np.float32), labels)
    with pytest.raises(ValueError, match="2-D"):
        split_merged_nuclei(labels[None], labels[None])
    with pytest.raises(ValueError, match="negative"):
        split_merged_nuclei(labels.astype(np.int32) - 1, labels.astype(np.int32))


def test_daughters_of_a_fresh_division_joining_again_are_left_joined() -> None:
    mother = discs((60, 80), [(30, 37)], 17)  # elongated in anaphase: covers most of both daughters
    daughters = discs((60, 80), [(30, 27), (30, 48)], 9)  # one frame after the mother
    rejoined = (discs((60, 80), [(30, 29), (30, 45)], 9) > 0).astype(np.uint16)
    # Without the frame before, this is an ordinary merge and gets cut ...
    assert len(np.unique(split_merged_nuclei(daughters, rejoined))) == 3
    # ... but the two nuclei were one object then: cutting would bring the division forward.
    assert split_merged_nuclei(daughters, rejoined, before=mother) is rejoined
    # Two nuclei that were apart before too are cut.
    apart_before = discs((60, 80), [(30, 25), (30, 50)], 9)
    assert len(np.unique(split_merged_nuclei(daughters, rejoined, before=apart_before))) == 3


def test_split_movie_corrects_frames_in_order_with_the_frame_before() -> None:
    mother = discs((60, 80), [(30, 37)], 17)
    daughters = discs((60, 80), [(30, 27), (30, 48)], 9)
    rejoined = (discs((60, 80), [(30, 29), (30, 45)], 9) > 0).astype(np.uint16)
    # After a division the rejoined daughters stay whole; after two separate nuclei they are cut.
    assert len(np.unique(list(MergeSplitter().split_movie([mother, daughters, rejoined]))[2])) == 2
    apart = discs((60, 80), [(30, 25), (30, 50)], 9)
    corrected = list(MergeSplitter().split_movie([apart, daughters, rejoined]))
    assert len(corrected) == 3 and corrected[0] is apart
    assert len(np.unique(corrected[2])) == 3


def _frame_with_neighbours(extra: np.ndarray) -> np.ndarray:
    """``extra`` (labels 1, 2, ...) plus four typical nuclei (labels 11-14), which set the median size."""
    frame = extra.astype(np.uint16).copy()
    others = discs(frame.shape, [(15, 100), (45, 100), (75, 100), (105, 100)], 10)
    frame[others > 0] = others[others > 0] + 10
    return frame


def test_fragments_and_daughters_are_left_as_segmented() -> None:
    # The correction only cuts merges: pieces of one over-split nucleus and a division's daughters stay as
    # the segmenter gave them (a rejoin of touching pieces was measured and deleted: it cost SIM+ 01 more
    # complete tracks than it gained on HeLa 01).
    previous = _frame_with_neighbours(discs((120, 120), [(40, 40)], 10))
    halves = discs((120, 120), [(40, 40)], 10)
    halves[:, 40:][halves[:, 40:] > 0] = 2  # over-split now, the halves touch
    current = _frame_with_neighbours(halves)
    assert list(MergeSplitter().split_movie([previous, current]))[1] is current
    daughters = _frame_with_neighbours(discs((120, 120), [(40, 30), (40, 52)], 7))
    assert list(MergeSplitter().split_movie([previous, daughters]))[1] is daughters


def test_a_nucleus_that_moved_far_counts_as_held_where_its_old_centre_lies() -> None:
    previous = discs((60, 80), [(30, 25), (30, 55)], 10)
    # Now one object: a small piece over nucleus 1's old centre (a third of its area), a bridge, and
    # nucleus 2. Nucleus 1 overlaps no current object by half, but its old centre lies in this one.
    current = ((discs((60, 80), [(30, 26)], 6) > 0) | (discs((60, 80), [(30, 55)], 10) > 0)).astype(np.uint16)
    current[27:34, 26:55] = 1
    overlap = np.count_nonzero((previous == 1) & (current == 1)) / np.count_nonzero(previous == 1)
    assert overlap < MergeSplitConfig().min_overlap
    assert MergeSplitter().merged_objects(previous, current) == {1: [1, 2]}
    split = split_merged_nuclei(previous, current)
    assert split[30, 26] != split[30, 55]


def test_the_cut_follows_the_current_nuclei_not_the_previous_masks() -> None:
    # Two square nuclei pressed flat together (no neck), with a third, typical one. Nucleus 1 moved 6 px
    # toward nucleus 2 (4 px on): nucleus 2's previous mask covers the right part of nucleus 1 now.
    previous = np.zeros((60, 120), np.uint16)
    previous[20:40, 10:30] = 1
    previous[20:40, 30:50] = 2
    previous[20:40, 90:110] = 3
    current = previous.copy()
    current[20:40, 10:56] = 0
    current[20:40, 16:36] = 1
    current[20:40, 36:56] = 1  # nucleus 2, merged with nucleus 1 into one rectangle
    split = split_merged_nuclei(previous, current)
    assert len(np.unique(split[split > 0])) == 3
    left = split[20:40, 16:36]
    assert np.all(left == split[30, 20]) and not np.any(split[20:40, 36:56] == split[30, 20])
    # Cut where the seeds (the previous masks) meet, it falls 6 px inside nucleus 1.
    lagging = split_merged_nuclei(previous, current, MergeSplitConfig(cut="distance"))
    assert int(np.flatnonzero(lagging[30] == lagging[30, 20]).max()) <= 31


def test_power_partition_cuts_touching_discs_at_their_contact_whatever_the_seeds() -> None:
    from celltrack.segment.merges import power_partition

    yy, xx = np.mgrid[:40, :60]
    nuclei = np.zeros((40, 60), np.int32)  # radii 8 and 12, touching at column 26
    nuclei[np.hypot(yy - 20, xx - 18) <= 8] = 1
    nuclei[np.hypot(yy - 20, xx - 38) < 12] = 2
    mask = nuclei > 0
    seeds = [np.zeros_like(mask), np.zeros_like(mask)]
    seeds[0][18:22, 22:25] = True  # off-centre seeds near the contact
    seeds[1][18:22, 28:31] = True
    parts = power_partition(mask, seeds, np.array([np.pi * 8**2, np.pi * 12**2]))
    assert parts.dtype == np.int32 and set(np.unique(parts).tolist()) == {0, 1, 2}
    assert np.array_equal(parts > 0, mask)
    assert np.mean(parts[nuclei == 1] == 1) > 0.97 and np.mean(parts[nuclei == 2] == 2) > 0.97


def test_power_partition_rejects_inconsistent_input() -> None:
    from celltrack.segment.merges import power_partition

    mask = np.ones((8, 8), bool)
    seed = np.zeros((8, 8), bool)
    seed[2, 2] = True
    with pytest.raises(ValueError, match="one area per seed"):
        power_partition(mask, [seed], np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="non-empty boolean image"):
        power_partition(mask, [seed, np.zeros((8, 8), bool)], np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="2-D"):
        power_partition(mask[None], [seed], np.array([1.0]))
