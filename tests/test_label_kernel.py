"""Connected-component labelling kernel (snowball regions in jump detection)."""

from __future__ import annotations

import numpy as np
import pytest

from jwpipe._ext._label import label_components


def _grid_edges(mask):
    """8-connected neighbour pairs of the set pixels of ``mask``, as node indices."""
    ny, nx = mask.shape
    lin = np.flatnonzero(mask)
    index = -np.ones(mask.size, np.int64)
    index[lin] = np.arange(lin.size)
    ys, xs = np.divmod(lin, nx)
    a, b = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        ty, tx = ys + dy, xs + dx
        ok = (ty >= 0) & (ty < ny) & (tx >= 0) & (tx < nx)
        target = index[np.where(ok, ty * nx + tx, 0)]
        ok &= target >= 0
        a.append(np.flatnonzero(ok))
        b.append(target[ok])
    return lin.size, np.concatenate(a), np.concatenate(b)


def _flood_fill_labels(mask):
    """Slow, obviously correct 8-connected labelling (breadth-first), numbered in row-major
    order of each region's first pixel."""
    ny, nx = mask.shape
    label = -np.ones(mask.shape, np.int64)
    count = 0
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if label[y0, x0] >= 0:
            continue
        label[y0, x0] = count
        queue = [(y0, x0)]
        while queue:
            y, x = queue.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < ny and 0 <= u < nx and mask[v, u] and label[v, u] < 0:
                        label[v, u] = count
                        queue.append((v, u))
        count += 1
    return count, label[mask]


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.55])
def test_labels_match_flood_fill(fraction):
    """Random masks from sparse to percolating: identical labels, numbering included."""
    mask = np.random.default_rng(7).random((60, 80)) < fraction
    n, a, b = _grid_edges(mask)
    ncomp, label = label_components(n, a, b)
    want_n, want = _flood_fill_labels(mask)
    assert ncomp == want_n
    np.testing.assert_array_equal(label, want)


def test_edge_order_and_duplicates_do_not_matter():
    # a chain 0-1-2-3 given backwards with repeats, plus isolated 4 and a pair 5-6
    a = np.array([3, 2, 2, 1, 6, 1], np.int64)
    b = np.array([2, 3, 1, 0, 5, 0], np.int64)
    ncomp, label = label_components(7, a, b)
    assert ncomp == 3
    np.testing.assert_array_equal(label, [0, 0, 0, 0, 1, 2, 2])


def test_empty_and_invalid_input():
    ncomp, label = label_components(0, np.empty(0, np.int64), np.empty(0, np.int64))
    assert ncomp == 0 and label.size == 0
    ncomp, label = label_components(3, np.empty(0, np.int64), np.empty(0, np.int64))
    assert ncomp == 3 and list(label) == [0, 1, 2]
    with pytest.raises(ValueError, match="within"):
        label_components(3, np.array([0], np.int64), np.array([3], np.int64))
    with pytest.raises(ValueError, match="same length"):
        label_components(3, np.array([0, 1], np.int64), np.array([1], np.int64))
