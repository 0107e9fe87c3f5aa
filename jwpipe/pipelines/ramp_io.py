"""Reading raw ramps block by block and assembling stage-1 products."""

from __future__ import annotations

import numpy as np

from ..datamodels import Level1bModel, RampModel
from ..errors import DataShapeError, MissingKeywordError
from ..irs2 import irs2_length, is_irs2, readout_of

__all__ = ["check_level1b", "check_not_multistripe", "ramp_from_level1b", "read_block",
           "block_size_for"]

_REQUIRED = ("exposure.ngroups", "exposure.nints", "instrument.name", "instrument.detector",
             "exposure.group_time", "exposure.frame_time")


def check_not_multistripe(model) -> None:
    """Refuse a multistripe (or superstripe) readout, naming its keywords.

    Such subarrays (NIRCam DHS, NIRISS SOSS superstripes: MSTR_RD1 and friends) read separate
    bands of rows into one array; their reference cut-outs and reference pixels go stripe by
    stripe, which jwpipe does not do yet. Calibrating them as ordinary subarrays would be wrong
    without any sign of it.
    """
    meta = model.meta
    reads = meta.get("subarray.multistripe_reads1")
    if reads is None:
        return
    where = model.path or type(model).__name__
    superstripes = meta.get("subarray.num_superstripe")
    extra = f", SSTR_NST={superstripes}" if superstripes else ""
    raise DataShapeError(
        f"{where}: SUBARRAY={meta.get('subarray.name')} is a multistripe readout (MSTR_RD1="
        f"{reads}, MSTR_RD2={meta.get('subarray.multistripe_reads2')}{extra}); jwpipe cannot "
        "calibrate multistripe exposures yet (their references must be cut stripe by stripe); "
        "use the reference pipeline (jwst) for them")


def check_level1b(model) -> None:
    """Check that a raw exposure's keywords and array shapes agree; raise naming what is wrong."""
    where = model.path or type(model).__name__
    check_not_multistripe(model)
    keywords = {"exposure.ngroups": "NGROUPS", "exposure.nints": "NINTS",
                "instrument.name": "INSTRUME", "instrument.detector": "DETECTOR",
                "exposure.group_time": "TGROUP", "exposure.frame_time": "TFRAME"}
    for path in _REQUIRED:
        if model.meta.get(path) is None:
            raise MissingKeywordError(
                f"{where}: required keyword {keywords[path]} (meta.{path}) is missing from the "
                "PRIMARY header")
    if not model.has("data"):
        raise DataShapeError(f"{where}: extension SCI is missing or empty")
    shape = model.shape
    nints, ngroups = model.meta.exposure.nints, model.meta.exposure.ngroups
    if len(shape) != 4:
        raise DataShapeError(f"{where}: extension SCI must be 4-D (nints, ngroups, ny, nx), "
                             f"got shape {shape}")
    # Segmented exposures hold INTSTART..INTEND of NINTS integrations.
    start, end = model.meta.exposure.integration_start, model.meta.exposure.integration_end
    seg_nints = (end - start + 1) if (start and end) else nints
    if shape[0] not in (nints, seg_nints):
        raise DataShapeError(f"{where}: extension SCI holds {shape[0]} integrations but NINTS="
                             f"{nints}" + (f" (INTSTART={start}, INTEND={end})" if start else ""))
    if shape[1] != ngroups:
        raise DataShapeError(f"{where}: extension SCI holds {shape[1]} groups but NGROUPS="
                             f"{ngroups}")
    xsize, ysize = model.meta.subarray.xsize, model.meta.subarray.ysize
    irs2 = is_irs2(model.meta.exposure.readpatt, ())
    if irs2 and ysize:
        # IRS2 frames add the reference output and interleaved reference pixels along the
        # readout direction (the rows in DMS orientation) to the SUBSIZE1 x SUBSIZE2 detector.
        ysize = irs2_length(*readout_of(model.meta))
    if xsize and ysize and (shape[3], shape[2]) != (xsize, ysize):
        layout = (f" (IRS2 readout, READPATT={model.meta.exposure.readpatt}: {xsize}x{ysize} "
                  "with the reference output and interleaved reference pixels)" if irs2 else "")
        raise DataShapeError(f"{where}: extension SCI is {shape[3]}x{shape[2]} pixels but "
                             f"SUBSIZE1={model.meta.subarray.xsize}, "
                             f"SUBSIZE2={model.meta.subarray.ysize}{layout}")


def ramp_from_level1b(raw: Level1bModel) -> RampModel:
    """Convert a whole raw exposure to a RampModel (float32 data, zeroed DQ arrays)."""
    check_level1b(raw)
    ramp = RampModel()
    ramp.__dict__["_tree"] = __import__("copy").deepcopy(raw._tree)
    ramp.__dict__["extra_fits"] = {k: list(v) for k, v in raw.extra_fits.items()}
    ramp.__dict__["path"] = raw.path
    ramp.data = read_block(raw, 0, raw.shape[0])
    if raw.has("zeroframe"):
        ramp.zeroframe = np.asarray(raw.zeroframe, dtype=np.float32)
    for table in ("group", "int_times"):
        if raw.has(table):
            setattr(ramp, table, getattr(raw, table))
    ramp.meta.model_type = "RampModel"
    return ramp


def read_block(raw, start: int, stop: int, name: str = "data", dtype=np.float32,
               nthreads: int = 1, out=None) -> np.ndarray:
    """Integrations ``start:stop`` of array ``name`` of a raw exposure or ramp, as a new array.

    Only those integrations are read from a file-backed model (the model does not cache the
    whole array), so streaming an exposure keeps one block in memory; the result is always the
    caller's own copy (steps modify blocks in place): ``out`` (C-contiguous, of the block's
    shape and ``dtype``) when given, else a new array.
    """
    source = raw.lazy(name)
    if hasattr(source, "read"):
        return source.read(slice(start, stop), dtype, out=out, nthreads=nthreads)
    if out is None:
        return np.array(source[start:stop], dtype=dtype)
    np.copyto(out, source[start:stop], casting="unsafe")
    return out


def block_size_for(shape, target_bytes: int = 64 * 2**20) -> int:
    """Integrations per block so one block's float32 data + group DQ stays near ``target_bytes``.

    Kernels get whole integrations either way (a block of a few integrations already gives
    every thread millions of pixels), so small blocks cost no speed; they keep the peak memory
    of a long time series close to that of a short one (one integration at least).
    """
    nints, ngroups, ny, nx = shape
    per_int = ngroups * ny * nx * 5  # float32 data + uint8 group DQ
    return int(max(1, min(nints, target_bytes // max(per_int, 1))))
