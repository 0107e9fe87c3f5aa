"""Shared set-up for benchmarks: synthetic full-frame products written once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("JWPIPE_BENCH_DIR", Path(tempfile.gettempdir()) / "jwpipe_bench"))


def full_frame_uncal(ngroups: int = 10, nints: int = 1, ny: int = 2048, nx: int = 2048) -> Path:
    """A raw exposure file with realistic values (bias + ramp + noise), made once and reused."""
    from jwpipe.datamodels import Level1bModel

    path = CACHE / f"bench_{nints}x{ngroups}x{ny}x{nx}_uncal.fits"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = np.empty((nints, ngroups, ny, nx), np.uint16)
    rate = rng.gamma(2.0, 5.0, (ny, nx)).astype(np.float32)
    bias = rng.normal(12000, 50, (ny, nx)).astype(np.float32)
    for i in range(nints):
        for g in range(ngroups):
            frame = bias + rate * (g + 1) * 10.7 + rng.normal(0, 10, (ny, nx)).astype(np.float32)
            data[i, g] = np.clip(frame, 0, 65535).astype(np.uint16)
    model = Level1bModel(data=data)
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "NIRCAM", "NRCA1"
    meta.exposure.type, meta.exposure.readpatt = "NRC_IMAGE", "BRIGHT2"
    meta.exposure.ngroups, meta.exposure.nints = ngroups, nints
    meta.exposure.nframes, meta.exposure.groupgap = 2, 0
    meta.exposure.frame_time, meta.exposure.group_time = 10.73677, 21.47354
    meta.subarray.name = "FULL" if (ny, nx) == (2048, 2048) else "SUBARRAY"
    meta.subarray.xstart, meta.subarray.ystart = 1, 1
    meta.subarray.xsize, meta.subarray.ysize = nx, ny
    model.save(path)
    return path


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
