"""Kernels of the extended-event search in jump detection: flagged-pixel indices and their
8-connected regions (snowball and shower regions), and the NaN-normalised convolution (showers)."""

from __future__ import annotations

import numpy as np
import pytest

from jwpipe._ext._extended import flagged_indices, label_pixels, nan_convolve, shower_ratio


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


def _inner(mask):
    """Set pixels whose four 4-neighbours are all set (outside the frame counts as unset)."""
    padded = np.pad(mask, 1)
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2]
            & padded[1:-1, 2:])[mask]


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.55, 0.9])
@pytest.mark.parametrize("shape", [(60, 80), (1, 50), (50, 1), (7, 9)])
def test_labels_match_flood_fill(fraction, shape):
    """Random masks from sparse to percolating, frames down to one row or column (regions
    touching the edges, and rows that wrap in linear index): identical labels, numbering
    included, and the inner pixels."""
    mask = np.random.default_rng(7).random(shape) < fraction
    ncomp, label, inner = label_pixels(np.flatnonzero(mask), *shape)
    want_n, want = _flood_fill_labels(mask)
    assert ncomp == want_n
    np.testing.assert_array_equal(label, want)
    np.testing.assert_array_equal(inner, _inner(mask))


@pytest.mark.parametrize("pixels", [[(0, 3), (1, 0)], [(0, 3), (2, 0)], [(1, 0), (1, 3)]])
def test_rows_do_not_join_across_the_frame_edge(pixels):
    """Pixels at opposite edges are close in linear index, not on the detector: the end of a
    row and the start of the next, and a row end's lower-right or a row start's lower-left
    'neighbour' one linear index too far."""
    mask = np.zeros((3, 4), bool)
    for y, x in pixels:
        mask[y, x] = True
    ncomp, label, _ = label_pixels(np.flatnonzero(mask), 3, 4)
    assert ncomp == 2 and list(label) == [0, 1]


def test_empty_and_invalid_input():
    ncomp, label, inner = label_pixels(np.empty(0, np.int64), 5, 5)
    assert ncomp == 0 and label.size == 0 and inner.size == 0
    with pytest.raises(ValueError, match="increasing"):
        label_pixels(np.array([3, 2], np.int64), 5, 5)
    with pytest.raises(ValueError, match="within"):
        label_pixels(np.array([0, 25], np.int64), 5, 5)
    with pytest.raises(ValueError, match="bits"):
        flagged_indices(np.zeros((2, 2), np.uint8), None, 0)


@pytest.mark.parametrize("shape", [(37, 53), (1, 7), (64, 64)])
def test_flagged_indices(shape):
    """Pixels with the bits set in a (and, given b, not in b): those of the NumPy expression,
    in increasing order, for frames whose size is and is not a multiple of 8."""
    rng = np.random.default_rng(2)
    a = ((rng.random(shape) < 0.2) * 2 | (rng.random(shape) < 0.1) * 4).astype(np.uint8)
    b = ((rng.random(shape) < 0.5) * 2).astype(np.uint8)
    np.testing.assert_array_equal(flagged_indices(a, None, 2), np.flatnonzero(a & 2))
    np.testing.assert_array_equal(flagged_indices(a, None, 6), np.flatnonzero(a & 6))
    np.testing.assert_array_equal(flagged_indices(a, b, 2), np.flatnonzero((a & 2) & ~(b & 2)))
    assert flagged_indices(np.zeros(shape, np.uint8), None, 2).size == 0


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
    # Into a given array (stale contents overwritten): the same values; not over the image.
    out = np.full(shape, 1e300)
    assert nan_convolve(image, kernel, 1e-3 * kernel.mean(), nthreads, out) is out
    np.testing.assert_array_equal(out, got)
    with pytest.raises(ValueError, match="out"):
        nan_convolve(image, kernel, 1e-3 * kernel.mean(), nthreads, image)


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


@pytest.mark.parametrize("nthreads", [1, 2])
def test_shower_ratio_is_the_numpy_expression(nthreads):
    """|(d1 - d0) - mean| / sigma in float64 where neither group is flagged bad and the pixel
    is not ignored, NaN elsewhere and where not finite (NaN data, zero or NaN sigma): equal to
    the NumPy expression bit for bit."""
    rng = np.random.default_rng(4)
    shape = (300, 301)
    d0, d1 = (rng.normal(100, 20, shape).astype(np.float32) for _ in range(2))
    d1[rng.random(shape) < 0.02] = np.nan
    q0, q1 = ((rng.random(shape) < 0.05) * rng.choice([1, 2, 4], shape)).astype(np.uint8), \
        ((rng.random(shape) < 0.05) * rng.choice([1, 2, 4, 8], shape)).astype(np.uint8)
    ignore = rng.random(shape) < 0.03
    mean = rng.normal(1, 2, shape).astype(np.float32)
    sigma = rng.uniform(1, 5, shape)
    sigma[rng.random(shape) < 0.01] = 0.0
    sigma[rng.random(shape) < 0.01] = np.nan
    bad = 1 | 2 | 4
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.abs(d1.astype(np.float64) - d0 - mean) / sigma
    want[((q0 | q1) & bad).astype(bool) | ignore | ~np.isfinite(want)] = np.nan
    out = np.full(shape, 7.0)
    shower_ratio(d0, d1, q0, q1, ignore, mean, sigma, bad, out, nthreads)
    np.testing.assert_array_equal(out, want)
    shower_ratio(d0, d1, q0, q1, None, mean, sigma, bad, out, nthreads)
    assert np.isnan(want).sum() > np.isnan(out).sum()  # the ignored pixels now count
    with pytest.raises(ValueError, match="shape"):
        shower_ratio(d0, d1[:-1], q0, q1, None, mean, sigma, bad, out, nthreads)
