"""Kernels of the extended-event search in jump detection: connected-component labelling
(snowball and shower regions) and the NaN-normalised convolution (showers)."""

from __future__ import annotations

import numpy as np
import pytest

from jwpipe._ext._extended import label_components, nan_convolve


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


def _scipy_nan_convolve(image, kernel):
    """The reference formulation with FFT convolutions: numerator on the NaN-zeroed image,
    normalisation on the finite mask padded with ones (outside the image counts as good)."""
    from scipy import signal

    good = np.isfinite(image)
    conv = signal.oaconvolve(np.where(good, image, 0.0), kernel, mode="same")
    n = kernel.shape[0] // 2
    padded = np.ones((good.shape[0] + 2 * n, good.shape[1] + 2 * n))
    padded[n:-n or None, n:-n or None] = good
    norm = signal.oaconvolve(padded, kernel, mode="valid")
    ok = good & (norm > 1e-3 * kernel.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, conv / np.where(ok, norm, 1.0), np.nan)


@pytest.mark.parametrize("shape", [(50, 70), (7, 300), (3, 3)])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_nan_convolve_matches_fft_formulation(shape, nthreads):
    """Against scipy's FFT convolutions, with NaN and inf pixels, an asymmetric kernel (the
    flip matters) and images narrower than the kernel: equal to FFT rounding (rtol 1e-10; the
    FFT's own error is ~1e-15 of the largest value) and NaN in the same places."""
    rng = np.random.default_rng(sum(shape) + nthreads)
    image = rng.normal(3.0, 2.0, shape)
    image[rng.random(shape) < 0.1] = np.nan
    image[rng.random(shape) < 0.02] = np.inf
    kernel = rng.random((7, 7))
    kernel[3, 3] = 0.0
    kernel /= kernel.sum()
    got = nan_convolve(image, kernel, 1e-3 * kernel.mean(), nthreads)
    want = _scipy_nan_convolve(image, kernel)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_nan_convolve_of_a_constant_is_the_constant_and_rejects_even_kernels():
    image = np.full((20, 30), 4.5)
    image[5, 5] = np.nan
    ring = np.zeros((5, 5))
    ring[0, 2] = ring[4, 2] = ring[2, 0] = ring[2, 4] = 0.25
    out = nan_convolve(image, ring, 0.0)
    assert np.isnan(out[5, 5]) and np.isnan(out).sum() == 1
    inner = out[2:-2, 2:-2].copy()
    inner[3, 3] = 4.5  # (5, 5): the NaN itself
    np.testing.assert_allclose(inner, 4.5)  # NaN neighbours are normalised away
    # outside the image counts as good with value 0: a corner sees two of the four taps
    assert out[0, 0] == pytest.approx(2.25) and out[0, 15] == pytest.approx(3.375)
    with pytest.raises(ValueError, match="odd"):
        nan_convolve(image, np.ones((4, 4)) / 16, 0.0)
