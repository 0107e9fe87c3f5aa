"""jump: flag cosmic rays (jumps) in ramps by two-point differences, plus snowballs and showers.

The detection itself is :func:`jwpipe.jump_detection.detect_jumps` (compiled two-point kernel,
scipy.ndimage for extended events); this module reads the gain and read-noise references once
per exposure and passes the cross-integration state from block to block.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..jump_detection import JumpState, detect_jumps
from .base import RampBlock, RampStep, StepParams

__all__ = ["JumpStep"]


@dataclass
class JumpParams(StepParams):
    rejection_threshold: float = 4.0
    three_group_rejection_threshold: float = 6.0
    four_group_rejection_threshold: float = 5.0
    maximum_cores: str = "1"
    flag_4_neighbors: bool = True
    max_jump_to_flag_neighbors: float = 1000.0
    min_jump_to_flag_neighbors: float = 10.0
    after_jump_flag_dn1: float = 0.0
    after_jump_flag_time1: float = 0.0
    after_jump_flag_dn2: float = 0.0
    after_jump_flag_time2: float = 0.0
    minimum_groups: int = 3
    min_diffs_single_pass: int = 10
    # Extended events. None = as the reference's parameter files choose per mode: snowballs for
    # the near-IR detectors, showers for MIRI.
    expand_large_events: bool | None = None
    min_sat_area: float = 1.0
    min_jump_area: float = 5.0
    expand_factor: float = 2.0
    sat_required_snowball: bool = True
    min_sat_radius_extend: float = 2.5
    sat_expand: int = 2
    edge_size: int = 25
    mask_snowball_core_next_int: bool = True
    snowball_time_masked_next_int: float = 4000.0
    max_extended_radius: int = 200
    find_showers: bool | None = None
    extend_snr_threshold: float = 1.2
    extend_min_area: int = 90
    extend_inner_radius: float = 1.0
    extend_outer_radius: float = 2.6
    extend_ellipse_expand_ratio: float = 1.1
    time_masked_after_shower: float = 15.0
    max_shower_amplitude: float = 4.0


# Parameters that are the step's own business, not detect_jumps arguments.
_NOT_PASSED = {f.name for f in fields(StepParams)} | {"maximum_cores"}


@dataclass
class _JumpSetup:
    gain: np.ndarray
    readnoise: np.ndarray
    options: dict
    state: JumpState
    n_jumps: int = 0
    n_snowballs: int = 0
    n_showers: int = 0


class JumpStep(RampStep):
    """Two-point-difference jump detection (block by block)."""

    name = "jump"
    class_name = "JumpStep"
    cal_step = "jump"
    reference_types = ("gain", "readnoise")
    Params = JumpParams

    def prepare(self, model, refs) -> _JumpSetup:
        from ..references import cut_to_subarray, open_reference

        arrays = {}
        for reftype in ("gain", "readnoise"):
            ref = open_reference(refs[reftype], reftype)
            arrays[reftype] = np.asarray(
                cut_to_subarray(ref.data, ref.meta, model.meta, name=refs[reftype]), np.float32)
        options = {f.name: getattr(self.params, f.name) for f in fields(self.params)
                   if f.name not in _NOT_PASSED}
        miri = str(model.meta.instrument.name or "").upper() == "MIRI"
        if options["expand_large_events"] is None:
            options["expand_large_events"] = not miri
        if options["find_showers"] is None:
            options["find_showers"] = miri
        exposure = model.meta.exposure
        options.update(group_time=exposure.group_time, frame_time=exposure.frame_time,
                       nframes=exposure.nframes or 1)
        return _JumpSetup(arrays["gain"], arrays["readnoise"], options, JumpState())

    def process_block(self, block: RampBlock, setup: _JumpSetup) -> None:
        result = detect_jumps(block.data, block.groupdq, setup.gain, setup.readnoise,
                              pixeldq=block.pixeldq, state=setup.state, nthreads=self.threads,
                              **setup.options)
        block.groupdq = result.groupdq  # a new array; the block owns it now
        block.pixeldq |= result.pixeldq
        setup.state = result.state
        setup.n_jumps += result.n_jumps
        setup.n_snowballs += result.n_snowballs
        setup.n_showers += result.n_showers

    def release(self, setup: _JumpSetup) -> _JumpSetup:
        setup.gain = setup.readnoise = None  # finish needs the counts only
        return setup

    def finish(self, model, setup: _JumpSetup) -> None:
        from ..logs import get_logger

        get_logger("step").info("jump: %d jumps, %d snowballs, %d showers", setup.n_jumps,
                                setup.n_snowballs, setup.n_showers)
