"""group_scale: rescale groups averaged on board with a power-of-two divisor.

When NFRAMES frames are averaged into a group but the flight software divided by FRMDIVSR (a
power of two) instead of NFRAMES, every group is off by FRMDIVSR/NFRAMES.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import RampBlock, RampStep, StepParams

__all__ = ["group_scale_factor", "apply_group_scale", "GroupScaleStep"]


def group_scale_factor(nframes: int | None, frame_divisor: int | None) -> float | None:
    """The factor FRMDIVSR/NFRAMES, or None when no correction is needed.

    Parameters
    ----------
    nframes : int or None
        Frames averaged per group (NFRAMES).
    frame_divisor : int or None
        Divisor applied on board (FRMDIVSR); absent means no rescaling.
    """
    if not nframes or not frame_divisor or nframes == frame_divisor:
        return None
    return float(frame_divisor) / float(nframes)


def apply_group_scale(data: np.ndarray, factor: float) -> None:
    """Multiply ``data`` (any shape, float32) by ``factor`` in place."""
    data *= np.float32(factor)


@dataclass
class GroupScaleParams(StepParams):
    pass


class GroupScaleStep(RampStep):
    """Rescale groups when NFRAMES differs from FRMDIVSR (skipped otherwise, as the reference)."""

    name = "group_scale"
    class_name = "GroupScaleStep"
    cal_step = "group_scale"
    Params = GroupScaleParams

    def prepare(self, model, refs):
        exposure = model.meta.exposure
        nframes = exposure.nframes
        if str(model.meta.instrument.name or "").upper() == "MIRI" and exposure.mrs_nframes:
            # MIRI FASTGRPAVG modes average MIRNFRMS frames on top of the divisor.
            nframes = exposure.mrs_nframes * (exposure.frame_divisor or 1)
        return group_scale_factor(nframes, exposure.frame_divisor)

    def process_block(self, block: RampBlock, factor) -> None:
        if factor is not None:
            apply_group_scale(block.data, factor)

    def finish(self, model, factor) -> None:
        self.record_status(model, "COMPLETE" if factor is not None else "SKIPPED")
