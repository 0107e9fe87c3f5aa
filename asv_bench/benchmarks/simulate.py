"""The synthetic observatory: reference caches and raw exposures on realistic shapes.

Targets (issue 3): a full-frame 2048x2048, 10-group NIRCam exposure in a few seconds; a small
test-suite cache (one detector, one subarray) in seconds. The reference caches are written once per
session under ``$JWPIPE_BENCH_DIR`` (default ``<tmp>/jwpipe_bench``) and reused.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

try:
    from ._common import CACHE
except ImportError:  # run as a script
    from _common import CACHE

_REFTYPES = ("mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise", "ipc",
             "flat", "area", "photom", "distortion")


def _cache(name: str, **kw) -> Path:
    from jwpipe.simulate import make_crds_cache

    root = CACHE / name
    if not (root / "config" / "jwst" / "server_config").exists():
        make_crds_cache(root, reftypes=_REFTYPES, **kw)
    return root


class SimulateExposure:
    """simulate_exposure: NIRCam NRCA1, every detector effect on, scene of ~1500 sources."""

    params = [("FULL-10x1", "SUB160-10x3", "SUBGRISM256-5x20")]
    param_names = ["mode"]
    timeout = 600

    _MODES = {"FULL-10x1": ("FULL", 10, 1), "SUB160-10x3": ("SUB160", 10, 3),
              "SUBGRISM256-5x20": ("SUBGRISM256", 5, 20)}

    def setup_cache(self):
        return str(_cache("simcache_nrca1", detectors=["NRCA1"],
                          subarrays=["FULL", "SUB160", "SUBGRISM256"], filters=["F200W"]))

    def setup(self, cache, mode):
        self.out = Path(tempfile.mkdtemp(prefix="jwsim_"))
        sub, ngroups, nints = self._MODES[mode]
        self.kw = dict(detector="NRCA1", subarray=sub, ngroups=ngroups, nints=nints,
                       crds_path=cache, output_dir=self.out, seed=1)
        from jwpipe.simulate import simulate_exposure

        simulate_exposure(**dict(self.kw, ngroups=2, nints=1))  # warm imports and file caches

    def teardown(self, cache, mode):
        shutil.rmtree(self.out, ignore_errors=True)

    def time_simulate_exposure(self, cache, mode):
        from jwpipe.simulate import simulate_exposure

        simulate_exposure(**self.kw)

    def peakmem_simulate_exposure(self, cache, mode):
        from jwpipe.simulate import simulate_exposure

        simulate_exposure(**self.kw)


class MakeCache:
    """make_crds_cache: the small cache a test suite builds (one detector, one subarray)."""

    timeout = 600

    def setup(self):
        self.root = Path(tempfile.mkdtemp(prefix="jwcache_"))

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def time_small_cache(self):
        from jwpipe.simulate import make_crds_cache

        make_crds_cache(self.root, detectors=["NRCA1"], subarrays=["SUB160"], filters=["F200W"])

    def peakmem_small_cache(self):
        from jwpipe.simulate import make_crds_cache

        make_crds_cache(self.root, detectors=["NRCA1"], subarrays=["SUB160"], filters=["F200W"])


class RampKernel:
    """The compiled ramp kernel alone: one full-frame integration of 10 reads."""

    def setup(self):
        import numpy as np

        n = 2048
        rng = np.random.default_rng(0)
        self.rate = rng.gamma(2.0, 10.0, (n, n)).astype(np.float32)
        self.gain = np.full((n, n), 2.0, np.float32)
        self.coeffs = np.zeros((4, n, n), np.float32)
        self.coeffs[1] = 1.0
        self.coeffs[2] = 1.0e-6
        self.coeffs[3] = 1.3e-11
        self.well = np.full((n, n), 47000.0, np.float32)
        self.dt = np.full(10, 10.73676)
        self.group = np.arange(10, dtype=np.int32)
        self.weight = np.ones(10, np.float32)
        self.out = np.empty((10, n, n), np.float32)

    def time_sim_ramp(self):
        from jwpipe._ext import _simulate

        _simulate.sim_ramp(self.rate, self.gain, self.coeffs, self.well, None, self.dt,
                           self.group, self.weight, None, None, None, None, self.out, None, 1, 1,
                           False, 100.0, 2)


if __name__ == "__main__":  # python asv_bench/benchmarks/<this file>.py: a quick table, no asv
    import sys

    from _common import run_as_script

    sys.exit(run_as_script(globals()))
