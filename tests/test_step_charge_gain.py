"""charge_migration (skipped by default) and gain_scale (on rate products)."""

from __future__ import annotations

import numpy as np
import pytest
from _stage1_helpers import assert_unchanged, make_ramp, snapshot, write_ref

from jwpipe import datamodels
from jwpipe import dq as dqflags
from jwpipe.steps.charge_migration import ChargeMigrationStep, flag_charge_migration
from jwpipe.steps.gain_scale import GainScaleStep, gain_scaled

CHLO_DNU = dqflags.CHARGELOSS | dqflags.DO_NOT_USE


def slow_charge_migration(data, gdq, thr):
    """The reference's loop: each exceedance flags its group and later ones, in the pixel and
    its four nearest neighbours."""
    out = gdq.copy()
    nints, ngroups, ny, nx = data.shape
    for i, g, y, x in zip(*np.nonzero((data > thr) & (gdq != dqflags.DO_NOT_USE)), strict=True):
        for yy, xx in ((y, x), (y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= yy < ny and 0 <= xx < nx:
                out[i, g:, yy, xx] |= CHLO_DNU
    return out


@pytest.mark.parametrize("shape,top", [((2, 5, 9, 8), 30000), ((2, 5, 64, 64), 25020)])
def test_charge_migration_matches_loop(shape, top):
    # many exceedances (plane-wide sweep) and a few (indexed path)
    rng = np.random.default_rng(11)
    data = rng.uniform(0, top, shape).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 1, 3, 3] = dqflags.DO_NOT_USE           # exactly DO_NOT_USE: ignored
    gdq[1, 2, 4, 4] = dqflags.SATURATED            # other flags: still tested
    expected = slow_charge_migration(data, gdq, 25000.0)
    flag_charge_migration(data, gdq, 25000.0)
    np.testing.assert_array_equal(gdq, expected)


def test_charge_migration_step_defaults():
    assert ChargeMigrationStep.Params().skip is True
    assert ChargeMigrationStep.Params().signal_threshold == 25000.0
    data = np.zeros((1, 4, 3, 3), np.float32)
    data[0, 2:, 1, 1] = 30000.0
    model = make_ramp(data)
    assert ChargeMigrationStep().run(model).meta.cal_step.charge_migration == "SKIPPED"
    snap = snapshot(model)
    out = ChargeMigrationStep(skip=False).run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.charge_migration == "COMPLETE"
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    assert np.all(out.groupdq[0, 2:][:, cross] == CHLO_DNU)
    assert not out.groupdq[0, :2].any() and not out.groupdq[0][:, ~cross].any()


def test_gain_scaled_arrays():
    a = np.full((2, 2), 3.0, np.float32)
    out = gain_scaled({"data": a, "err": a, "var_poisson": a, "var_rnoise": None}, 2.0)
    assert set(out) == {"data", "err", "var_poisson"}
    assert out["data"][0, 0] == 6.0 and out["var_poisson"][0, 0] == 12.0
    assert all(v.dtype == np.float32 for v in out.values()) and a[0, 0] == 3.0


def _rate(cube=False):
    shape = (2, 3, 3) if cube else (3, 3)
    cls = datamodels.CubeModel if cube else datamodels.ImageModel
    model = cls(np.full(shape, 2.0, np.float32))
    model.err = np.full(shape, 0.5, np.float32)
    model.var_poisson = np.full(shape, 0.2, np.float32)
    model.var_rnoise = np.full(shape, 0.05, np.float32)
    model.meta.instrument.name = "NIRSPEC"
    return model


def test_gain_scale_step(tmp_path):
    gain = write_ref(tmp_path / "gain.fits", "GainModel", "gain", data=np.ones((3, 3), np.float32),
                     keywords={"exposure.gain_factor": 2.0})
    nogain = write_ref(tmp_path / "gain0.fits", "GainModel", "gain",
                       data=np.ones((3, 3), np.float32))
    for cube in (False, True):
        model = _rate(cube)
        snap = snapshot(model)
        out = GainScaleStep(overrides={"gain": gain}).run(model)
        assert_unchanged(model, snap)
        assert out.meta.cal_step.gain_scale == "COMPLETE" and out.meta.exposure.gain_factor == 2
        assert np.all(out.data == 4.0) and np.all(out.err == 1.0)
        np.testing.assert_allclose(out.var_poisson, 0.8)
        np.testing.assert_allclose(out.var_rnoise, 0.2)
        skipped = GainScaleStep(overrides={"gain": nogain}).run(model)
        assert skipped.meta.cal_step.gain_scale == "SKIPPED" and np.all(skipped.data == 2.0)
    # GAINFACT already in the product: no reference needed
    model = _rate()
    model.meta.exposure.gain_factor = 0.5
    out = GainScaleStep(overrides={"gain": "N/A"}).run(model)
    assert out.meta.cal_step.gain_scale == "COMPLETE" and np.all(out.data == 1.0)


def test_gain_scale_oracle_skipped(nircam_oracle):
    rate = datamodels.open(str(nircam_oracle["rate"]))
    out = GainScaleStep(overrides={"gain": nircam_oracle["refs"]["gain"]}).run(rate)
    assert out.meta.cal_step.gain_scale == "SKIPPED"          # as in the reference run
    np.testing.assert_array_equal(out.data, rate.data)
