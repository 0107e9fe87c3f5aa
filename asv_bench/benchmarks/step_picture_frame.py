"""NIRSpec picture_frame step on a full-frame ramp (NRS1, 1 x 10 groups).

Step ``run`` on a model in memory holding the simulator's picture-frame glow (20 DN
asymptotically), white noise and a ramp, with a PICTUREFRAME reference of the glow's shape,
``mask_science_regions=False``. The time is the draft rate, its background mask (3-sigma
clipped statistics of all 4.2 million pixels, as the reference pipeline: ~0.4 s) and two
medians per group difference.
jwpipe, 2-core development machine, ``python asv_bench/benchmarks/step_picture_frame.py``:
see the closing notes of issue 4 for the figures.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

try:  # asv imports the benchmarks as a package, the script mode as plain modules
    from ._common import run_as_script
except ImportError:
    from _common import run_as_script

NGROUPS, TGROUP = 10, 10.73676


def nirspec_ramp(seed=0):
    """An NRS1 full-frame NRSRAPID RampModel: bias, a ramp, white noise and the glow."""
    from jwpipe.datamodels import RampModel
    from jwpipe.simulate.picture_frame import picture_frame_reads

    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 0.1, (2048, 2048)).astype(np.float32)
    times = TGROUP * np.arange(1, NGROUPS + 1)
    data = (1000.0 + rate * times.astype(np.float32)[:, None, None]
            + picture_frame_reads(20.0, times))[None]
    data += rng.standard_normal(data.shape, dtype=np.float32) * 10.0
    model = RampModel(data)
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "NIRSPEC", "NRS1"
    meta.exposure.type, meta.exposure.readpatt = "NRS_FIXEDSLIT", "NRSRAPID"
    meta.exposure.nints, meta.exposure.ngroups = 1, NGROUPS
    meta.subarray.name = "FULL"
    meta.subarray.xstart = meta.subarray.ystart = 1
    meta.subarray.xsize = meta.subarray.ysize = 2048
    model.pixeldq = np.zeros((2048, 2048), np.uint32)
    model.groupdq = np.zeros(data.shape, np.uint8)
    return model


def pictureframe_reference(folder) -> Path:
    from jwpipe.datamodels import PictureFrameModel
    from jwpipe.simulate.picture_frame import REFERENCE_RATE, frame_shape

    ref = PictureFrameModel()
    ref.data = frame_shape() * np.float32(REFERENCE_RATE)
    ref.meta.reftype = "PICTUREFRAME"
    ref.meta.instrument.name = "NIRSPEC"
    path = Path(folder) / "pictureframe.fits"
    ref.save(path)
    return path


class PictureFrame:
    """PictureFrameStep.run on a full-frame ramp."""

    timeout = 300

    def setup(self):
        self.folder = tempfile.TemporaryDirectory()
        self.model = nirspec_ramp()
        self.reference = str(pictureframe_reference(self.folder.name))

    def teardown(self):
        self.folder.cleanup()

    def _run(self):
        from jwpipe.steps.picture_frame import PictureFrameStep

        PictureFrameStep(overrides={"pictureframe": self.reference}, skip=False,
                         mask_science_regions=False).run(self.model)

    def time_picture_frame(self):
        self._run()

    def peakmem_picture_frame(self):
        self._run()


if __name__ == "__main__":
    import sys

    sys.exit(run_as_script(globals()))
