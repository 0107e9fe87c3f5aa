"""Ramp-fitting kernel (OLS, optimal weighting) on realistic shapes.

Reference points (BASELINES.md, 2-core machine): the reference C kernel takes 2.0 s on a full-frame
2048x2048x10 ramp; one pass over that ramp in memory costs about 10 ms.
"""

from __future__ import annotations

import numpy as np

try:  # asv imports the benchmarks as a package, the script mode as plain modules
    from ._common import read_pass_ratio
except ImportError:
    from _common import read_pass_ratio

TGROUP = 10.73677  # NIRCam full frame, RAPID


def synthetic_ramp(nints, ngroups, ny, nx, seed=0):
    """Ramps of a sky-plus-sources scene with read noise, ~1% jumps and ~0.5% saturation."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 5.0, (ny, nx)).astype(np.float32)
    t = (np.arange(ngroups, dtype=np.float32) + 1) * np.float32(TGROUP)
    one = (rate[None] * t[:, None, None]
           + rng.standard_normal((ngroups, ny, nx), dtype=np.float32) * np.float32(7.0))
    gdq = np.zeros((ngroups, ny, nx), np.uint8)
    if ngroups > 2:
        jump = rng.random((ny, nx)) < 0.01
        g = rng.integers(1, ngroups, (ny, nx))
        yy, xx = np.nonzero(jump)
        gdq[g[jump], yy, xx] = 4
        sat = rng.random((ny, nx)) < 0.005
        gs = rng.integers(1, ngroups, (ny, nx))
        gdq |= ((np.arange(ngroups)[:, None, None] >= gs[None]) & sat[None]).astype(np.uint8) * 2
    data = np.ascontiguousarray(np.broadcast_to(one, (nints, ngroups, ny, nx)))
    groupdq = np.ascontiguousarray(np.broadcast_to(gdq, (nints, ngroups, ny, nx)))
    gain = np.full((ny, nx), 2.0, np.float32)
    readnoise = np.full((ny, nx), 10.0, np.float32)
    return data, groupdq, gain, readnoise


class RampFitFullFrame:
    """Kernel on a full-frame 2048x2048, 10-group, 1-integration ramp (rate + rateints)."""

    params = [1, 2]
    param_names = ["nthreads"]
    timeout = 300

    def setup(self, nthreads):
        from jwpipe.ramp_fitting import ExposureResult, RampFitAccumulator, fit_ramps

        self.fit_ramps = fit_ramps
        self.Accumulator = RampFitAccumulator
        self.data, self.gdq, self.gain, self.rn = synthetic_ramp(1, 10, 2048, 2048)
        self.rate = ExposureResult.empty((2048, 2048))
        for name in ("slope", "err", "dq", "var_poisson", "var_rnoise"):
            getattr(self.rate, name).fill(0)
        fit_ramps(self.data[:, :, :64], self.gdq[:, :, :64], self.gain[:64], self.rn[:64],
                  TGROUP, TGROUP, 1)  # warm up (import, threads)

    def time_fit(self, nthreads):
        self.fit_ramps(self.data, self.gdq, self.gain, self.rn, TGROUP, TGROUP, 1,
                       nthreads=nthreads)

    def time_fit_into(self, nthreads):
        """The rate alone (what detector1 asks for with one integration), into arrays made and
        paged in once: the kernel without the first-touch cost of ten new 16 MB results."""
        acc = self.Accumulator((2048, 2048), self.gain, self.rn, TGROUP, TGROUP, 1, 10,
                               nthreads=nthreads)
        acc.fit_exposure(self.data, self.gdq, rate_out=self.rate, integrations=False)

    def track_read_passes(self, nthreads):
        """``time_fit_into`` in read passes over the ramp (:func:`_common.read_pass_ratio`)."""
        return read_pass_ratio(lambda: self.time_fit_into(nthreads), self.data)

    track_read_passes.unit = "x"

    def peakmem_fit(self, nthreads):
        self.fit_ramps(self.data, self.gdq, self.gain, self.rn, TGROUP, TGROUP, 1,
                       nthreads=nthreads)


class RampFitFullFrameSaveOpt:
    """The same ramp with ``save_opt`` (the ``_fitopt`` per-segment arrays): every pixel takes
    the per-pixel path, and the optional arrays are assembled at the end."""

    timeout = 300

    def setup(self):
        from jwpipe.ramp_fitting import RampFitAccumulator

        self.Accumulator = RampFitAccumulator
        self.data, self.gdq, self.gain, self.rn = synthetic_ramp(1, 10, 2048, 2048)

    def time_fit_save_opt(self):
        acc = self.Accumulator((2048, 2048), self.gain, self.rn, TGROUP, TGROUP, 1, 10,
                               nthreads=2, save_opt=True)
        acc.fit_exposure(self.data, self.gdq)
        acc.optional_results()


class RampFitTSO:
    """TSO-like block stream: 50 integrations of 256x2048 with 5 groups, fed 10 at a time."""

    params = [1, 2]
    param_names = ["nthreads"]
    timeout = 300

    def setup(self, nthreads):
        from jwpipe.ramp_fitting import RampFitAccumulator

        self.Accumulator = RampFitAccumulator
        self.data, self.gdq, self.gain, self.rn = synthetic_ramp(50, 5, 256, 2048, seed=1)

    def _run(self, nthreads):
        acc = self.Accumulator((256, 2048), self.gain, self.rn, TGROUP, TGROUP, 1, 5,
                               nthreads=nthreads)
        for start in range(0, 50, 10):
            acc.add_block(self.data[start:start + 10], self.gdq[start:start + 10])
        return acc.finish()

    def time_fit_stream(self, nthreads):
        self._run(nthreads)

    def peakmem_fit_stream(self, nthreads):
        self._run(nthreads)


if __name__ == "__main__":  # python asv_bench/benchmarks/<this file>.py: a quick table, no asv
    import sys

    from _common import run_as_script

    sys.exit(run_as_script(globals()))
