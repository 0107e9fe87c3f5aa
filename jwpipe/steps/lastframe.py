"""lastframe: MIRI's last group of each integration is unreliable; flag it DO_NOT_USE.

Applied when NGROUPS > 2 (at least two groups remain for a slope); otherwise, and for other
instruments, the step is SKIPPED.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dq
from ..logs import get_logger
from ._stage1_refs import miri_with_groups
from .base import RampBlock, RampStep, StepParams

__all__ = ["flag_last_group", "LastFrameStep"]

log = get_logger("step.lastframe")


def flag_last_group(groupdq: np.ndarray) -> None:
    """OR DO_NOT_USE into the last group of every integration (groupdq (nints, ngroups, ny, nx),
    uint8, in place)."""
    groupdq[:, -1] |= np.uint8(dq.DO_NOT_USE)


@dataclass
class LastFrameParams(StepParams):
    pass


class LastFrameStep(RampStep):
    """Flag the last group of MIRI integrations DO_NOT_USE (NGROUPS > 2)."""

    name = "lastframe"
    class_name = "LastFrameStep"
    cal_step = "lastframe"
    Params = LastFrameParams

    def prepare(self, model, refs):
        return miri_with_groups(model.meta, "lastframe", 2, log)

    def process_block(self, block: RampBlock, apply: bool) -> None:
        if apply:
            flag_last_group(block.groupdq)

    def finish(self, model, apply: bool) -> None:
        self.record_status(model, "COMPLETE" if apply else "SKIPPED")
