"""Near-IR refpix step on a full-frame NIRCam ramp (10 groups), running median and SIRS.

jwpipe, 2-core development machine, ``python asv_bench/benchmarks/step_refpix.py`` (fresh
process per benchmark, median of 3 calls), step ``run`` on a model in memory (the ramp alone is
168 MB; the step works on a copy): running median 0.058 s, SIRS 0.150 s (its templates and the
double-precision subtraction per amplifier; opening the SIRSKERNEL reference costs about 0.8 s
more on the first call of a process, the ASDF library loading its extensions); process peak
541 MB for both. The reference pipeline loops over groups and amplifiers in Python (REFERENCE-MAP
section 4).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

try:  # asv imports the benchmarks as a package, the script mode as plain modules
    from ._common import run_as_script
except ImportError:
    from _common import run_as_script

NGROUPS = 10


def full_frame_ramp(ngroups=NGROUPS, seed=0):
    """A 1 x ngroups x 2048 x 2048 NRCA1 RampModel: bias, a ramp, white and 1/f row noise."""
    from jwpipe.datamodels import RampModel

    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 5.0, (2048, 2048)).astype(np.float32)
    data = np.empty((1, ngroups, 2048, 2048), np.float32)
    for g in range(ngroups):
        data[0, g] = 12000.0 + rate * (g + 1) * 10.7
        data[0, g] += rng.standard_normal((2048, 2048), dtype=np.float32) * 6.0
        data[0, g] += np.cumsum(rng.standard_normal(2048)).astype(np.float32)[:, None]
    model = RampModel(data)
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "NIRCAM", "NRCA1"
    meta.exposure.type, meta.exposure.readpatt = "NRC_IMAGE", "RAPID"
    meta.exposure.nints, meta.exposure.ngroups, meta.exposure.noutputs = 1, ngroups, 4
    meta.subarray.name = "FULL"
    meta.subarray.xstart = meta.subarray.ystart = 1
    meta.subarray.xsize = meta.subarray.ysize = 2048
    meta.subarray.fastaxis, meta.subarray.slowaxis = -1, 2
    model.pixeldq = np.zeros((2048, 2048), np.uint32)
    model.groupdq = np.zeros(data.shape, np.uint8)
    return model


def sirs_reference(folder) -> Path:
    """A SIRSKERNEL file with exponential left and right kernels for NRCA1."""
    from jwpipe.simulate.sirs import write_sirskernel_reference

    lag = np.arange(2048)
    lag = np.minimum(lag, 2048 - lag)
    gamma = np.stack([np.fft.rfft(0.2 * np.exp(-lag / (3.0 + a))) for a in range(4)])
    return write_sirskernel_reference(Path(folder) / "sirskernel.asdf", {"nrca1": (gamma, gamma)})


class RefPixFullFrame:
    """RefPixStep.run on a 10-group full frame, by side-pixel algorithm."""

    params = ["median", "sirs"]
    param_names = ["refpix_algorithm"]
    timeout = 300

    def setup(self, refpix_algorithm):
        self.folder = tempfile.TemporaryDirectory()
        self.model = full_frame_ramp()
        self.kernel = str(sirs_reference(self.folder.name))

    def teardown(self, refpix_algorithm):
        self.folder.cleanup()

    def _run(self, refpix_algorithm):
        from jwpipe.steps.refpix import RefPixStep

        RefPixStep(overrides={"refpix": "N/A", "sirskernel": self.kernel},
                   refpix_algorithm=refpix_algorithm).run(self.model)

    def time_refpix(self, refpix_algorithm):
        self._run(refpix_algorithm)

    def peakmem_refpix(self, refpix_algorithm):
        self._run(refpix_algorithm)


if __name__ == "__main__":
    import sys

    sys.exit(run_as_script(globals()))
