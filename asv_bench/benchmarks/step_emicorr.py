"""MIRI emicorr step (joint fit) on a full-frame and a time-series-like subarray ramp.

Step ``run`` on a model in memory holding EMI of the synthetic EMICORR reference's waveform
(full frame, 1 x 20 groups: 10.04 Hz; SUB64, 500 x 10 groups: 390.625 and 218.5 Hz, two scans).
jwpipe, 2-core development machine, ``python asv_bench/benchmarks/step_emicorr.py`` (median of
3 calls): full frame 0.31 s, SUB64 0.58 s (1.2 ms per integration); with
``fit_ints_separately`` 0.82 s for SUB64 (the trial-phase templates are made once per frequency,
not once per integration: 51 s before); process peaks 479 and 414 MB, mostly the benchmark's
own ramp and its making.
The reference pipeline's joint fit sums pixels by phase in a Python loop over every row and
column slot (264,000 iterations for a full frame).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

try:  # asv imports the benchmarks as a package, the script mode as plain modules
    from ._common import run_as_script
except ImportError:
    from _common import run_as_script

CASES = {"FULL": (1, 20, 1024, 1032, {"Hz10": (3.0, 0.2)}),
         "SUB64": (500, 10, 64, 72, {"Hz390": (3.0, 0.6), "Hz218a": (2.0, 0.1)})}


def miri_ramp(subarray: str, seed=0):
    """A MIRIMAGE FASTR1 RampModel: bias, a ramp, white noise and the case's EMI."""
    from jwpipe.datamodels import RampModel
    from jwpipe.simulate.emi import emi_reads

    nints, ngroups, ny, nx, emi = CASES[subarray]
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 5.0, (ny, nx)).astype(np.float32)
    data = np.empty((nints, ngroups, ny, nx), np.float32)
    for i in range(nints):
        data[i] = 10000.0 + rate * np.arange(1, ngroups + 1, dtype=np.float32)[:, None, None]
        data[i] += rng.standard_normal((ngroups, ny, nx), dtype=np.float32) * 7.0
        data[i] += emi_reads(emi, subarray, "FASTR1", ngroups, ny, nx, i)
    model = RampModel(data)
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "MIRI", "MIRIMAGE"
    meta.exposure.type, meta.exposure.readpatt = "MIR_IMAGE", "FASTR1"
    meta.exposure.nints, meta.exposure.ngroups, meta.exposure.nsamples = nints, ngroups, 1
    meta.subarray.name = subarray
    meta.subarray.xstart = meta.subarray.ystart = 1
    meta.subarray.xsize, meta.subarray.ysize = nx, ny
    model.pixeldq = np.zeros((ny, nx), np.uint32)
    model.groupdq = np.zeros(data.shape, np.uint8)
    return model


def emicorr_reference(folder) -> Path:
    import asdf

    from jwpipe.simulate.emi import emicorr_tree

    meta = {"reftype": "emicorr", "instrument": {"name": "MIRI"}, "pedigree": "DUMMY",
            "author": "jwpipe benchmark", "description": "synthetic", "useafter": "2022-01-01",
            "telescope": "JWST"}
    path = Path(folder) / "emicorr.asdf"
    asdf.AsdfFile(emicorr_tree(meta)).write_to(path)
    return path


class EmiCorr:
    """EmiCorrStep.run (joint fit and correction) by readout."""

    params = list(CASES)
    param_names = ["subarray"]
    timeout = 300

    def setup(self, subarray):
        self.folder = tempfile.TemporaryDirectory()
        self.model = miri_ramp(subarray)
        self.reference = str(emicorr_reference(self.folder.name))

    def teardown(self, subarray):
        self.folder.cleanup()

    def _run(self, subarray, **params):
        from jwpipe.steps.emicorr import EmiCorrStep

        EmiCorrStep(overrides={"emicorr": self.reference}, skip=False, **params).run(self.model)

    def time_emicorr(self, subarray):
        self._run(subarray)

    def time_emicorr_per_integration(self, subarray):
        self._run(subarray, fit_ints_separately=True)

    def peakmem_emicorr(self, subarray):
        self._run(subarray)


if __name__ == "__main__":
    import sys

    sys.exit(run_as_script(globals()))
