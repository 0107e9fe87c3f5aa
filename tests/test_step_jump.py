"""jump step (the array-level test is in test_jump_kernel.py): what the step adds around
detect_jumps, the read noise after IPC deconvolution and pooled integrations."""

from __future__ import annotations

import weakref
from dataclasses import fields

import numpy as np

from jwpipe.jump_detection import JumpState
from jwpipe.steps.base import RampBlock
from jwpipe.steps.jump import _NOT_PASSED, JumpStep, _JumpSetup


def _setup(step, readnoise, gain=2.0, shape=(96, 96)):
    options = {f.name: getattr(step.params, f.name) for f in fields(step.params)
               if f.name not in _NOT_PASSED}
    options.update(expand_large_events=False, find_showers=False, group_time=10.0,
                   frame_time=10.0, nframes=1, fast_axis=1, noutputs=1)
    return _JumpSetup(np.full(shape, gain, np.float32), np.full(shape, readnoise, np.float32),
                      options, JumpState())


def _ramps(nints=4, ngroups=10, shape=(96, 96), rn_dn=10.0, seed=1):
    """Read-noise dominated ramps (DN): 5 DN per group, read noise rn_dn / sqrt(2) per read."""
    rng = np.random.default_rng(seed)
    signal = 5.0 * np.arange(ngroups, dtype=np.float32)[None, :, None, None]
    noise = rng.normal(0.0, rn_dn / np.sqrt(2.0), (nints, ngroups) + shape)
    return (signal + noise).astype(np.float32)


def _run(step, setup, data, extras=None):
    block = RampBlock(data.copy(), np.zeros(data.shape, np.uint8),
                      np.zeros(data.shape[-2:], np.uint32), 0, data.shape[0], None)
    block.extras.update(extras or {})
    step.process_block(block, setup)
    return block.groupdq


def test_read_noise_scale_from_the_ipc_step_is_used():
    """A block carrying ``read_variance_scale`` s is tested as with READNOISE * sqrt(s); without
    it the reference's read noise is used (flags differ on the same data)."""
    step = JumpStep()
    data = _ramps()
    scale = np.float32(1.0816)
    with_scale = _run(step, _setup(step, 10.0), data, {"read_variance_scale": scale})
    by_hand = _run(step, _setup(step, 10.0 * float(np.sqrt(scale))), data)
    plain = _run(step, _setup(step, 10.0), data)
    np.testing.assert_array_equal(with_scale, by_hand)
    # ~3e5 read-noise dominated differences: the 4% larger noise removes some of the ~20
    # false positives a one-sided 3.83-sigma test makes on them.
    assert (plain != 0).sum() > (with_scale != 0).sum()
    per_pixel = np.full(data.shape[-2:], scale, np.float32)
    np.testing.assert_array_equal(
        _run(step, _setup(step, 10.0), data, {"read_variance_scale": per_pixel}), with_scale)


def test_pool_integrations_needs_the_whole_exposure():
    """Pooling tests the integrations against one rate, so the driver must give the step the
    exposure as one block; by default the step streams."""
    assert not JumpStep().needs_all_integrations
    assert JumpStep(pool_integrations=True).needs_all_integrations


def test_group_dq_array_is_reused_from_block_to_block():
    """The flagged group DQ of a block goes into the array of the block before once that block
    is gone (no new memory to map per block), not while anything still holds it, and the flags
    are those of a fresh array; the mean differences go into one array kept from block to
    block."""
    step = JumpStep()
    setup = _setup(step, 10.0)
    first, second, third = (_ramps(nints=2, seed=s) for s in (1, 2, 3))
    out1 = _run(step, setup, first)
    flags1 = out1.copy()
    held = out1  # still held: the next block must not write into it
    out2 = _run(step, setup, second)
    assert not np.shares_memory(out2, held)
    np.testing.assert_array_equal(held, flags1)
    del held, out1
    buffer = weakref.ref(out2)
    del out2
    mean_diff = weakref.ref(setup.buffers.take("mean_diff", (2, 96, 96), np.float32))
    out3 = _run(step, setup, third)
    assert out3 is buffer()
    assert setup.buffers.take("mean_diff", (2, 96, 96), np.float32) is mean_diff()
    np.testing.assert_array_equal(out3, _run(step, _setup(step, 10.0), third))
    assert (out3 != 0).any()
    step.release(setup)
    assert setup.buffers is None


def test_showers_are_searched_once_the_input_group_dq_is_gone(monkeypatch):
    """MIRI: the step runs the jump test, makes its output the block's group DQ, then searches
    for showers (flag_showers). When the block is the only holder of its input group DQ (the
    driver's last block) that array is freed before the search, whose float64 planes make the
    step's peak (a MIRI full frame: 20 MB less). The flags are those of
    detect_jumps(find_showers=True)."""
    import jwpipe.steps.jump as jump_step
    from jwpipe.jump_detection import detect_jumps

    shape = (100, 100)
    data = _ramps(nints=1, ngroups=16, shape=shape, rn_dn=6.0, seed=8)
    yy, xx = np.mgrid[:100, :100]
    data[0, 7:, (yy - 50) ** 2 + (xx - 45) ** 2 <= 16 ** 2] += 12.0  # ~2 sigma per pixel
    step = JumpStep()
    setup = _setup(step, 6.0, gain=4.0, shape=shape)
    setup.options.update(find_showers=True, max_shower_amplitude=20.0, group_time=2.775,
                         frame_time=2.775)
    block = RampBlock(data.copy(), np.zeros(data.shape, np.uint8), np.zeros(shape, np.uint32),
                      0, 1, None)
    input_groupdq = weakref.ref(block.groupdq)
    freed = []
    search = jump_step.flag_showers

    def spy(*args, **kwargs):
        freed.append(input_groupdq() is None)
        return search(*args, **kwargs)

    monkeypatch.setattr(jump_step, "flag_showers", spy)
    step.process_block(block, setup)
    assert freed == [True]
    whole = detect_jumps(data, np.zeros(data.shape, np.uint8), setup.gain, setup.readnoise,
                         pixeldq=np.zeros(shape, np.uint32), **setup.options)
    assert setup.n_showers == whole.n_showers >= 1
    np.testing.assert_array_equal(block.groupdq, whole.groupdq)
