"""Observations: dithered imaging sets with their associations, and segmented time series.

An imaging observation is N exposures of one scene at dither offsets (exposure numbers 1..N,
PATT_NUM 1..N), with a level-2 association (``image2``: one product per exposure, its ``_rate``
file as science member) and a level-3 association (``image3``: every ``_cal`` file, one product
``jw<ppppp>-o<ooo>_t001_<instrument>_<optical elements>``). A time series is one exposure of many
integrations, split into ``-segNNN`` files, with the variable target following a transit light
curve, and ``tso-image2``/``tso-spec2`` and ``tso3`` associations.
"""

from __future__ import annotations

import math
import os
import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..datamodels.asn import Association, Member, Product, write_asn
from ..errors import ConfigError
from . import instruments as I
from . import truth as T
from .exposure import (
    ExposureConfig,
    SimulatedExposure,
    _default_scene,
    _resolve,
    simulate_exposure,
)
from .scene import PointSource, Scene, Trace, transit_lightcurve

__all__ = ["SimulatedObservation", "dither_offsets", "simulate_imaging_observation",
           "simulate_time_series", "PERSISTENCE_RATE"]


@dataclass
class SimulatedObservation:
    """Exposures of an observation and the association files written for them."""

    exposures: list
    asn_level2: Path | None
    asn_level3: Path | None
    product_name: str
    catalog_path: Path | None
    scene: Scene | None = None
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)


def dither_offsets(n: int, size: float = 1.0,
                   pixel_scale: float | None = None) -> list[tuple[float, float]]:
    """Offsets (arcsec, ideal frame) of an n-point dither pattern.

    The first four points are the corners of a box of side ``size``; more points continue on a
    spiral. With ``pixel_scale`` (arcsec/pixel) every offset is moved to a whole number of
    pixels plus a sub-pixel phase cycling through (0, 0), (1/2, 0), (1/2, 1/2), (0, 1/2), the
    sampling a drizzled combination needs.
    """
    base = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    phases = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)]
    out = []
    for k in range(n):
        if k < 4:
            dx, dy = base[k]
        else:
            a = 2.39996 * k
            r = 0.35 * math.sqrt(k)
            dx, dy = r * math.cos(a), r * math.sin(a)
        dx, dy = dx * size, dy * size
        if pixel_scale:
            px, py = phases[k % 4]
            dx = (round(dx / pixel_scale) + px) * pixel_scale
            dy = (round(dy / pixel_scale) + py) * pixel_scale
        out.append((round(dx, 6), round(dy, 6)))
    return out


def _optical_elements(det, flt) -> str:
    if det.instrument in ("NIRCAM",):
        return f"{flt.pupil.lower()}-{flt.filter.lower()}"
    if det.instrument == "NIRISS":
        return f"{flt.filter.lower()}-{flt.pupil.lower()}"
    return flt.filter.lower()


def _asn_name(cfg: ExposureConfig, start: str, asn_type: str, counter: int = 1) -> str:
    stamp = start.replace("-", "").replace(":", "").replace("T", "t")[:15]
    return (f"jw{int(cfg.program):05d}-o{cfg.observation:03d}_{stamp}_{asn_type}_"
            f"{counter:05d}_asn.json")


def _asn(asn_type, asn_id, products, cfg, rule) -> Association:
    pool = f"jw{int(cfg.program):05d}_synthetic_pool"
    return Association(asn_type, asn_id, products, asn_pool=pool,
                       extra={"asn_rule": rule, "version_id": None, "code_version": "jwpipe",
                              "degraded_status": "No known degraded exposures in association.",
                              "program": f"{int(cfg.program):05d}", "constraints": "synthetic",
                              "target": "t001"})


def simulate_imaging_observation(config: ExposureConfig | None = None, *, dithers=4,
                                 dither_size: float = 1.0, crds_path=None, output_dir=".",
                                 seed: int = 0, scene: Scene | None = None, asn: bool = True,
                                 ensure_cache: bool = False, nthreads: int | None = None,
                                 persistence: bool = False, log=None,
                                 **overrides) -> SimulatedObservation:
    """A dithered imaging observation with level-2 and level-3 associations.

    Parameters
    ----------
    config : ExposureConfig, optional
        The exposure setup shared by all dithers (``overrides`` apply first).
    dithers : int or sequence of (dx, dy)
        Number of dither positions (pattern of :func:`dither_offsets`, half-pixel phases) or
        explicit offsets in arcsec (ideal frame).
    scene : Scene, optional
        The common scene (default: a random field covering every dither position).
    seed : int
        Seed of the scene; exposure k uses ``seed * 1000 + k`` for its noise.
    persistence : bool
        Pixels that saturated in an exposure show persistence in the next ones: a count rate of
        :data:`PERSISTENCE_RATE` DN/s times the TRAPDENSITY reference at the end of the
        saturating exposure, decaying with the TRAPPARS time constant (truth ``persistence``).

    Returns
    -------
    SimulatedObservation
        ``exposures`` (:class:`SimulatedExposure` list), ``asn_level2`` (image2 ASN: one product
        per exposure, member ``<root>_rate.fits``), ``asn_level3`` (image3 ASN of the
        ``<root>_cal.fits`` files), ``catalog_path`` (the scene on the sky, ECSV).
    """
    t0 = _time.perf_counter()
    cfg = (config or ExposureConfig()).with_overrides(**overrides)
    det, sub, patt, flt, exp_type, timing = _resolve(cfg)
    offsets = dither_offsets(dithers, dither_size, det.pixel_scale[0]) \
        if isinstance(dithers, int) else [tuple(map(float, d)) for d in dithers]
    if not offsets:
        raise ConfigError("an observation needs at least one dither position")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if scene is None and cfg.scene is None:
        from ..datamodels import Level1bModel
        from .detector import load_detector, reference_params
        from .exposure import _build_meta

        crds = crds_path or os.environ.get("CRDS_PATH")
        shell = Level1bModel()
        _build_meta(shell, cfg, det, sub, patt, flt, timing,
                    datetime.fromisoformat(cfg.date_obs), exp_type)
        if ensure_cache and crds:
            from .refs import make_crds_cache

            make_crds_cache(crds, detectors=[det.name], subarrays=[sub.name],
                            filters=[flt.filter if det.instrument != "NIRISS" else
                                     cfg.filter or I.default_filter(det.name)])
        model = load_detector(reference_params(shell.meta), det, sub, flt, crds)
        extra = max(math.hypot(dx, dy) for dx, dy in offsets)
        scene = _default_scene(cfg, det, sub, flt, model, timing, seed, radius_extra=extra)
    scene = scene or cfg.scene
    exposures: list[SimulatedExposure] = []
    start = _parse(cfg.date_obs)
    gap = 60.0  # seconds between exposures (slew and settle)
    carry = None  # persistence rate (DN/s) at the end of the previous exposure
    for k, off in enumerate(offsets):
        p0 = None
        if persistence and carry is not None:
            tau = float(np.load(exposures[-1].truth_path)["persistence_tau"])
            p0 = (carry * math.exp(-gap / tau)).astype(np.float32)
        ecfg = cfg.with_overrides(
            offset=off, exposure=k + 1, patt_num=k + 1, numdthpt=len(offsets),
            patttype=cfg.patttype if cfg.patttype != "NONE" else f"{len(offsets)}-POINT",
            scene=scene, persistence=p0 if p0 is not None else cfg.persistence,
            date_obs=(start + timedelta(seconds=k * (timing.nints * timing.int_duration + gap)))
            .isoformat(timespec="milliseconds"))
        exp = simulate_exposure(ecfg, crds_path=crds_path, output_dir=out,
                                seed=seed * 1000 + k + 1, ensure_cache=ensure_cache,
                                nthreads=nthreads, log=log)
        exposures.append(exp)
        if persistence:
            carry = _persistence_after(exp, timing, p0)
    product = (f"jw{int(cfg.program):05d}-o{cfg.observation:03d}_t001_{det.instrument.lower()}_"
               f"{_optical_elements(det, flt)}"
               + ("" if sub.name == "FULL" else f"-{sub.name.lower()}"))
    catalog = T.write_catalog(out / f"{product}_catalog.ecsv", _scene_columns(
        exposures[0].sources_path), {"filter": flt.filter, "pupil": flt.pupil})
    asn2 = asn3 = None
    if asn:
        stamp = cfg.date_obs
        l2 = _asn("image2", f"o{cfg.observation:03d}",
                  [Product(e.root, [Member(f"{e.root}_rate.fits", "science")]) for e in exposures],
                  cfg, "DMSLevel2bBase")
        asn2 = write_asn(l2, out / _asn_name(cfg, stamp, "image2"))
        l3 = _asn("image3", f"o{cfg.observation:03d}",
                  [Product(product, [Member(f"{e.root}_cal.fits", "science",
                                            {"exposerr": None,
                                             "asn_candidate": f"[('o{cfg.observation:03d}', "
                                                              "'observation')]"})
                                     for e in exposures])],
                  cfg, "candidate_Asn_Lv3Image")
        asn3 = write_asn(l3, out / _asn_name(cfg, stamp, "image3"))
    return SimulatedObservation(exposures, asn2, asn3, product, catalog, scene,
                                _time.perf_counter() - t0)


#: Persistence count rate (DN/s per unit trap density) of a pixel just after it saturated.
PERSISTENCE_RATE = 0.5


def _persistence_after(exp: SimulatedExposure, timing, p0):
    """Persistence rate map at the end of an exposure: fresh where it saturated, else decayed."""
    t = np.load(exp.truth_path)
    tau = float(t["persistence_tau"])
    duration = timing.nints * timing.int_duration
    rate = np.zeros(t["rate"].shape, np.float32) if p0 is None else \
        (p0 * math.exp(-duration / tau)).astype(np.float32)
    saturated = (t["sat_group"] >= 0).any(axis=0)
    density = np.ones(rate.shape, np.float32)
    ref = exp.references.get("trapdensity")
    if ref and ref != "N/A":
        from ..datamodels import open as dm_open
        from .detector import _cut

        m = dm_open(ref)
        density = _cut(m.data, m, I.subarray(exp.config.detector, exp.config.subarray),
                       "trapdensity")
    rate[saturated] = np.maximum(rate[saturated], PERSISTENCE_RATE * density[saturated])
    return rate


def _parse(date: str):
    return datetime.fromisoformat(str(date).replace("Z", ""))


def _scene_columns(sources_path: Path) -> dict:
    from astropy.table import Table

    t = Table.read(sources_path, format="ascii.ecsv")
    return {c: np.asarray(t[c]) for c in t.colnames}


_TSO_DEFAULTS = {
    "NIRCAM": dict(detector="NRCA1", subarray="SUB160", exp_type="NRC_TSIMAGE", ngroups=6),
    "NIRISS": dict(detector="NIS", subarray="SUBSTRIP256", exp_type="NIS_SOSS", filter="GR700XD",
                   ngroups=6),
    "NIRSPEC": dict(detector="NRS1", subarray="SUB2048", exp_type="NRS_BRIGHTOBJ", ngroups=6),
    "MIRI": dict(detector="MIRIMAGE", subarray="SUB64", exp_type="MIR_IMAGE", ngroups=10),
}


def simulate_time_series(config: ExposureConfig | None = None, *, instrument: str = "NIRCAM",
                         nints: int = 60, ints_per_segment: int | None = 20,
                         transit: dict | None = None, target_fraction: float = 0.4,
                         crds_path=None, output_dir=".", seed: int = 0, asn: bool = True,
                         ensure_cache: bool = False, nthreads: int | None = None, log=None,
                         **overrides) -> SimulatedObservation:
    """A time-series exposure (TSOVISIT=T) split into segments, with a transiting target.

    Parameters
    ----------
    instrument : str
        Picks the default mode when ``config`` is None: NIRCam NRC_TSIMAGE (SUB160), NIRISS
        SOSS (SUBSTRIP256, a spectral trace), NIRSpec BRIGHTOBJ (SUB2048, a trace), MIRI
        imaging TSO (SUB64).
    transit : dict, optional
        :func:`~jwpipe.simulate.scene.transit_lightcurve` parameters (``rp``, ``a``, ``inc``,
        ``u1``, ``u2``, ``period`` in days, ``t0`` in MJD). Default: centred on the exposure,
        lasting about 40% of it.
    target_fraction : float
        The target's peak pixel reaches this fraction of the well at the last group.

    Returns
    -------
    SimulatedObservation
        One exposure (``exposures[0]``, with ``uncal_paths`` per segment), the level-2
        (``tso-image2`` or ``tso-spec2``) and ``tso3`` associations.
    """
    t0_wall = _time.perf_counter()
    base = dict(_TSO_DEFAULTS[instrument.upper()])
    if config is None:
        config = ExposureConfig(**base)
    cfg = config.with_overrides(nints=int(nints), ints_per_segment=ints_per_segment,
                                tsovisit=True, **overrides)
    det, sub, patt, flt, exp_type, timing = _resolve(cfg)
    from .exposure import _mjd

    start_mjd = _mjd(_parse(cfg.date_obs))
    duration_d = timing.nints * timing.int_duration / 86400.0
    # Default: a transit centred on the exposure, lasting about 40% of it (period scaled to
    # suit, whatever the exposure's length; use period=... for a physical orbit).
    tp = {"rp": 0.1, "a": 12.0, "inc": 90.0, "u1": 0.35, "u2": 0.2,
          "t0": start_mjd + duration_d / 2}
    tp.update(transit or {})
    tp.setdefault("period", 0.4 * duration_d * math.pi * tp["a"])

    def lc(t, p=tp):
        return transit_lightcurve(t, p["t0"], p["period"], p["rp"], p["a"], p["inc"], p["u1"],
                                  p["u2"])

    if cfg.scene is None:
        from .scene import psf_sigma

        sigma = psf_sigma(flt.wavelength, det.pixel_scale[0])
        well = det.well * target_fraction
        if exp_type in ("NIS_SOSS", "NRS_BRIGHTOBJ"):
            rate_col = well / timing.t_last * (math.sqrt(2 * math.pi) * 1.5)
            prof = np.exp(-0.5 * ((np.arange(sub.xsize) - sub.xsize / 2) / (0.4 * sub.xsize)) ** 2)
            y0 = sub.ysize / 2.0 if exp_type == "NRS_BRIGHTOBJ" else 0.35 * sub.ysize
            curv = 0.0 if exp_type == "NRS_BRIGHTOBJ" else 2.0e-5
            scene = Scene(traces=[Trace(y0=y0, rate=rate_col * (0.3 + 0.7 * prof), sigma=1.5,
                                        curvature=curv, x_range=(4, sub.xsize - 4))],
                          background=cfg.background)
        else:
            peak = 1.0 / (2 * math.pi * sigma * sigma)
            rate = well / (timing.t_last * min(peak, 1.0))
            scene = Scene(stars=[PointSource(cfg.ra, cfg.dec, rate=rate, variable=True,
                                             name="target")], background=cfg.background)
        cfg = cfg.with_overrides(scene=scene)
    cfg = cfg.with_overrides(lightcurve=lc)
    exp = simulate_exposure(cfg, crds_path=crds_path, output_dir=output_dir, seed=seed,
                            ensure_cache=ensure_cache, nthreads=nthreads, log=log)
    out = Path(output_dir)
    product = (f"jw{int(cfg.program):05d}-o{cfg.observation:03d}_t001_{det.instrument.lower()}_"
               f"{_optical_elements(det, flt)}-{sub.name.lower()}")
    asn2 = asn3 = None
    if asn:
        spectro = exp_type in ("NIS_SOSS", "NRS_BRIGHTOBJ", "NRC_TSGRISM")
        l2_type = "tso-spec2" if spectro else "tso-image2"
        roots = [p.name[: -len("_uncal.fits")] for p in exp.uncal_paths]
        l2 = _asn(l2_type, f"o{cfg.observation:03d}",
                  [Product(r, [Member(f"{r}_rateints.fits", "science")]) for r in roots],
                  cfg, "DMSLevel2bBase")
        asn2 = write_asn(l2, out / _asn_name(cfg, cfg.date_obs, l2_type))
        l3 = _asn("tso3", f"o{cfg.observation:03d}",
                  [Product(product, [Member(f"{r}_calints.fits", "science") for r in roots])],
                  cfg, "candidate_Asn_Lv3TSO")
        asn3 = write_asn(l3, out / _asn_name(cfg, cfg.date_obs, "tso3"))
    return SimulatedObservation([exp], asn2, asn3, product, None, cfg.scene,
                                _time.perf_counter() - t0_wall, extra={"transit": tp})
