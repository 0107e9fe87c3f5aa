"""dq_init: initialise the pixel DQ from the MASK reference.

PIXELDQ |= the mask's DQ (cut to the subarray, translated to standard flags through the mask's
DQ_DEF table); pixels the mask marks DO_NOT_USE get DO_NOT_USE in every group of GROUPDQ so no
ramp is fitted to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dq
from ..errors import DataShapeError
from ._stage1_refs import irs2_rows, open_ref, ref_dq, to_frames
from .base import RampBlock, RampStep, StepParams

__all__ = ["apply_mask", "DQInitStep"]


def apply_mask(groupdq: np.ndarray, pixeldq: np.ndarray, mask: np.ndarray,
               bad_pixels: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """OR a mask into the pixel DQ and its DO_NOT_USE flags into every group, in place.

    Parameters
    ----------
    groupdq : ndarray of shape (nints, ngroups, ny, nx), uint8
        Group DQ, updated in place.
    pixeldq : ndarray of shape (ny, nx), uint32
        Pixel DQ, updated in place.
    mask : ndarray of shape (ny, nx), unsigned int
        Mask DQ in standard flags.
    bad_pixels : (ys, xs), optional
        ``np.nonzero(mask & DO_NOT_USE)`` if already known.
    """
    mask = np.asarray(mask)
    if mask.shape != pixeldq.shape or groupdq.shape[-2:] != mask.shape:
        raise DataShapeError(f"mask has shape {mask.shape}; the science pixels are "
                             f"{groupdq.shape[-2:]}")
    np.bitwise_or(pixeldq, mask.astype(np.uint32, copy=False), out=pixeldq)
    ys, xs = bad_pixels if bad_pixels is not None else np.nonzero(mask & dq.DO_NOT_USE)
    if ys.size == 0:
        return
    if ys.size * 20 < mask.size:
        # Few bad pixels (the usual case): touch only their columns of the ramp.
        groupdq[..., ys, xs] |= np.uint8(dq.DO_NOT_USE)
    else:
        bad = ((mask & dq.DO_NOT_USE) != 0).astype(np.uint8)
        np.bitwise_or(groupdq, bad, out=groupdq)


@dataclass
class DQInitParams(StepParams):
    #: FITS file whose first image is a DQ array (standard flags, shaped like the mask) ORed
    #: into the mask.
    user_supplied_dq: str | None = None


class DQInitStep(RampStep):
    """Initialise PIXELDQ from the MASK reference and flag DO_NOT_USE pixels in every group."""

    name = "dq_init"
    class_name = "DQInitStep"
    cal_step = "dq_init"
    reference_types = ("mask",)
    Params = DQInitParams

    def prepare(self, model, refs):
        path = refs["mask"]
        mask = ref_dq(open_ref(path, "mask"), model.meta, name=str(path))
        if mask is None:
            raise DataShapeError(f"{path}: MASK reference has no DQ array")
        if mask.ndim != 2:
            raise DataShapeError(f"{path}: MASK DQ has shape {mask.shape}; only 2-D masks "
                                 "are supported")
        # IRS2 frames: a mask of the normal pixels flags none of the reference pixels.
        mask = to_frames(mask, irs2_rows(model), fill=0, name=str(path))
        if self.params.user_supplied_dq:
            from astropy.io import fits

            user = np.asarray(fits.getdata(self.params.user_supplied_dq))
            if user.shape != mask.shape:
                raise DataShapeError(f"{self.params.user_supplied_dq}: user_supplied_dq has "
                                     f"shape {user.shape} but expecting {mask.shape}")
            mask = mask | user.astype(np.uint32)
        return mask, np.nonzero(mask & dq.DO_NOT_USE)

    def process_block(self, block: RampBlock, state) -> None:
        mask, bad = state
        apply_mask(block.groupdq, block.pixeldq, mask, bad)

    def release(self, state):
        return None  # finish needs nothing
