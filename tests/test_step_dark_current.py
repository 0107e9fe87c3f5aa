"""dark_current: frame averaging for NFRAMES/GROUPGAP, MIRI per-integration darks, NaN and DQ
handling, the average dark current handed to ramp fitting, dark_output and the skip rules."""

from __future__ import annotations

import numpy as np
import pytest
from _stage1_helpers import add_primary_keyword, assert_unchanged, make_ramp, snapshot, write_ref

from jwpipe import datamodels
from jwpipe import dq as dqflags
from jwpipe.steps.dark_current import (
    DarkCurrentStep,
    average_dark_frames,
    dark_frames_needed,
    subtract_dark,
)


def test_average_dark_frames_by_hand():
    frames = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    # NFRAMES=3, GROUPGAP=2: groups use frames 0-2, 5-7, 10-12
    out = average_dark_frames(frames, 3, 3, 2)
    assert out.dtype == np.float32 and out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out[:, 0, 0], [1.0, 6.0, 11.0])
    assert dark_frames_needed(3, 3, 2) == 13
    four = np.stack([frames, 10 * frames])           # MIRI: (nints, frames, ny, nx)
    out4 = average_dark_frames(four, 2, 2, 0)
    np.testing.assert_array_equal(out4[:, :, 1, 2], [[0.5, 2.5], [5.0, 25.0]])
    with pytest.raises(ValueError):
        average_dark_frames(frames, 11, 2, 0)


def test_subtract_dark_reuses_last_integration():
    data = np.zeros((3, 2, 1, 1), np.float32)
    dark = np.array([1.0, 2.0, 10.0, 20.0], np.float32).reshape(2, 2, 1, 1)
    subtract_dark(data, dark, int_start=0)
    np.testing.assert_array_equal(data[:, :, 0, 0], [[-1, -2], [-10, -20], [-10, -20]])
    block = np.zeros((1, 2, 1, 1), np.float32)
    subtract_dark(block, dark, int_start=5)          # a later block of integrations
    np.testing.assert_array_equal(block[0, :, 0, 0], [-10, -20])


def _dark(tmp_path, frames, *, four_d=False, dq=None, avdrkcur=0.25, xstart=1, ystart=1):
    cls = "DarkMIRIModel" if four_d else "DarkModel"
    arrays = {"data": frames.astype(np.float32)}
    if dq is not None:
        arrays["dq"] = dq
    path = write_ref(tmp_path / "dark.fits", cls, "dark", xstart=xstart, ystart=ystart,
                     instrument="MIRI" if four_d else "NIRCAM",
                     keywords={"exposure.nframes": 1, "exposure.groupgap": 0}, **arrays)
    if avdrkcur is not None:
        add_primary_keyword(path, "AVDRKCUR", avdrkcur)
    return path


def test_step_frame_averaged_subarray_nan_dq(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.normal(0, 3, (30, 20, 20)).astype(np.float32)
    frames[:, 7, 9] = np.nan
    dq = np.zeros((20, 20), np.uint32)
    dq[8, 8] = dqflags.HOT | dqflags.DO_NOT_USE
    path = _dark(tmp_path, frames, dq=dq)
    data = rng.normal(1000, 10, (2, 4, 6, 5)).astype(np.float32)
    model = make_ramp(data, nframes=2, groupgap=3, xstart=6, ystart=5)
    snap = snapshot(model)
    out = DarkCurrentStep(overrides={"dark": path}).run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.dark_sub == "COMPLETE"
    sub = np.nan_to_num(frames[:, 4:10, 5:10])
    groups = np.stack([sub[g * 5:g * 5 + 2].mean(0) for g in range(4)])
    np.testing.assert_allclose(out.data, data - groups[None], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(out.data[:, :, 3, 4], data[:, :, 3, 4])   # NaN: no correction
    assert out.pixeldq[4, 3] == dqflags.HOT | dqflags.DO_NOT_USE
    np.testing.assert_array_equal(out.average_dark_current, np.full((6, 5), 0.25, np.float32))
    # the parameter wins over the reference's value
    out2 = DarkCurrentStep(overrides={"dark": path}, average_dark_current=0.5).run(model)
    assert np.all(out2.average_dark_current == 0.5)


def test_step_miri_4d_dark_integration_dependent(tmp_path):
    rng = np.random.default_rng(5)
    frames = rng.normal(0, 3, (2, 6, 4, 4)).astype(np.float32)
    dq = np.zeros((2, 6, 4, 4), np.uint32)
    dq[1, 0, 2, 2] = dqflags.UNRELIABLE_DARK
    path = _dark(tmp_path, frames, four_d=True, dq=dq, avdrkcur=None)
    data = rng.normal(1000, 10, (3, 5, 4, 4)).astype(np.float32)
    model = make_ramp(data, instrument="MIRI", detector="MIRIMAGE")
    out = DarkCurrentStep(overrides={"dark": path}).run(model)
    expected = data - frames[[0, 1, 1], :5]
    np.testing.assert_array_equal(out.data, expected)
    assert out.pixeldq[2, 2] == dqflags.UNRELIABLE_DARK
    # no AVDRKCUR and no array: the ramp carries no average dark current (ramp_fit uses 0)
    assert not out.has("average_dark_current") or not np.any(out.average_dark_current)


def test_step_skips_when_dark_is_too_short(tmp_path):
    frames = np.ones((5, 4, 4), np.float32)
    path = _dark(tmp_path, frames)
    data = np.full((1, 4, 4, 4), 7.0, np.float32)
    model = make_ramp(data, nframes=2)               # needs 8 frames
    out = DarkCurrentStep(overrides={"dark": path}).run(model)
    assert out.meta.cal_step.dark_sub == "SKIPPED"
    np.testing.assert_array_equal(out.data, data)


def test_dark_output_written(tmp_path):
    frames = np.arange(12, dtype=np.float32)[:, None, None] * np.ones((1, 3, 3), np.float32)
    path = _dark(tmp_path, frames)
    model = make_ramp(np.zeros((1, 3, 3, 3), np.float32), nframes=2, groupgap=1)
    target = tmp_path / "avg_dark.fits"
    DarkCurrentStep(overrides={"dark": path}, dark_output=str(target)).run(model)
    saved = datamodels.open(target)
    np.testing.assert_array_equal(saved.data[:, 0, 0], [0.5, 3.5, 6.5])
    assert saved.meta.exposure.nframes == 2 and saved.meta.exposure.groupgap == 1


def test_oracle_nircam_dark_only_changes(nircam_oracle):
    """On the oracle exposure the step subtracts exactly the dark's first NGROUPS frames."""
    model = make_ramp(np.zeros((1, 10, 160, 160), np.float32), xstart=1889, ystart=1889,
                      subarray="SUB160")
    out = DarkCurrentStep(overrides={"dark": nircam_oracle["refs"]["dark"]}).run(model)
    dark = datamodels.open(nircam_oracle["refs"]["dark"])
    np.testing.assert_array_equal(out.data[0], -np.nan_to_num(dark.data[:10]))
    reference = datamodels.open(str(nircam_oracle["ramp"]))
    ramp_avd = reference.extension("AVDRKCUR") if not reference.has("average_dark_current") \
        else reference.average_dark_current
    np.testing.assert_allclose(out.average_dark_current, np.asarray(ramp_avd), rtol=1e-6)
