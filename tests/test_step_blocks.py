"""Streaming: every ramp step gives the same result on blocks of one integration (as the driver
feeds them, PIXELDQ shared) as on the whole exposure at once."""

from __future__ import annotations

import numpy as np
import pytest

from jwpipe.steps import get_step_class
from jwpipe.steps.base import RampBlock

CHAINS = {
    "nircam_oracle": ["dq_init", "saturation", "superbias", "linearity", "dark_current",
                      "charge_migration"],
    "miri_oracle": ["dq_init", "saturation", "lastframe", "firstframe", "reset", "linearity",
                    "rscd", "dark_current"],
}


@pytest.mark.parametrize("case", sorted(CHAINS))
def test_blocks_equal_whole(case, request):
    info = request.getfixturevalue(case)
    refs = info["refs"]
    raw = get_step_class("dq_init")().open_input(str(info["uncal"]))
    nints = raw.data.shape[0]
    steps, states = [], []
    for alias in CHAINS[case]:
        cls = get_step_class(alias)
        step = cls(overrides={k: refs[k] for k in cls.reference_types if k in refs})
        steps.append(step)
        states.append(step.prepare(raw, {k: refs.get(k, "N/A") for k in cls.reference_types}))
    whole = RampBlock.from_model(raw)
    for step, state in zip(steps, states, strict=True):
        step.process_block(whole, state)
    pixeldq = np.zeros_like(whole.pixeldq)
    data, gdq = [], []
    for i in range(nints):
        block = RampBlock(np.array(raw.data[i:i + 1]), np.zeros((1,) + raw.data.shape[1:],
                          np.uint8), pixeldq, i, nints, raw.meta)
        for step, state in zip(steps, states, strict=True):
            step.process_block(block, state)
        data.append(block.data)
        gdq.append(block.groupdq)
    np.testing.assert_array_equal(np.concatenate(data), whole.data)
    np.testing.assert_array_equal(np.concatenate(gdq), whole.groupdq)
    np.testing.assert_array_equal(pixeldq, whole.pixeldq)
