"""firstframe (deprecated; skipped by default): flag MIRI's first group DO_NOT_USE.

With NGROUPS > 3 the first group of every integration becomes DO_NOT_USE, except, with
``bright_use_group1``, in pixels whose third group is saturated (there the first-frame effect is
small against the signal and group 1 is needed for a slope); those pixels get FLUX_ESTIMATED in
PIXELDQ. The rscd step now does this job (with integration-dependent group counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dq
from ..logs import get_logger
from ._stage1_refs import miri_with_groups
from .base import RampBlock, RampStep, StepParams

__all__ = ["flag_first_group", "FirstFrameStep"]

log = get_logger("step.firstframe")


def flag_first_group(groupdq: np.ndarray, pixeldq: np.ndarray,
                     bright_use_group1: bool = True) -> None:
    """Flag group 1 DO_NOT_USE in place.

    Parameters
    ----------
    groupdq : ndarray of shape (nints, ngroups, ny, nx), uint8
        Updated in place (needs ngroups > 2 when ``bright_use_group1``).
    pixeldq : ndarray of shape (ny, nx), uint32
        Gets FLUX_ESTIMATED where group 1 was kept.
    bright_use_group1 : bool
        Keep group 1 where group 3 is SATURATED.
    """
    dnu = np.uint8(dq.DO_NOT_USE)
    if not bright_use_group1:
        groupdq[:, 0] |= dnu
        return
    kept = (groupdq[:, 2] & np.uint8(dq.SATURATED)) != 0
    np.bitwise_or(groupdq[:, 0], dnu, out=groupdq[:, 0], where=~kept)
    np.bitwise_or(pixeldq, np.uint32(dq.FLUX_ESTIMATED), out=pixeldq, where=kept.any(axis=0))


@dataclass
class FirstFrameParams(StepParams):
    skip: bool = True
    #: Do not flag group 1 where group 3 is saturated.
    bright_use_group1: bool = True


class FirstFrameStep(RampStep):
    """Flag the first group of MIRI integrations DO_NOT_USE (deprecated; see rscd)."""

    name = "firstframe"
    class_name = "FirstFrameStep"
    cal_step = "firstframe"
    Params = FirstFrameParams

    def prepare(self, model, refs):
        return miri_with_groups(model.meta, "firstframe", 3, log)

    def process_block(self, block: RampBlock, apply: bool) -> None:
        if apply:
            flag_first_group(block.groupdq, block.pixeldq, self.params.bright_use_group1)

    def finish(self, model, apply: bool) -> None:
        self.record_status(model, "COMPLETE" if apply else "SKIPPED")
