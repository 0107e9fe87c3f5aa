"""Helpers for the early stage-1 step tests: synthetic ramps and reference files, input
snapshots, and stand-ins for the steps of the reference chain these tests do not cover (ipc and
the single-output refpix), so our chain can be compared with the oracle's ``_ramp``."""

from __future__ import annotations

import copy

import numpy as np
from astropy.io import fits

from jwpipe import datamodels
from jwpipe import dq as dqflags

DQ_DEF_DTYPE = [("BIT", "<i4"), ("VALUE", "<u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")]


def dq_def(*names):
    """A DQ_DEF table defining the named standard flags at their standard bits."""
    rows = []
    for bit, name, meaning in dqflags.FLAGS:
        if name in names:
            rows.append((bit, 1 << bit, name.encode(), meaning.encode()))
    return np.array(rows, dtype=DQ_DEF_DTYPE)


def make_ramp(data, *, instrument="NIRCAM", detector="NRCA1", nframes=1, groupgap=0,
              xstart=1, ystart=1, subarray="FULL", readpatt="RAPID", zeroframe=None,
              groupdq=None, pixeldq=None, nints=None):
    """A RampModel holding ``data`` (nints, ngroups, ny, nx) with the metadata steps read."""
    data = np.asarray(data, np.float32)
    model = datamodels.RampModel(data.copy())
    nint, ngroups, ny, nx = data.shape
    meta = model.meta
    meta.instrument.name = instrument
    meta.instrument.detector = detector
    meta.exposure.ngroups = ngroups
    meta.exposure.nints = nints or nint
    meta.exposure.nframes = nframes
    meta.exposure.groupgap = groupgap
    meta.exposure.readpatt = readpatt
    meta.exposure.frame_time = 10.0
    meta.exposure.group_time = 10.0 * (nframes + groupgap)
    meta.subarray.name = subarray
    meta.subarray.xstart, meta.subarray.ystart = xstart, ystart
    meta.subarray.xsize, meta.subarray.ysize = nx, ny
    model.groupdq = np.zeros(data.shape, np.uint8) if groupdq is None else groupdq.copy()
    model.pixeldq = np.zeros((ny, nx), np.uint32) if pixeldq is None else pixeldq.copy()
    if zeroframe is not None:
        model.zeroframe = np.asarray(zeroframe, np.float32).copy()
        meta.exposure.zero_frame = True
    return model


def write_ref(path, model_name, reftype, *, xstart=1, ystart=1, instrument="NIRCAM",
              keywords=None, tables=None, **arrays):
    """Write a reference file of class ``model_name`` whose arrays start at (xstart, ystart)."""
    cls = datamodels.MODEL_CLASSES[model_name]
    model = cls()
    for name, value in arrays.items():
        setattr(model, name, value)
    first = next(iter(arrays.values()))
    ny, nx = np.shape(first)[-2:]
    meta = model.meta
    meta.reftype = reftype.upper()
    meta.instrument.name = instrument
    meta.subarray.xstart, meta.subarray.ystart = xstart, ystart
    meta.subarray.xsize, meta.subarray.ysize = nx, ny
    meta.subarray.name = "FULL" if (xstart, ystart) == (1, 1) else "GENERIC"
    for key, value in (keywords or {}).items():
        meta.set(key, value)
    for name, value in (tables or {}).items():
        setattr(model, name, value)
    if "dq_def" in cls.tables and "dq_def" not in (tables or {}):
        model.dq_def = dq_def("DO_NOT_USE", "SATURATED", "DEAD", "HOT", "NO_LIN_CORR",
                              "NO_SAT_CHECK", "UNRELIABLE_DARK", "REFERENCE_PIXEL")
    model.save(path)
    return str(path)


def add_primary_keyword(path, keyword, value):
    """Add a PRIMARY header keyword the data models do not map (e.g. AVDRKCUR)."""
    with fits.open(path, mode="update") as hdul:
        hdul[0].header[keyword] = value


def snapshot(model):
    """Copies of a model's arrays and metadata, to prove a step left its input alone."""
    arrays = {name: np.array(value) for name, value in model._arrays.items()
              if value is not None}
    return arrays, copy.deepcopy(model._tree)


def assert_unchanged(model, snap):
    arrays, tree = snap
    now = {name: np.array(value) for name, value in model._arrays.items() if value is not None}
    assert set(now) == set(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(now[name], value, err_msg=f"input {name} was modified")
    assert model._tree == tree, "input metadata was modified"


# -- stand-ins for the reference chain's ipc and refpix (oracle comparisons only) -------------

def ipc_like_reference(data, pixeldq, kernel):
    """Convolve each group with a small IPC kernel over the non-reference region (reference
    pixels unchanged, contributing nothing; zero beyond the region's edges)."""
    kernel = np.asarray(kernel, np.float32)
    ref = (pixeldq & dqflags.REFERENCE_PIXEL) != 0
    rows = np.nonzero(~ref.all(axis=1))[0]
    cols = np.nonzero(~ref.all(axis=0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    out = np.array(data, np.float32)
    region = out[..., y0:y1, x0:x1].copy()
    ny, nx = region.shape[-2:]
    acc = np.zeros_like(region)
    cy, cx = kernel.shape[0] // 2, kernel.shape[1] // 2
    for j in range(kernel.shape[0]):
        for i in range(kernel.shape[1]):
            dy, dx = j - cy, i - cx
            src = region[..., max(0, dy):ny + min(0, dy), max(0, dx):nx + min(0, dx)]
            acc[..., max(0, -dy):ny + min(0, -dy), max(0, -dx):nx + min(0, -dx)] += \
                kernel[j, i] * src
    out[..., y0:y1, x0:x1] = acc
    return out


def refpix_single_output_like_reference(data, pixeldq):
    """Per group, subtract the 3-sigma clipped mean of the reference pixels of each column
    parity (the reference pipeline's one-output subarray correction)."""
    from scipy.stats import sigmaclip

    out = np.array(data, np.float32)
    ref = ((pixeldq & dqflags.REFERENCE_PIXEL) != 0) & ((pixeldq & dqflags.DO_NOT_USE) == 0)
    for i in range(out.shape[0]):
        for g in range(out.shape[1]):
            plane = out[i, g]
            for parity in (0, 1):
                use = ref.copy()
                use[:, 1 - parity::2] = False
                if use.any():
                    kept, _, _ = sigmaclip(plane[use], 3.0, 3.0)
                    plane[:, parity::2] -= kept.mean()
    return out
