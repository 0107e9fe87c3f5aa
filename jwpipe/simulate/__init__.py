"""The synthetic observatory: CRDS-format reference sets and raw exposures with known truth.

Library API::

    from jwpipe import simulate

    cache = simulate.make_crds_cache("crds_cache", detectors=["NRCA1"], subarrays=["SUB160"])
    exp = simulate.simulate_exposure(detector="NRCA1", subarray="SUB160", ngroups=10, nints=3,
                                     crds_path=cache, output_dir="out", seed=42)
    exp.uncal_path, exp.truth_path, exp.sources_path

    obs = simulate.simulate_imaging_observation(crds_path=cache, output_dir="obs", dithers=4,
                                                subarray="SUB640")
    obs.asn_level2, obs.asn_level3

    tso = simulate.simulate_time_series(crds_path=cache, output_dir="tso", nints=60,
                                        ints_per_segment=20)

``make_crds_cache`` writes reference files in the real CRDS formats and the mapping files
(``.pmap``/``.imap``/``.rmap``) that select them, so the pipeline finds them with ``CRDS_PATH``
pointing at the folder. The simulator reads the same references back to build the detector, so
the truth (:mod:`jwpipe.simulate.truth` documents the files) is exactly what a perfect
calibration would recover. Command line: ``python -m jwpipe simulate {cache,exposure,
observation,tso} ...`` (:mod:`jwpipe.simulate.command`).
"""

from __future__ import annotations

from .exposure import ExposureConfig, SimulatedExposure, exposure_root, simulate_exposure
from .instruments import DETECTORS, INSTRUMENTS
from .observation import (
                          SimulatedObservation,
                          dither_offsets,
                          simulate_imaging_observation,
                          simulate_time_series,
)
from .refs import make_crds_cache
from .scene import Galaxy, PointSource, Scene, Trace, random_scene, transit_lightcurve

__all__ = [
    "make_crds_cache", "simulate_exposure", "simulate_imaging_observation",
    "simulate_time_series", "ExposureConfig", "SimulatedExposure", "SimulatedObservation",
    "Scene", "PointSource", "Galaxy", "Trace", "random_scene", "transit_lightcurve",
    "dither_offsets", "exposure_root", "DETECTORS", "INSTRUMENTS",
]
