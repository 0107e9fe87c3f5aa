"""reset: subtract MIRI's reset anomaly from the first groups of each integration.

The RESET reference (nints_ref, ngroups_ref, ny, nx) holds an integration-dependent correction
for the first ``ngroups_ref`` groups: integration i has reset[min(i, nints_ref - 1)] subtracted
from its first min(NGROUPS, ngroups_ref) groups (later integrations reuse the last reference
integration; later groups are not corrected). NaN in the reference become 0; the reference DQ is
ORed into PIXELDQ. Non-MIRI exposures: SKIPPED.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..logs import get_logger
from ._stage1_refs import exposure_int, is_miri, open_ref, or_into, ref_array, ref_dq
from .base import RampBlock, RampStep, StepParams

__all__ = ["subtract_reset", "ResetStep"]

log = get_logger("step.reset")


def subtract_reset(data: np.ndarray, reset: np.ndarray, first_int: int = 0) -> None:
    """Subtract the reset correction in place.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, ny, nx), float32
        Updated in place.
    reset : ndarray of shape (nints_ref, ngroups_ref, ny, nx), float32
        Correction without NaN.
    first_int : int
        Exposure index (0-based) of ``data[0]``.
    """
    ngroups = min(data.shape[1], reset.shape[1])
    last = reset.shape[0] - 1
    for i in range(data.shape[0]):
        ir = min(first_int + i, last)
        np.subtract(data[i, :ngroups], reset[ir, :ngroups], out=data[i, :ngroups])


@dataclass
class ResetParams(StepParams):
    pass


@dataclass
class _ResetState:
    reset: np.ndarray | None
    pixel_flags: np.ndarray | None
    applied: bool


class ResetStep(RampStep):
    """Subtract the MIRI RESET reference correction."""

    name = "reset"
    class_name = "ResetStep"
    cal_step = "reset"
    reference_types = ("reset",)
    Params = ResetParams

    def prepare(self, model, refs):
        if not is_miri(model.meta):
            log.warning("reset correction is only for MIRI data; step skipped")
            return _ResetState(None, None, False)
        path = refs["reset"]
        ref = open_ref(path, "reset")
        shape = ref.lazy("data").shape
        if len(shape) != 4:
            raise ValueError(f"{path}: RESET SCI must be 4-D (nints, ngroups, ny, nx), got "
                             f"shape {shape}")
        nints_ref = min(shape[0], int(ref.meta.exposure.nints or shape[0]))
        ngroups_ref = min(shape[1], int(ref.meta.exposure.ngroups or shape[1]))
        ngroups = min(ngroups_ref, int(model.meta.exposure.ngroups))
        lead = (slice(0, nints_ref), slice(0, ngroups))
        reset = ref_array(ref, "data", model.meta, name=str(path), lead=lead)
        reset[np.isnan(reset)] = 0.0
        return _ResetState(reset, ref_dq(ref, model.meta, name=str(path)), True)

    def process_block(self, block: RampBlock, state: _ResetState) -> None:
        if state.reset is None:
            return
        subtract_reset(block.data, state.reset, exposure_int(block.meta, block.int_start))
        or_into(block.pixeldq, state.pixel_flags)

    def release(self, state: _ResetState) -> _ResetState:
        # The reference (a full MIRI frame per group) need not stay resident for jump and ramp
        # fitting; finish needs only whether it was applied.
        return _ResetState(None, None, state.applied)

    def finish(self, model, state: _ResetState) -> None:
        self.record_status(model, "COMPLETE" if state.applied else "SKIPPED")
