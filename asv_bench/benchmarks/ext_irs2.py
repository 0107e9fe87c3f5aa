"""NIRSpec IRS2 reference-pixel correction (jwpipe.irs2) on a full-frame integration.

Reference point: jwst 3.0.0's ``irs2_subtract_reference`` (flag, replace, correct_model) takes
about 10 s and 634 MB over its input on a 3200x2048, 5-group integration on the 2-core
development machine (measured side by side in a separate environment, 2026-11-21).

jwpipe, same machine, ``python asv_bench/benchmarks/ext_irs2.py`` (fresh process per
benchmark, median of 3): 2.18 s on 1 thread, 1.32 s on 2 (groups are corrected in parallel);
process peak 664 MB on 1 thread, 791 MB on 2, of which the inputs (data, DQ, the reference's
weights) are about 230 MB and the outputs 122 MB.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

try:  # asv imports the benchmarks as a package, the script mode as plain modules
    from ._common import run_as_script
except ImportError:
    from _common import run_as_script

NGROUPS = 5


def irs2_integration(ngroups=NGROUPS, seed=0):
    """A 1 x ngroups x 3200 x 2048 IRS2 ramp (bias, a ramp, white and common-mode noise) and an
    IRS2 reference with smooth weights (written to a temporary file and read back)."""
    from jwpipe.irs2 import read_irs2_reference
    from jwpipe.simulate.irs2 import irs2_refpix_reference

    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 5.0, (3200, 2048)).astype(np.float32)
    data = np.empty((1, ngroups, 3200, 2048), np.float32)
    for g in range(ngroups):
        data[0, g] = 12000.0 + rate * (g + 1) * 14.6
        data[0, g] += rng.standard_normal((3200, 2048), dtype=np.float32) * 6.0
        data[0, g] += rng.standard_normal((1, 2048), dtype=np.float32) * 20.0
    with tempfile.TemporaryDirectory() as folder:
        path = irs2_refpix_reference(Path(folder) / "refpix.fits", alpha=0.9 + 0.1j, beta=0.2)
        reference = read_irs2_reference(path)
    return data, reference


class Irs2FullFrame:
    """flag + replace + correct of one 5-group full-frame IRS2 integration (NRS1)."""

    params = [1, 2]
    param_names = ["nthreads"]
    timeout = 300

    def setup(self, nthreads):
        self.data, self.reference = irs2_integration()
        self.pixeldq = np.zeros(self.data.shape[-2:], np.uint32)
        self.groupdq = np.zeros(self.data.shape, np.uint8)

    def _run(self, nthreads):
        from jwpipe.irs2 import irs2_subtract_reference

        return irs2_subtract_reference(self.data, self.pixeldq, self.groupdq, self.reference,
                                       "NRS1", nthreads=nthreads)

    def time_irs2_subtract_reference(self, nthreads):
        self._run(nthreads)

    def peakmem_irs2_subtract_reference(self, nthreads):
        self._run(nthreads)


if __name__ == "__main__":
    import sys

    sys.exit(run_as_script(globals()))
