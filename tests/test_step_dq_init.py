"""dq_init and superbias: mask and bias references cut to the subarray, DQ_DEF translation,
DO_NOT_USE into every group, NaN bias, ZEROFRAME; both on the oracle inputs."""

from __future__ import annotations

import numpy as np
import pytest
from _stage1_helpers import assert_unchanged, dq_def, make_ramp, snapshot, write_ref

from jwpipe import datamodels
from jwpipe import dq as dqflags
from jwpipe.steps.dq_init import DQInitStep, apply_mask
from jwpipe.steps.superbias import SuperBiasStep, prepare_superbias, subtract_superbias

DNU = dqflags.DO_NOT_USE


@pytest.mark.parametrize("nbad", [3, 400])        # sparse (indexed) and dense (broadcast) paths
def test_apply_mask(nbad):
    rng = np.random.default_rng(nbad)
    mask = np.zeros((20, 25), np.uint32)
    ys, xs = rng.integers(0, 20, nbad), rng.integers(0, 25, nbad)
    mask[ys, xs] = DNU | dqflags.DEAD
    mask[0, 0] = dqflags.HOT
    gdq = np.zeros((2, 3, 20, 25), np.uint8)
    gdq[0, 1, 5, 5] = dqflags.SATURATED
    pdq = np.full((20, 25), dqflags.REFERENCE_PIXEL, np.uint32)
    apply_mask(gdq, pdq, mask)
    np.testing.assert_array_equal(pdq, mask | dqflags.REFERENCE_PIXEL)
    bad = (mask & DNU) != 0
    assert np.all(gdq[:, :, bad] & DNU) and not np.any(gdq[:, :, ~bad] & DNU)
    assert gdq[0, 1, 5, 5] & dqflags.SATURATED


def test_dq_init_step_translates_dq_def_and_cuts(tmp_path):
    # the mask file uses its own bit for "HOT": DQ_DEF maps it
    table = dq_def("DO_NOT_USE", "DEAD")
    table = np.concatenate([table, np.array([(5, 32, b"HOT", b"hot")], dtype=table.dtype)])
    full = np.zeros((30, 40), np.uint32)
    full[12, 22] = 1 | 1024                          # DNU + DEAD
    full[13, 23] = 32                                # HOT in the file's own convention
    path = write_ref(tmp_path / "mask.fits", "MaskModel", "mask", dq=full,
                     tables={"dq_def": table})
    model = make_ramp(np.ones((2, 3, 5, 6), np.float32), xstart=21, ystart=11)
    snap = snapshot(model)
    out = DQInitStep(overrides={"mask": path}).run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.dq_init == "COMPLETE"
    assert out.pixeldq[2, 2] == DNU | dqflags.DEAD and out.pixeldq[3, 3] == dqflags.HOT
    assert np.all(out.groupdq[:, :, 2, 2] == DNU) and out.groupdq.sum() == 6


def test_superbias_arrays():
    data = np.full((2, 3, 2, 2), 100.0, np.float32)
    bias = prepare_superbias(np.array([[10.0, np.nan], [-5.0, 0.0]]))
    assert bias.dtype == np.float32 and bias[0, 1] == 0.0
    zero = np.array([[[50.0, 0.0], [20.0, 30.0]]], np.float32)
    subtract_superbias(data, bias, zero)
    np.testing.assert_array_equal(data[1, 2], [[90.0, 100.0], [105.0, 100.0]])
    np.testing.assert_array_equal(zero[0], [[40.0, 0.0], [25.0, 30.0]])


def test_superbias_step_subarray(tmp_path):
    rng = np.random.default_rng(7)
    full = rng.normal(12000, 100, (32, 32)).astype(np.float32)
    full[9, 9] = np.nan
    dq = np.zeros((32, 32), np.uint32)
    dq[10, 10] = dqflags.UNRELIABLE_BIAS
    path = write_ref(tmp_path / "bias.fits", "SuperBiasModel", "superbias", data=full, dq=dq)
    data = rng.normal(13000, 100, (1, 4, 8, 8)).astype(np.float32)
    model = make_ramp(data, xstart=5, ystart=5)
    snap = snapshot(model)
    out = SuperBiasStep(overrides={"superbias": path}).run(model)
    assert_unchanged(model, snap)
    sub = np.nan_to_num(full[4:12, 4:12])
    np.testing.assert_array_equal(out.data, data - sub)
    assert out.pixeldq[6, 6] == 0           # UNRELIABLE_BIAS is not in this file's DQ_DEF
    assert out.meta.cal_step.superbias == "COMPLETE"


def test_oracle_dq_init_and_superbias(nircam_oracle):
    refs = nircam_oracle["refs"]
    raw = DQInitStep().open_input(str(nircam_oracle["uncal"]))
    model = DQInitStep(overrides={"mask": refs["mask"]}).run(raw)
    reference = datamodels.open(str(nircam_oracle["ramp"]))
    # after the whole reference chain PIXELDQ still only holds the mask's flags here
    np.testing.assert_array_equal(model.pixeldq, reference.pixeldq)
    np.testing.assert_array_equal(model.groupdq & DNU, reference.groupdq & DNU)
    snap = snapshot(model)
    out = SuperBiasStep(overrides={"superbias": refs["superbias"]}).run(model)
    assert_unchanged(model, snap)
    bias = datamodels.open(refs["superbias"]).data
    np.testing.assert_array_equal(out.data, model.data - np.nan_to_num(bias))
