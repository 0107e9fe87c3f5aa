"""superbias: subtract the superbias image from every group (near-IR detectors).

NaN values in the superbias are replaced by 0 (those pixels get no correction); the superbias
DQ (translated through DQ_DEF) is ORed into PIXELDQ; ZEROFRAME gets the same subtraction except
where it is 0 (zero marks unusable ZEROFRAME data and stays zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._stage1_refs import irs2_rows, open_ref, or_into, ref_array, ref_dq, to_frames
from .base import RampBlock, RampStep, StepParams

__all__ = ["prepare_superbias", "subtract_superbias", "SuperBiasStep"]


def prepare_superbias(bias) -> np.ndarray:
    """The superbias as float32 with NaN replaced by 0 (a new array of shape (ny, nx))."""
    out = np.array(bias, dtype=np.float32, copy=True, order="C")
    out[np.isnan(out)] = 0.0
    return out


def subtract_superbias(data: np.ndarray, bias: np.ndarray, zeroframe=None) -> None:
    """Subtract ``bias`` from every group, in place.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, ny, nx), float32
        Updated in place.
    bias : ndarray of shape (ny, nx), float32
        Superbias without NaN (see :func:`prepare_superbias`).
    zeroframe : ndarray of shape (nints, ny, nx), float32, optional
        Updated in place; zero values stay zero.
    """
    np.subtract(data, bias, out=data)
    if zeroframe is not None:
        zero = zeroframe == 0.0
        np.subtract(zeroframe, bias, out=zeroframe)
        zeroframe[zero] = 0.0


@dataclass
class SuperBiasParams(StepParams):
    pass


@dataclass
class _BiasState:
    bias: np.ndarray
    pixel_flags: np.ndarray | None
    zero_frame: bool


class SuperBiasStep(RampStep):
    """Subtract the SUPERBIAS reference from every group and integration."""

    name = "superbias"
    class_name = "SuperBiasStep"
    cal_step = "superbias"
    reference_types = ("superbias",)
    Params = SuperBiasParams

    def prepare(self, model, refs):
        path = refs["superbias"]
        ref = open_ref(path, "superbias")
        # IRS2 frames: a normal-layout superbias leaves the reference pixels as they are (the
        # IRS2 correction takes out each pixel's mean level before it uses them).
        rows = irs2_rows(model)
        bias = to_frames(ref_array(ref, "data", model.meta, name=str(path)), rows, fill=0.0,
                         name=str(path))
        flags = to_frames(ref_dq(ref, model.meta, name=str(path)), rows, fill=0,
                          name=str(path))
        return _BiasState(prepare_superbias(bias), flags, bool(model.meta.exposure.zero_frame))

    def process_block(self, block: RampBlock, state: _BiasState) -> None:
        zero = block.zeroframe if state.zero_frame else None
        subtract_superbias(block.data, state.bias, zero)
        or_into(block.pixeldq, state.pixel_flags)

    def release(self, state: _BiasState):
        return None  # finish needs nothing
