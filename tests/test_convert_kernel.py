"""Parity of the _convert kernels with the numpy operations they replace (bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest

from jwpipe._ext import _convert


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_be_u16_to_f32_matches_the_fits_convention(nthreads):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, 600_001).astype(np.uint16)
    values[:4] = [0, 1, 32768, 65535]
    stored = (values ^ np.uint16(0x8000)).view(np.int16).astype(">i2")  # as in the file
    out = np.full(values.size, np.nan, np.float32)
    _convert.be_u16_to_f32(stored.view(np.uint16), out, nthreads)
    np.testing.assert_array_equal(out, values.astype(np.float32))
    readonly = stored.view(np.uint16)
    readonly.flags.writeable = False
    _convert.be_u16_to_f32(readonly, out, nthreads)
    with pytest.raises(ValueError):
        _convert.be_u16_to_f32(readonly, out[:-1], nthreads)


@pytest.mark.parametrize("nframes", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_dark_subtract_matches_numpy_mean(nframes, nthreads):
    rng = np.random.default_rng(nframes)
    npix = 70_001
    frames = (rng.normal(0, 1, (nframes, npix)) * 10.0 ** rng.uniform(-3, 4, (nframes, npix)))
    frames = frames.astype(np.float32)
    frames[rng.random(frames.shape) < 0.01] = np.nan
    data = rng.normal(1e4, 1e3, (3, 2, npix)).astype(np.float32)  # (nints, ngroups, npix)
    expected = data.copy()
    clean = np.where(np.isnan(frames), np.float32(0), frames)
    dark = clean[0] if nframes == 1 else clean.mean(axis=0)
    np.subtract(expected[:, 1], dark, out=expected[:, 1])
    got = data.copy()
    _convert.dark_subtract_be(got[:, 1], frames.astype(">f4").view(np.uint32), nthreads)
    np.testing.assert_array_equal(got, expected)  # group 0 untouched, group 1 bit-identical


def test_dark_subtract_rejects_bad_layouts():
    frames = np.zeros((2, 10), ">f4").view(np.uint32)
    with pytest.raises(ValueError):
        _convert.dark_subtract_be(np.zeros((3, 12), np.float32), frames)
    with pytest.raises(ValueError):
        _convert.dark_subtract_be(np.zeros((3, 20), np.float32)[:, ::2], frames)
