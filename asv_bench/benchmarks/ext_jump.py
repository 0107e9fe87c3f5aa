"""Jump-detection kernel (two-point differences, GLS step test) on realistic shapes.

Reference points (BASELINES.md, 2-core machine): the reference pipeline's jump kernel takes 9.9 s on
a full-frame 2048x2048x10 ramp; one pass over that ramp in memory costs about 10 ms. The NIRISS
SOSS TSO case (256x2048, 5 groups x 50 integrations) spends 20.3 s in jump.
"""

from __future__ import annotations

import numpy as np

try:  # asv imports the benchmarks as a package, the script mode as plain modules
    from ._common import read_pass_ratio
except ImportError:
    from _common import read_pass_ratio

TGROUP = 10.73677  # NIRCam full frame, RAPID
GAIN = 2.0  # electrons/DN
READ_NOISE = 10.0  # DN, correlated double sampling


def synthetic_ramp(nints, ngroups, ny, nx, seed=0, cr_rate=2e-4):
    """Sky-plus-sources ramps in DN with Poisson and read noise, cosmic rays (``cr_rate`` per
    pixel-group, amplitudes 10-2000 DN) and ~0.5% of pixels saturating part-way up the ramp.

    The noise is what the kernel's model assumes (Poisson electrons, ``READ_NOISE`` /
    sqrt(2) DN per group), so the share of clean pixels its chi-square screen passes is the
    one real data give (about 4% for 9 differences), not fewer."""
    rng = np.random.default_rng(seed)
    ny_, nx_ = ny, nx
    rate = rng.gamma(2.0, 5.0, (ny_, nx_)).astype(np.float32)  # DN/s
    electrons_per_group = rate.astype(np.float64) * TGROUP * GAIN
    data = np.empty((nints, ngroups, ny_, nx_), np.float32)
    gdq = np.zeros((nints, ngroups, ny_, nx_), np.uint8)
    sat = rng.random((ny_, nx_)) < 0.005
    sat_group = rng.integers(1, max(ngroups, 2), (ny_, nx_))
    for i in range(nints):
        acc = np.zeros((ny_, nx_), np.float32)
        for g in range(ngroups):
            acc += rng.poisson(electrons_per_group).astype(np.float32) / np.float32(GAIN)
            hit = rng.random((ny_, nx_)) < cr_rate
            acc[hit] += rng.uniform(10, 2000, hit.sum()).astype(np.float32)
            data[i, g] = acc + rng.standard_normal((ny_, nx_), dtype=np.float32) * np.float32(
                READ_NOISE / np.sqrt(2.0))
            gdq[i, g][sat & (sat_group <= g)] = 3
    gain = np.full((ny_, nx_), GAIN, np.float32)
    readnoise = np.full((ny_, nx_), READ_NOISE, np.float32)
    return data, gdq, gain, readnoise


class JumpFullFrame:
    """Kernel on a full-frame 2048x2048, 10-group, 1-integration ramp."""

    params = [1, 2]
    param_names = ["nthreads"]
    timeout = 300

    def setup(self, nthreads):
        from jwpipe.jump_detection import detect_jumps

        self.detect = detect_jumps
        self.data, self.gdq, self.gain, self.rn = synthetic_ramp(1, 10, 2048, 2048)
        detect_jumps(self.data[:, :, :64], self.gdq[:, :, :64], self.gain[:64], self.rn[:64],
                     group_time=TGROUP, frame_time=TGROUP, nframes=1)  # warm up
        self.out = np.zeros_like(self.gdq)
        self.mean_diff = np.zeros(self.data.shape[:1] + self.data.shape[2:], np.float32)

    def _run(self, nthreads):
        return self.detect(self.data, self.gdq, self.gain, self.rn, group_time=TGROUP,
                           frame_time=TGROUP, nframes=1, nthreads=nthreads)

    def time_detect(self, nthreads):
        self._run(nthreads)

    def time_detect_into(self, nthreads):
        """The same into ``out`` and ``mean_diff_out`` arrays made (and paged in) once: the
        kernel without the first-touch cost of 58 MB of new results (about 5 ms here per call
        on two threads), as the jump step runs it on its blocks."""
        self.detect(self.data, self.gdq, self.gain, self.rn, group_time=TGROUP,
                    frame_time=TGROUP, nframes=1, nthreads=nthreads, out=self.out,
                    mean_diff_out=self.mean_diff)

    def track_read_passes(self, nthreads):
        """``time_detect_into`` in read passes over the ramp (:func:`_common.read_pass_ratio`)."""
        return read_pass_ratio(lambda: self.time_detect_into(nthreads), self.data)

    track_read_passes.unit = "x"

    def time_detect_columns_into(self, nthreads):
        """As ``time_detect_into`` with the common-mode lines along columns and four outputs
        (NIRSpec and NIRISS full frames, whose fast read axis is y): the offsets then take a
        pass of their own over the ramp (rows are done with the detection, in one pass)."""
        self.detect(self.data, self.gdq, self.gain, self.rn, group_time=TGROUP,
                    frame_time=TGROUP, nframes=1, fast_axis=2, noutputs=4, nthreads=nthreads,
                    out=self.out, mean_diff_out=self.mean_diff)

    def peakmem_detect(self, nthreads):
        self._run(nthreads)


class JumpFullFrameSnowballs:
    """Full frame with snowball flagging on (the near-IR CRDS parameters turn it on)."""

    params = [2]
    param_names = ["nthreads"]
    timeout = 300

    def setup(self, nthreads):
        from jwpipe.jump_detection import detect_jumps

        self.detect = detect_jumps
        self.data, self.gdq, self.gain, self.rn = synthetic_ramp(1, 10, 2048, 2048)

    def time_detect_snowballs(self, nthreads):
        self.detect(self.data, self.gdq, self.gain, self.rn, group_time=TGROUP,
                    frame_time=TGROUP, nframes=1, expand_large_events=True, nthreads=nthreads)


class JumpTSO:
    """TSO-like block stream: 50 integrations of 256x2048 with 5 groups, fed 10 at a time with
    the state passed from block to block (memory stays that of one block). ``fast_axis`` 2 is
    NIRISS/NIRSpec (line offsets along columns, the NIRISS SOSS case), 1 NIRCam (rows)."""

    params = [[1, 2], [1, 2]]
    param_names = ["nthreads", "fast_axis"]
    timeout = 300

    def setup(self, nthreads, fast_axis):
        from jwpipe.jump_detection import detect_jumps

        self.detect = detect_jumps
        self.data, self.gdq, self.gain, self.rn = synthetic_ramp(50, 5, 256, 2048, seed=1)

    def _run(self, nthreads, fast_axis):
        state = None
        n = 0
        for start in range(0, 50, 10):
            res = self.detect(self.data[start:start + 10], self.gdq[start:start + 10], self.gain,
                              self.rn, group_time=TGROUP, frame_time=TGROUP, nframes=1,
                              state=state, nthreads=nthreads, fast_axis=fast_axis)
            state = res.state
            n += res.n_jumps
        return n

    def time_detect_stream(self, nthreads, fast_axis):
        self._run(nthreads, fast_axis)

    def peakmem_detect_stream(self, nthreads, fast_axis):
        self._run(nthreads, fast_axis)


if __name__ == "__main__":  # python asv_bench/benchmarks/<this file>.py: a quick table, no asv
    import sys

    from _common import run_as_script

    sys.exit(run_as_script(globals()))
