"""One raw exposure (``_uncal``) from a truth scene, with its truth files.

:class:`ExposureConfig` holds every choice (instrument mode, readout, pointing, scene, which
detector effects to apply, identifiers); :func:`simulate_exposure` builds the exposure's metadata,
finds its references in the cache, renders the scene, simulates the integrations one at a time and
writes ``<root>_uncal.fits`` (Level1bModel: SCI uint16 (nints, ngroups, ny, nx), GROUP and
INT_TIMES tables, optional ZEROFRAME), split into ``-segNNN`` files when asked, plus the truth
(:mod:`jwpipe.simulate.truth`).
"""

from __future__ import annotations

import math
import os
import time as _time
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from .. import dq
from ..errors import ConfigError, ReferenceNotFoundError
from . import instruments as I
from . import truth as T
from .detector import (
    CR_DTYPE,
    Timing,
    load_detector,
    make_cosmic_rays,
    reference_params,
    simulate_integration,
)
from .emi import emi_reads
from .picture_frame import picture_frame_reads
from .scene import Scene, random_scene, render
from .wcs import DetectorWCS, solve_pointing, v2v3_to_sky

__all__ = ["ExposureConfig", "SimulatedExposure", "simulate_exposure", "exposure_root",
           "int_times"]


@dataclass
class ExposureConfig:
    """Everything that defines a simulated exposure. Defaults give a NIRCam NRCA1 image.

    Instrument mode
        ``detector`` (instrument follows), ``subarray``, ``readpatt`` (default per instrument:
        RAPID, NISRAPID, NRSRAPID, FASTR1), ``ngroups``, ``nints``, ``exp_type``, ``filter``
        (the bandpass-defining element; NIRISS pupil-wheel filters by name).
    Pointing
        Target ``ra``/``dec`` (deg), ``roll`` (V3 position angle at the aperture reference,
        deg), dither ``offset`` (arcsec in the ideal frame: where the target lands relative to
        the aperture reference, the subarray centre), ``date_obs`` (ISO, UTC).
    Scene
        ``scene`` (a :class:`~jwpipe.simulate.scene.Scene`; None: a random field with
        ``star_density``/``galaxy_density`` sources per pixel), ``background`` (MJy/sr; None:
        the filter's typical sky), ``lightcurve`` (per-integration multiplier of the variable
        sources: array of ``nints`` values or a function of the integration mid time in MJD).
    Effects (all on by default)
        ``noise`` (Poisson, read noise, correlated noise), ``cosmic_rays`` (events/pixel/s),
        ``snowballs`` and ``showers`` (events/pixel/s; near-IR / MIRI), ``dark``,
        ``nonlinearity``, ``saturation``, ``ipc``, ``correlated`` (amplifier offsets, odd/even
        columns, 1/f noise), ``miri_effects`` (reset anomaly, RSCD, last frame),
        ``persistence`` (DN/s at exposure start, array of the exposure's shape, or None),
        ``zeroframe`` (write ZEROFRAME); off by default: ``emi`` (MIRI electronic pickup:
        ``{frequency name or Hz: (amplitude DN, phase)}``, see :mod:`jwpipe.simulate.emi`),
        ``picture_frame`` (NIRSpec full frame: DN the thermal glow along the frame's edges
        tends to, see :mod:`jwpipe.simulate.picture_frame`).
    Products
        ``ints_per_segment`` (split into ``-segNNN`` files), identifiers ``program``,
        ``observation``, ``visit``, ``visit_group``, ``sequence``, ``activity``, ``exposure``,
        ``tsovisit``, dither bookkeeping ``patt_num``/``numdthpt``/``patttype``, ``target_name``.
    """

    detector: str = "NRCA1"
    subarray: str = "FULL"
    readpatt: str | None = None
    ngroups: int = 10
    nints: int = 1
    exp_type: str | None = None
    filter: str | None = None
    ra: float = 80.5
    dec: float = -69.5
    roll: float = 0.0
    offset: tuple = (0.0, 0.0)
    date_obs: str = "2024-03-15T12:00:00"
    scene: Scene | None = None
    star_density: float = 1.0 / 4000.0
    galaxy_density: float = 1.0 / 8000.0
    background: float | None = None
    lightcurve: object = None
    noise: bool = True
    cosmic_rays: float = 5e-5
    snowballs: float = 1e-9
    showers: float = 2e-8
    dark: bool = True
    nonlinearity: bool = True
    saturation: bool = True
    ipc: bool = True
    correlated: bool = True
    miri_effects: bool = True
    persistence: object = None
    zeroframe: bool = False
    emi: dict | None = None
    picture_frame: float | None = None
    ints_per_segment: int | None = None
    program: str = "09999"
    observation: int = 1
    visit: int = 1
    visit_group: int = 1
    sequence: int = 1
    activity: int = 1
    exposure: int = 1
    tsovisit: bool = False
    patt_num: int = 1
    numdthpt: int = 1
    patttype: str = "NONE"
    target_name: str = "SYNTHETIC"

    @property
    def instrument(self) -> str:
        return I.instrument_of(self.detector)

    def with_overrides(self, **kw) -> "ExposureConfig":
        names = {f.name for f in fields(self)}
        bad = sorted(set(kw) - names)
        if bad:
            raise ConfigError(f"unknown exposure option(s) {', '.join(bad)}; known: "
                              f"{', '.join(sorted(names))}")
        return replace(self, **kw)


@dataclass
class SimulatedExposure:
    """What :func:`simulate_exposure` wrote, and the facts a caller needs about it."""

    root: str
    uncal_paths: list
    truth_paths: list
    sources_path: Path
    lightcurve_path: Path | None
    config: ExposureConfig
    references: dict
    pointing: object
    shape: tuple
    tframe: float
    tgroup: float
    elapsed: float
    n_cosmic_rays: int = 0
    segments: list = field(default_factory=list)

    @property
    def uncal_path(self) -> Path:
        return self.uncal_paths[0]

    @property
    def truth_path(self) -> Path:
        return self.truth_paths[0]


def exposure_root(cfg: ExposureConfig, segment: int | None = None) -> str:
    """``jw<ppppp><ooo><vvv>_<gg><s><aa>_<eeeee>[-segNNN]_<detector>`` (the DMS file name root)."""
    seg = f"-seg{segment:03d}" if segment is not None else ""
    return (f"jw{int(cfg.program):05d}{cfg.observation:03d}{cfg.visit:03d}_{cfg.visit_group:02d}"
            f"{cfg.sequence:1d}{cfg.activity:02d}_{cfg.exposure:05d}{seg}_{cfg.detector.lower()}")


# -- time ---------------------------------------------------------------------------------------

_MJD0 = datetime(1858, 11, 17)


def _mjd(dt: datetime) -> float:
    return (dt - _MJD0).total_seconds() / 86400.0


def _from_mjd(mjd: float) -> datetime:
    return _MJD0 + timedelta(days=float(mjd))


def _bjd_tdb(mjd_utc, ra, dec):
    """Approximate BJD_TDB: UTC->TT (69.184 s) plus the Roemer delay of a circular Earth orbit.

    Good to a few seconds; the simulator needs consistent, plausible times, not an ephemeris.
    """
    mjd = np.asarray(mjd_utc, float)
    d = mjd - 51544.5
    g = np.deg2rad(357.529 + 0.98560028 * d)
    lam = np.deg2rad(280.459 + 0.98564736 * d + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.deg2rad(23.439)
    r = 1.00014 - 0.01671 * np.cos(g)
    # Earth relative to the Sun is opposite to the Sun's direction from Earth.
    ex, ey, ez = -r * np.cos(lam), -r * np.sin(lam) * np.cos(eps), -r * np.sin(lam) * np.sin(eps)
    a, b = np.deg2rad(ra), np.deg2rad(dec)
    n = (np.cos(b) * np.cos(a), np.cos(b) * np.sin(a), np.sin(b))
    delay = 499.004784 * (ex * n[0] + ey * n[1] + ez * n[2])  # s
    return mjd + 2400000.5 + (69.184 + delay) / 86400.0


def int_times(timing: Timing, start_mjd: float, ra: float, dec: float, first: int = 1,
              count: int | None = None) -> np.ndarray:
    """The INT_TIMES table rows of integrations ``first .. first + count - 1`` (1-based)."""
    count = timing.nints if count is None else count
    i = np.arange(first - 1, first - 1 + count)
    start = start_mjd + i * timing.int_duration / 86400.0
    end = start + timing.t_last / 86400.0
    mid = 0.5 * (start + end)
    table = np.zeros(count, dtype=[("integration_number", ">i4"), ("int_start_MJD_UTC", ">f8"),
                                   ("int_mid_MJD_UTC", ">f8"), ("int_end_MJD_UTC", ">f8"),
                                   ("int_start_BJD_TDB", ">f8"), ("int_mid_BJD_TDB", ">f8"),
                                   ("int_end_BJD_TDB", ">f8")])
    table["integration_number"] = i + 1
    table["int_start_MJD_UTC"] = start
    table["int_mid_MJD_UTC"] = mid
    table["int_end_MJD_UTC"] = end
    table["int_start_BJD_TDB"] = _bjd_tdb(start, ra, dec)
    table["int_mid_BJD_TDB"] = _bjd_tdb(mid, ra, dec)
    table["int_end_BJD_TDB"] = _bjd_tdb(end, ra, dec)
    return table


def _group_table(timing: Timing, start_mjd: float, ints, ny: int, nx: int, ra, dec) -> np.ndarray:
    ng = timing.ngroups
    rows = len(ints) * ng
    table = np.zeros(rows, dtype=[
        ("integration_number", ">i4"), ("group_number", ">i2"), ("end_day", ">i2"),
        ("end_milliseconds", ">i4"), ("end_submilliseconds", ">i2"), ("group_end_time", "S26"),
        ("number_of_columns", ">i2"), ("number_of_rows", ">i2"), ("number_of_gaps", ">i2"),
        ("completion_code_number", ">i2"), ("completion_code_text", "S36"),
        ("bary_end_time", ">f8"), ("helio_end_time", ">f8")])
    last_read = timing.read_times.reshape(ng, timing.nframes)[:, -1]
    k = 0
    for i in ints:
        t0 = start_mjd + (i - 1) * timing.int_duration / 86400.0
        for g in range(ng):
            mjd = t0 + last_read[g] / 86400.0
            dt = _from_mjd(mjd)
            day0 = datetime(dt.year, dt.month, dt.day)
            ms = (dt - day0).total_seconds() * 1000.0
            table[k] = (i, g + 1, int(mjd - 51544), int(ms), int(round((ms % 1) * 1000)) % 1000,
                        dt.strftime("%Y-%m-%dT%H:%M:%S.%f"), nx, ny, 0, 0, "Normal Completion",
                        _bjd_tdb(mjd, ra, dec) - 2400000.5, mjd)
            k += 1
    return table


# -- metadata -------------------------------------------------------------------------------------

def _build_meta(m, cfg: ExposureConfig, det, sub, patt, flt, timing: Timing, start: datetime,
                exp_type: str):
    meta = m.meta
    start_mjd = _mjd(start)
    duration = timing.nints * timing.int_duration
    meta.telescope = "JWST"
    meta.origin = "jwpipe"
    meta.time_sys = "UTC"
    meta.filetype = "uncalibrated"
    o = meta.observation
    o.date = start.strftime("%Y-%m-%d")
    o.time = start.strftime("%H:%M:%S.%f")[:12]
    o.date_beg = start.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]
    o.date_end = _from_mjd(start_mjd + duration / 86400.0).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]
    prog = f"{int(cfg.program):05d}"
    o.program_number = prog
    o.observation_number = f"{cfg.observation:03d}"
    o.visit_number = f"{cfg.visit:03d}"
    o.visit_group = f"{cfg.visit_group:02d}"
    o.sequence_id = f"{cfg.sequence:d}"
    o.activity_id = f"{cfg.activity:02d}"
    o.exposure_number = f"{cfg.exposure:05d}"
    o.visit_id = f"{prog}{cfg.observation:03d}{cfg.visit:03d}"
    o.obs_id = (f"V{prog}{cfg.observation:03d}{cfg.visit:03d}P00000000{cfg.visit_group:02d}"
                f"{cfg.sequence:d}{cfg.activity:02d}")
    o.template = "Synthetic"
    meta.program.title = "jwpipe synthetic observation"
    meta.program.pi_name = "jwpipe"
    meta.program.category = "CAL"
    meta.visit.type = "PRIME_TARGETED_FIXED"
    meta.visit.tsovisit = bool(cfg.tsovisit)
    meta.visit.crowded_field = False
    t = meta.target
    t.proposer_name = cfg.target_name
    t.catalog_name = cfg.target_name
    t.type = "FIXED"
    t.ra = float(cfg.ra)
    t.dec = float(cfg.dec)
    t.source_type_apt = "POINT" if cfg.tsovisit else "EXTENDED"
    ins = meta.instrument
    ins.name = det.instrument
    ins.detector = det.name
    if det.instrument == "NIRCAM":
        ins.module = det.module
        ins.channel = det.channel
        ins.filter = flt.filter
        ins.pupil = flt.pupil
    elif det.instrument == "NIRISS":
        ins.filter = flt.filter
        ins.pupil = flt.pupil
    elif det.instrument == "NIRSPEC":
        ins.filter = flt.filter
        ins.grating = "PRISM"
        ins.fixed_slit = "S200A1" if exp_type in ("NRS_FIXEDSLIT",) else "S1600A1"
    else:
        ins.filter = flt.filter
    e = meta.exposure
    e.type = exp_type
    e.readpatt = patt.name
    e.noutputs = sub.noutputs
    e.nints = timing.nints
    e.ngroups = timing.ngroups
    e.nframes = timing.nframes
    e.groupgap = timing.groupgap
    e.frame_divisor = timing.nframes
    e.drop_frames1 = 0
    e.drop_frames3 = 0
    e.nsamples = 1  # clocks per pixel read (MIRI FAST; MIRI SLOW would be 9)
    e.sample_time = 10.0
    e.frame_time = timing.tframe
    e.group_time = timing.tgroup
    e.integration_time = timing.effinttm
    e.exposure_time = timing.effinttm * timing.nints
    e.measurement_time = timing.effinttm * timing.nints
    e.duration = duration
    e.nresets_at_start = 1
    e.nresets_between_ints = timing.nresets
    e.zero_frame = bool(cfg.zeroframe)
    e.data_problem = False
    e.count = cfg.exposure
    e.pointing_sequence = 1
    e.start_time = start_mjd
    e.mid_time = start_mjd + duration / 2 / 86400.0
    e.end_time = start_mjd + duration / 86400.0
    e.start_time_mjd = e.start_time
    e.mid_time_mjd = e.mid_time
    e.end_time_mjd = e.end_time
    e.effective_exposure_time = timing.effinttm * timing.nints
    e.elapsed_exposure_time = duration
    e.primary_cosmic_rays = 0.0
    s = meta.subarray
    s.name = sub.name
    s.xstart = sub.xstart
    s.ystart = sub.ystart
    s.xsize = sub.xsize
    s.ysize = sub.ysize
    s.fastaxis = det.fastaxis
    s.slowaxis = det.slowaxis
    meta.aperture.name = f"{det.name}_{sub.name}" if det.name != "MIRIMAGE" else \
        f"MIRIM_{'FULL' if sub.name == 'FULL' else sub.name}"
    meta.aperture.pps_name = meta.aperture.name
    d = meta.dither
    d.primary_type = cfg.patttype
    d.position_number = cfg.patt_num
    d.total_points = cfg.numdthpt
    d.x_offset = float(cfg.offset[0])
    d.y_offset = float(cfg.offset[1])
    meta.bunit_data = "DN"


def _wcs_meta(m, wcs: DetectorWCS, det):
    p = wcs.pointing
    w = m.meta.wcsinfo
    w.ra_ref, w.dec_ref, w.roll_ref = p.ra_ref, p.dec_ref, p.roll_ref
    w.v2_ref, w.v3_ref = p.v2_ref, p.v3_ref
    w.vparity, w.v3yangle = p.vparity, p.v3_yangle
    w.siaf_xref_sci, w.siaf_yref_sci = p.xref_sci, p.yref_sci
    for k, v in wcs.fits_keywords().items():
        setattr(w, k, v)
    ra1, dec1 = v2v3_to_sky(0.0, 0.0, p.ra_ref, p.dec_ref, p.roll_ref, p.v2_ref, p.v3_ref)
    ra2, dec2 = v2v3_to_sky(0.0, 60.0, p.ra_ref, p.dec_ref, p.roll_ref, p.v2_ref, p.v3_ref)
    pa = math.degrees(math.atan2((float(ra2) - float(ra1)) * math.cos(math.radians(float(dec1))),
                                 float(dec2) - float(dec1))) % 360.0
    m.meta.pointing.ra_v1 = float(ra1)
    m.meta.pointing.dec_v1 = float(dec1)
    m.meta.pointing.pa_v3 = pa
    m.meta.aperture.position_angle = (p.roll_ref + p.vparity * 0.0 + p.v3_yangle) % 360.0


# -- the exposure -------------------------------------------------------------------------------

def _resolve(cfg: ExposureConfig):
    det = I.detector(cfg.detector)
    sub = I.subarray(det, cfg.subarray)
    patt = I.readpattern(det.instrument, cfg.readpatt)
    flt = I.filter_info(det, cfg.filter)
    exp_type = cfg.exp_type or I.default_exp_type(det.instrument)
    if exp_type not in I.EXP_TYPES[det.instrument] and exp_type not in ("NIS_SOSS",):
        raise ConfigError(f"EXP_TYPE {exp_type!r} is not simulated for {det.instrument}")
    if cfg.ngroups < 1 or cfg.nints < 1:
        raise ConfigError("ngroups and nints must be at least 1")
    timing = Timing(I.frame_time(det, sub), patt.nframes, patt.groupgap, int(cfg.ngroups),
                    int(cfg.nints), 1, det.is_miri)
    return det, sub, patt, flt, exp_type, timing


def _default_scene(cfg, det, sub, flt, model, timing, seed, radius_extra=0.0, center=None):
    """A random field covering the exposure (and ``radius_extra`` arcsec around it)."""
    from .scene import psf_sigma

    sx, sy = det.pixel_scale
    radius = 0.5 * math.hypot(sub.xsize * sx, sub.ysize * sy) + 12 * sx + radius_extra
    npix_area = math.pi * (radius / sx) * (radius / sy)
    conv = (model.photmjsr or flt.photmjsr) * model.pixar_sr * 1e6
    sigma = psf_sigma(flt.wavelength, sx)
    peak = 1.0 / (2 * math.pi * sigma * sigma)
    well = float(np.nanmedian(model.well))
    sat_rate = well / (max(timing.t_last, 1e-3) * min(peak, 1.0))
    hi = 4.0 * sat_rate * conv
    lo = hi / 3000.0
    ra, dec = center if center is not None else (cfg.ra, cfg.dec)
    return random_scene(ra, dec, radius, n_stars=int(round(cfg.star_density * npix_area)),
                        n_galaxies=int(round(cfg.galaxy_density * npix_area)),
                        flux_range=(lo, hi), seed=seed, background=cfg.background)


def _lightcurve(cfg, times) -> np.ndarray:
    n = len(times)
    if cfg.lightcurve is None:
        return np.ones(n)
    if callable(cfg.lightcurve):
        return np.asarray(cfg.lightcurve(np.asarray(times["int_mid_MJD_UTC"])), float)
    lc = np.asarray(cfg.lightcurve, float)
    if lc.shape != (cfg.nints,):
        raise ConfigError(f"lightcurve has {lc.size} values; the exposure has {cfg.nints} "
                          "integrations")
    return lc


def _dark_offsets(model, timing, index):
    """Non-linear-in-time part of the dark reference (e.g. the MIRI first-integration transient)."""
    dark = model.dark_frames
    if dark is None or dark.linear[min(index, dark.nint - 1)]:
        return None
    f = timing.read_frames
    plane = dark.planes(index, f)
    fi = np.minimum(f, dark.nframes - 1)
    resid = plane - model.dark_rate[None] * (fi[:, None, None] * np.float32(timing.tframe))
    return np.nan_to_num(resid).astype(np.float32)


def _persistence_offsets(p0, tau, timing, index):
    t_s = index * timing.int_duration
    t = timing.read_times
    k = (tau * math.exp(-t_s / tau) * (1 - np.exp(-t / tau))).astype(np.float32)
    return k[:, None, None] * p0[None]


def simulate_exposure(config: ExposureConfig | None = None, *, crds_path=None,
                      output_dir=".", seed: int = 0, references: dict | None = None,
                      ensure_cache: bool = False, nthreads: int | None = None,
                      log=None, **overrides) -> SimulatedExposure:
    """Simulate one raw exposure and write it with its truth.

    Parameters
    ----------
    config : ExposureConfig, optional
        The exposure (defaults: NIRCam NRCA1 full frame, RAPID, 10 groups, 1 integration);
        keyword ``overrides`` replace fields (``simulate_exposure(subarray="SUB160", nints=3)``).
    crds_path : str or Path, optional
        Local CRDS cache holding the references (default: ``$CRDS_PATH``).
    output_dir : str or Path
        Where ``<root>_uncal.fits``, ``<root>_truth.npz``, ``<root>_sources.ecsv`` go.
    seed : int
        Seed of everything random in the exposure (scene, noise, cosmic rays).
    references : dict, optional
        ``{reftype: path}`` to use instead of the cache's selection.
    ensure_cache : bool
        Write the references this exposure needs into the cache if they are missing.
    nthreads : int, optional
        Threads for the compiled kernels (default: all CPUs). Results do not depend on it.

    Returns
    -------
    SimulatedExposure
    """
    t_start = _time.perf_counter()
    cfg = (config or ExposureConfig()).with_overrides(**overrides)
    det, sub, patt, flt, exp_type, timing = _resolve(cfg)
    nthreads = nthreads or os.cpu_count() or 1
    if cfg.emi and not det.is_miri:
        raise ConfigError(f"emi: EMI is simulated for MIRI only, not {det.name}")
    if cfg.picture_frame and (det.instrument != "NIRSPEC" or sub.name != "FULL"):
        raise ConfigError(f"picture_frame: the thermal picture frame is simulated for NIRSpec "
                          f"full frames only, not {det.name} {sub.name}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if crds_path is None:
        crds_path = os.environ.get("CRDS_PATH")
    if crds_path is None and not references:
        raise ConfigError("no CRDS cache: pass crds_path=..., set CRDS_PATH, or give references")
    from ..datamodels import Level1bModel

    start = datetime.fromisoformat(str(cfg.date_obs).replace("Z", ""))
    shell = Level1bModel()
    _build_meta(shell, cfg, det, sub, patt, flt, timing, start, exp_type)
    params = reference_params(shell.meta)
    try:
        model = load_detector(params, det, sub, flt, crds_path, references)
    except ReferenceNotFoundError:
        if not ensure_cache or crds_path is None:
            raise
        from .refs import make_crds_cache

        make_crds_cache(crds_path, detectors=[det.name], subarrays=[sub.name],
                        filters=[cfg.filter or I.default_filter(det.name)], seed=0)
        model = load_detector(params, det, sub, flt, crds_path, references)
    if not cfg.dark:
        model.dark_rate = np.zeros_like(model.dark_rate)
        model.dark_frames = None
    elif model.dark_frames is not None and model.dark_frames.nframes <= timing.read_frames[-1]:
        import warnings

        warnings.warn(
            f"the dark reference {model.references.get('dark')} has "
            f"{model.dark_frames.nframes} frames, this exposure reads up to frame "
            f"{timing.read_frames[-1] + 1}: the simulation extrapolates it, but a pipeline "
            "may skip dark subtraction; write a longer dark with "
            "make_crds_cache(..., dark_frames=N, overwrite=True)", stacklevel=2)

    pointing = solve_pointing(det, sub, model.distortion, cfg.ra, cfg.dec, cfg.roll, cfg.offset)
    wcs = DetectorWCS(model.distortion, sub, pointing)
    _wcs_meta(shell, wcs, det)

    scene = cfg.scene
    if scene is None:
        scene = _default_scene(cfg, det, sub, flt, model, timing, seed)
    photmjsr = model.photmjsr or flt.photmjsr
    static, variable, sources = render(
        scene, wcs, sub.shape, qe=model.qe, area=model.area, photmjsr=photmjsr,
        pixar_sr=model.pixar_sr, wavelength=flt.wavelength, pixel_scale=det.pixel_scale[0],
        background_default=flt.background)

    times = int_times(timing, _mjd(start), cfg.ra, cfg.dec)
    lc = _lightcurve(cfg, times)
    p0 = None
    # The glow is the same in every integration (it restarts at each reset).
    glow = (picture_frame_reads(cfg.picture_frame, timing.read_times, sub.shape)
            if cfg.picture_frame else None)
    if cfg.persistence is not None:
        p0 = np.broadcast_to(np.asarray(cfg.persistence, np.float32), sub.shape).copy()
        p0[model.refpix] = 0.0

    seg = cfg.ints_per_segment or cfg.nints
    nseg = int(math.ceil(cfg.nints / seg))
    segments = [(k + 1, k * seg + 1, min((k + 1) * seg, cfg.nints)) for k in range(nseg)]
    root0 = exposure_root(cfg)
    rng_cr = np.random.default_rng([int(seed) & 0xFFFFFFFF, 3])
    mask_dnu = (model.mask_dq & dq.DO_NOT_USE) != 0
    stars = _stars_truth(sources)
    uncal_paths, truth_paths = [], []
    prev_last = None
    n_crs = 0
    event = 0
    for segnum, i0, i1 in segments:
        nseg_ints = i1 - i0 + 1
        data = np.empty((nseg_ints, timing.ngroups) + sub.shape, np.uint16)
        zf = np.empty((nseg_ints,) + sub.shape, np.uint16) if cfg.zeroframe else None
        sat = np.empty((nseg_ints,) + sub.shape, np.int16)
        satm = np.empty_like(sat)
        crs_rows = []
        for j, i in enumerate(range(i0 - 1, i1)):
            rate_i = static + np.float32(lc[i]) * variable if variable.any() else static
            offsets = _dark_offsets(model, timing, i)
            if p0 is not None:
                po = _persistence_offsets(p0, model.trap_tau, timing, i)
                offsets = po if offsets is None else offsets + po
            if glow is not None:
                offsets = glow if offsets is None else offsets + glow
            crs = None
            if cfg.cosmic_rays or cfg.snowballs or cfg.showers:
                crs = make_cosmic_rays(rng_cr, model, timing, cfg.cosmic_rays,
                                       cfg.snowballs, cfg.showers, first_event=event)
                if len(crs):
                    event = int(crs.event.max()) + 1
            res = simulate_integration(
                model, timing, rate_i, index=i, seed=seed, crs=crs, offsets=offsets,
                noise=cfg.noise, correlated=cfg.correlated, nonlinearity=cfg.nonlinearity,
                ipc=cfg.ipc, saturation=cfg.saturation, miri_effects=cfg.miri_effects,
                prev_last=prev_last, zeroframe=cfg.zeroframe, nthreads=nthreads,
                emi=None if not cfg.emi else emi_reads(
                    cfg.emi, sub.name, patt.name, timing.ngroups, sub.ysize, sub.xsize, i))
            data[j] = res.data
            if zf is not None:
                zf[j] = res.zeroframe
            sat[j] = res.sat_group
            satm[j] = res.sat_margin_group
            prev_last = res.last_signal
            if crs is not None and len(crs):
                rows = np.zeros(len(crs), dtype=CR_DTYPE)
                rows["int"] = j
                read_groups = np.repeat(np.arange(timing.ngroups), timing.nframes)
                rows["group"] = read_groups[crs.read]
                rows["frame"] = timing.read_frames[crs.read]
                rows["y"], rows["x"] = crs.y, crs.x
                rows["amp"] = crs.amp_e / model.gain[crs.y, crs.x]
                rows["event"], rows["kind"] = crs.event, crs.kind
                crs_rows.append(rows)
            if log is not None:
                log(f"integration {i + 1}/{cfg.nints} done")
        crs_table = np.concatenate(crs_rows) if crs_rows else np.zeros(0, dtype=CR_DTYPE)
        n_crs += len(crs_table)
        root = exposure_root(cfg, segnum if nseg > 1 else None)
        m = Level1bModel(shell)  # a copy of the metadata
        m.meta.exposure.integration_start = i0
        m.meta.exposure.integration_end = i1
        m.meta.exposure.segment_number = segnum
        m.meta.exposure.total_segments = nseg
        m.data = data
        if zf is not None:
            m.zeroframe = zf
        m.group = _group_table(timing, _mjd(start), range(i0, i1 + 1), sub.ysize, sub.xsize,
                               cfg.ra, cfg.dec)
        m.int_times = times
        path = m.save(out / f"{root}_uncal.fits")
        uncal_paths.append(path)
        tr = {
            "rate": (static + variable).astype(np.float32), "rate_variable": variable,
            "lc": lc[i0 - 1:i1].astype(np.float64), "crs": crs_table,
            "sat_group": sat, "sat_margin_group": satm, "refpix": model.refpix,
            "donotuse": mask_dnu, "flags": model.mask_dq, "dark_rate": model.dark_rate,
            "bias": model.bias, "qe": model.qe, "area": model.area, "gain": model.gain,
            "rn_cds": model.rn_cds,
            "persistence": p0 if p0 is not None else np.zeros(sub.shape, np.float32),
            "stars": stars, "read_times": timing.read_times.astype(np.float64),
            "group_times": timing.read_times.reshape(timing.ngroups, timing.nframes).mean(axis=1),
            "int_start_mjd": times["int_start_MJD_UTC"][i0 - 1:i1].astype(float),
            "int_mid_mjd": times["int_mid_MJD_UTC"][i0 - 1:i1].astype(float),
            "int_end_mjd": times["int_end_MJD_UTC"][i0 - 1:i1].astype(float),
            "tframe": np.float64(timing.tframe), "tgroup": np.float64(timing.tgroup),
            "t_int": np.float64(timing.t_last), "ngroups": np.int64(timing.ngroups),
            "nints": np.int64(nseg_ints), "nframes": np.int64(timing.nframes),
            "groupgap": np.int64(timing.groupgap), "intstart": np.int64(i0),
            "xstart": np.int64(sub.xstart), "ystart": np.int64(sub.ystart),
            "photmjsr": np.float64(photmjsr), "pixar_sr": np.float64(model.pixar_sr),
            "persistence_tau": np.float64(model.trap_tau), "seed": np.int64(seed),
        }
        truth_paths.append(T.write_truth(out / f"{root}_truth.npz", tr))
        if log is not None:
            log(f"wrote {path.name}")

    meta = {"photmjsr": float(photmjsr), "pixar_sr": float(model.pixar_sr),
            "filter": flt.filter, "pupil": flt.pupil, "detector": det.name,
            "ra_ref": pointing.ra_ref, "dec_ref": pointing.dec_ref}
    sources_path = T.write_sources(out / f"{root0}_sources.ecsv", sources, meta)
    lc_path = None
    if cfg.lightcurve is not None or cfg.tsovisit or bool(variable.any()):
        lc_path = T.write_lightcurve(out / f"{root0}_lightcurve.ecsv",
                                     times["integration_number"], times["int_mid_MJD_UTC"],
                                     times["int_mid_BJD_TDB"], lc)
    return SimulatedExposure(
        root=root0, uncal_paths=uncal_paths, truth_paths=truth_paths, sources_path=sources_path,
        lightcurve_path=lc_path, config=cfg, references=model.references, pointing=pointing,
        shape=(cfg.nints, timing.ngroups) + sub.shape, tframe=timing.tframe, tgroup=timing.tgroup,
        elapsed=_time.perf_counter() - t_start, n_cosmic_rays=n_crs, segments=segments)


def _stars_truth(sources: dict) -> np.ndarray:
    kind = np.asarray(sources.get("kind", []))
    sel = kind == "star"
    out = np.zeros(int(sel.sum()), dtype=[("y", "<f8"), ("x", "<f8"), ("rate", "<f8"),
                                          ("sigma", "<f8")])
    if sel.any():
        out["y"] = np.asarray(sources["y"])[sel]
        out["x"] = np.asarray(sources["x"])[sel]
        out["rate"] = np.asarray(sources["rate_on_detector"])[sel]
        out["sigma"] = np.asarray(sources["psf_sigma"])[sel]
    return out
