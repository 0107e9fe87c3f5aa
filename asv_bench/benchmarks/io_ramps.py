"""Reading and writing full-frame ramps (the I/O floor every stage-1 figure is compared with)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

try:
    from ._common import full_frame_uncal
except ImportError:  # run as a script
    from _common import full_frame_uncal


class ReadRawRamp:
    """Read a 2048x2048x10 raw exposure and convert it to float32, whole or one integration."""

    timeout = 300

    def setup(self):
        from jwpipe import datamodels

        self.path = full_frame_uncal()
        self.datamodels = datamodels

    def time_open_metadata(self):
        self.datamodels.open(self.path)

    def time_read_float32(self):
        raw = self.datamodels.open(self.path)
        raw.lazy("data").read(slice(0, 1), np.float32)

    def peakmem_read_float32(self):
        raw = self.datamodels.open(self.path)
        raw.lazy("data").read(slice(0, 1), np.float32)


class WriteRamp:
    """Write a float32 2048x2048x10 ramp product (RampModel) to disk."""

    timeout = 300

    def setup(self):
        from jwpipe.datamodels import RampModel

        rng = np.random.default_rng(1)
        self.model = RampModel(rng.normal(0, 1, (1, 10, 2048, 2048)).astype(np.float32))
        self.model.groupdq  # noqa: B018  (materialise the default arrays outside the timing)
        self.model.pixeldq  # noqa: B018
        self.tmp = tempfile.TemporaryDirectory()

    def teardown(self):
        self.tmp.cleanup()

    def time_write_ramp(self):
        self.model.save(Path(self.tmp.name) / "bench_ramp.fits")

    def peakmem_write_ramp(self):
        self.model.save(Path(self.tmp.name) / "bench_ramp.fits")


if __name__ == "__main__":  # python asv_bench/benchmarks/<this file>.py: a quick table, no asv
    import sys

    from _common import run_as_script

    sys.exit(run_as_script(globals()))
