"""The detector: its properties read back from the reference files, and one integration's physics.

:func:`load_detector` selects the references of an exposure in a local CRDS cache (or takes them
from ``references={reftype: path}``) and turns them into the arrays the simulation needs, cut to the
exposure's subarray. The simulated detector is therefore exactly the one the pipeline calibrates
with: the dark reference's slope is the dark current, the linearity polynomial is inverted (for
MIRI, which has no superbias step, about the pedestal it is applied to: see
:func:`ramp_coefficients`), the
saturation threshold sits at :data:`~jwpipe.simulate.refs.SAT_FRACTION` of the hard well above the
superbias, the IPC reference's deconvolution kernel is inverted to first order, and the flat divided
by the pixel-area map is the quantum efficiency.

:func:`simulate_integration` runs one integration in the order the effects happen: charge from the
scene, dark current and cosmic rays accumulates frame by frame with Poisson noise (compiled kernel
``jwpipe._ext._simulate.sim_ramp``: NFRAMES averaging, GROUPGAP dropped frames, persistence and dark
transients as deterministic extra charge), the pixel's non-linear response and hard saturation,
inter-pixel capacitance, MIRI reset anomaly / RSCD / last-frame offsets, then the readout
(``sim_readout``): bias, per-amplifier odd/even-column offset drifts, 1/f noise along the fast
readout lines, white read noise, rounding to uint16.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import dq
from ..errors import ReferenceFileError, ReferenceNotFoundError
from ..references import find_reference, selection_parameters
from . import instruments as I
from . import refs as R
from .crdsmaps import RmapSpec, read_context

__all__ = ["Timing", "DetectorModel", "load_detector", "CosmicRays", "make_cosmic_rays",
           "simulate_integration", "IntegrationResult", "reference_params", "ramp_coefficients",
           "linearized_pedestal", "shift_polynomial"]

#: Mean charge per read interval (electrons) below which Poisson draws are exact; above it a
#: rounded Gaussian of the same mean and variance (skewness < 0.1) is used.
POISSON_EXACT_BELOW = 100.0

#: Reference types an exposure reads (others are optional or N/A).
SIM_REFTYPES = ("mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise",
                "ipc", "flat", "area", "photom", "distortion", "reset", "rscd", "trapdensity",
                "trappars", "persat")
REQUIRED = ("mask", "saturation", "linearity", "dark", "gain", "readnoise")
#: Required too when the cache's instrument mapping has a rule file for them (not 'N/A').
REQUIRED_IF_MAPPED = ("superbias", "ipc", "flat", "area", "photom", "distortion", "reset", "rscd")


@dataclass(frozen=True)
class Timing:
    """Readout timing of one exposure."""

    tframe: float
    nframes: int
    groupgap: int
    ngroups: int
    nints: int
    nresets: int = 1
    miri: bool = False

    @property
    def tgroup(self) -> float:
        return (self.nframes + self.groupgap) * self.tframe

    @property
    def read_frames(self) -> np.ndarray:
        """Frame index (0-based, within the integration) of every read frame."""
        g = np.arange(self.ngroups)[:, None] * (self.nframes + self.groupgap)
        return (g + np.arange(self.nframes)[None, :]).ravel()

    @property
    def read_times(self) -> np.ndarray:
        """Seconds from the end of the reset to each read."""
        return (self.read_frames + 1) * self.tframe

    @property
    def frames_per_int(self) -> int:
        return self.ngroups * (self.nframes + self.groupgap) - self.groupgap + self.nresets

    @property
    def int_duration(self) -> float:
        return self.frames_per_int * self.tframe

    @property
    def effinttm(self) -> float:
        return (self.ngroups if self.miri else self.ngroups - 1) * self.tgroup

    @property
    def t_last(self) -> float:
        return float(self.read_times[-1])

    def schedule(self):
        """(dt, group, weight) arrays for the ramp kernel."""
        t = self.read_times
        dt = np.diff(np.concatenate([[0.0], t])).astype(np.float64)
        group = np.repeat(np.arange(self.ngroups, dtype=np.int32), self.nframes)
        weight = np.full(t.size, 1.0 / self.nframes, np.float32)
        return dt, group, weight


@dataclass
class DetectorModel:
    """Arrays (subarray frame, float32 unless noted) describing the simulated detector."""

    det: I.Detector
    sub: I.Subarray
    gain: np.ndarray
    rn_cds: np.ndarray
    bias: np.ndarray
    well: np.ndarray
    sat_threshold: np.ndarray
    coeffs: np.ndarray | None
    dark_rate: np.ndarray
    dark_frames: "DarkReader | None"  # the dark reference (mean dark, group 0 subtracted)
    ipc_forward: np.ndarray | None
    qe: np.ndarray
    area: np.ndarray
    refpix: np.ndarray  # bool
    mask_dq: np.ndarray  # uint32
    photmjsr: float | None
    pixar_sr: float
    distortion: object
    reset: np.ndarray | None = None
    rscd_skip: tuple[int, int] = (1, 3)
    trapdensity: np.ndarray | None = None
    trap_tau: float = 300.0
    references: dict = field(default_factory=dict)
    ipc_kernel: np.ndarray | None = None  # the IPC reference's (deconvolution) kernel, 2-D
    _ramp_coeffs: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.sub.shape


#: CRDS selection parameters (``{"META.X.Y": value}``) of an exposure's metadata.
reference_params = selection_parameters


# -- reading references -------------------------------------------------------------------------

def _corner(model) -> tuple[int, int]:
    """1-based full-frame corner (SUBSTRT1, SUBSTRT2) of a reference file's arrays."""
    m = model.meta.subarray
    return int(m.xstart or 1), int(m.ystart or 1)


def _cut(array, model, sub: I.Subarray, name: str) -> np.ndarray:
    a = np.asarray(array)
    ny, nx = a.shape[-2:]
    if (ny, nx) == sub.shape:
        return np.ascontiguousarray(a)
    x0, y0 = _corner(model)
    ys, xs = sub.ystart - y0, sub.xstart - x0
    if ys < 0 or xs < 0 or ys + sub.ysize > ny or xs + sub.xsize > nx:
        raise ReferenceFileError(
            f"{model.path}: {name} reference ({nx}x{ny} at {x0},{y0}) does not contain subarray "
            f"{sub.name} ({sub.xsize}x{sub.ysize} at {sub.xstart},{sub.ystart})")
    return np.ascontiguousarray(a[..., ys:ys + sub.ysize, xs:xs + sub.xsize])


class DarkReader:
    """Planes of a dark reference (3-D near-IR or 4-D MIRI), read lazily and cut to a subarray."""

    def __init__(self, model, sub: I.Subarray):
        self.model = model
        arr = model.lazy("data")
        self._arr = arr
        shape = tuple(arr.shape)
        self._four = len(shape) == 4
        self.nint = shape[0] if self._four else 1
        self.nframes = shape[-3]
        ny, nx = shape[-2:]
        if (ny, nx) == sub.shape:
            ys = xs = 0
        else:
            x0, y0 = _corner(model)
            ys, xs = sub.ystart - y0, sub.xstart - x0
            if ys < 0 or xs < 0 or ys + sub.ysize > ny or xs + sub.xsize > nx:
                raise ReferenceFileError(f"{model.path}: dark reference does not contain "
                                         f"subarray {sub.name}")
        self._win = (slice(ys, ys + sub.ysize), slice(xs, xs + sub.xsize))
        self.linear = [True] * self.nint

    def planes(self, integration: int, frames) -> np.ndarray:
        """Mean dark (DN) at the given frame indices of reference integration ``integration``."""
        frames = np.minimum(np.asarray(frames, int), self.nframes - 1)
        key = ((min(integration, self.nint - 1),) if self._four else ()) + (frames,) + self._win
        arr = self._arr
        out = arr.read(key, np.dtype(np.float32)) if hasattr(arr, "read") else np.asarray(arr)[key]
        return np.nan_to_num(np.asarray(out, np.float32))

    def check_linear(self, rate: np.ndarray, tframe: float) -> None:
        """Whether each reference integration is rate * frame * tframe (no transients)."""
        mid = self.nframes // 2
        for i in range(self.nint):
            p = self.planes(i, [mid])[0]
            resid = p - rate * (mid * tframe)
            self.linear[i] = bool(np.abs(resid).max(initial=0.0) < 0.01)


def _find(reftype, params, ctx, root, references):
    """The override in ``references``, else the cache's choice (:func:`find_reference` in the
    cache's current context): a Path, ``"N/A"``, or None when the cache has no matching rule."""
    if references and reftype in references:
        value = references[reftype]
        return "N/A" if str(value).upper() == "N/A" else Path(value)
    if ctx is None or ctx.pmap is None:
        return None
    try:
        found = find_reference(reftype, params, crds_path=root, context=ctx.pmap,
                               require_file=False)
    except ReferenceNotFoundError:
        return None
    return "N/A" if found == "N/A" else Path(found)


def load_detector(params: dict, det: I.Detector, sub: I.Subarray, flt: I.Filter | None,
                  crds_path=None, references: dict | None = None) -> DetectorModel:
    """Read the references of an exposure and build its :class:`DetectorModel`.

    Parameters
    ----------
    params : dict
        CRDS selection parameters of the exposure (see :func:`reference_params`).
    crds_path : Path, optional
        Local CRDS cache. References not given in ``references`` are selected there.
    references : dict, optional
        ``{reftype: path or "N/A"}`` overrides.

    Raises
    ------
    ReferenceNotFoundError
        A required reference type has no match in the cache.
    """
    from .. import datamodels as dm

    root = Path(crds_path) if crds_path is not None else None
    ctx = read_context(root) if root is not None else None
    found: dict[str, object] = {}
    for reftype in SIM_REFTYPES:
        path = _find(reftype, params, ctx, root, references)
        if path is None:
            mapped = ctx is not None and isinstance(
                ctx.instruments.get(det.instrument, {}).get(reftype), RmapSpec)
            if reftype in REQUIRED or (reftype in REQUIRED_IF_MAPPED and mapped):
                keys = ", ".join(f"{k}={v}" for k, v in sorted(params.items())
                                 if k.startswith(("META.INSTRUMENT", "META.SUBARRAY.NAME",
                                                  "META.EXPOSURE.READPATT", "META.EXPOSURE.TYPE")))
                raise ReferenceNotFoundError(
                    f"no {reftype} reference for {keys} in {root}; write one with "
                    "jwpipe.simulate.make_crds_cache(...) or pass references={...}")
            continue
        found[reftype] = path
    refs = {k: (v if v == "N/A" else Path(v)) for k, v in found.items()}
    for k, v in refs.items():
        if v != "N/A" and not v.exists():
            raise ReferenceNotFoundError(f"{k} reference {v} is named by the cache but missing")

    def open_(reftype):
        p = refs.get(reftype)
        return None if p in (None, "N/A") else dm.open(p)

    shape = sub.shape
    gain_m = open_("gain")
    gain = _cut(gain_m.data, gain_m, sub, "gain").astype(np.float32)
    rn_m = open_("readnoise")
    rn = _cut(rn_m.data, rn_m, sub, "readnoise").astype(np.float32)
    mask_m = open_("mask")
    mask_dq = _cut(mask_m.dq, mask_m, sub, "mask").astype(np.uint32)
    refpix = (mask_dq & dq.REFERENCE_PIXEL) != 0

    bias_m = open_("superbias")
    if bias_m is not None:
        bias = np.nan_to_num(_cut(bias_m.data, bias_m, sub, "superbias").astype(np.float32))
    else:  # MIRI: a fixed pedestal pattern of the detector (not a reference type)
        r = np.random.default_rng([zlib.crc32(det.name.encode()), 7])
        full = (det.bias + r.normal(0, 150, det.full[1])[None, :]
                + 20 * r.standard_normal(det.full)).astype(np.float32)
        bias = np.ascontiguousarray(full[sub.slices])
    sat_m = open_("saturation")
    sat = _cut(sat_m.data, sat_m, sub, "saturation").astype(np.float32)
    well = (sat - bias) / R.SAT_FRACTION
    well = np.where(np.isfinite(well), well, 65535.0 - bias).astype(np.float32)
    well = np.clip(well, 1000.0, 65535.0 - bias).astype(np.float32)

    lin_m = open_("linearity")
    coeffs = _cut(lin_m.coeffs, lin_m, sub, "linearity").astype(np.float32)

    dark = DarkReader(open_("dark"), sub)
    tframe = I.frame_time(det, sub)
    if dark.nframes >= 2:
        ends = dark.planes(dark.nint - 1, [0, dark.nframes - 1])
        dark_rate = (ends[1] - ends[0]) / ((dark.nframes - 1) * tframe)
    else:
        dark_rate = np.zeros(shape, np.float32)
    dark_rate = np.nan_to_num(np.clip(dark_rate, 0, None)).astype(np.float32)
    dark.check_linear(dark_rate, tframe)

    ipc_m = open_("ipc")
    ipc_forward = ipc_kernel = None
    if ipc_m is not None:
        k = np.asarray(ipc_m.data, np.float32)
        if k.ndim == 2 and k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1:
            ipc_forward = inverse_kernel(k)
            ipc_kernel = k

    flat_m = open_("flat")
    area_m = open_("area")
    area = (_cut(area_m.data, area_m, sub, "area").astype(np.float32)
            if area_m is not None else np.ones(shape, np.float32))
    area = np.where(np.isfinite(area) & (area > 0), area, 1.0).astype(np.float32)
    if flat_m is not None:
        flat = _cut(flat_m.data, flat_m, sub, "flat").astype(np.float32)
        qe = np.where(np.isfinite(flat), flat / area, 0.0).astype(np.float32)
    else:
        qe = np.ones(shape, np.float32)
    qe[refpix] = 0.0
    qe[(mask_dq & dq.DEAD) != 0] = 0.0

    photmjsr, pixar_sr = None, R._pixar(det)[0]
    phot_m = open_("photom")
    if phot_m is not None and flt is not None and phot_m.phot_table is not None:
        table = phot_m.phot_table
        names = [n.lower() for n in table.dtype.names]
        col = {n.lower(): n for n in table.dtype.names}
        for row in table:
            fv = row[col["filter"]].decode().strip() if isinstance(row[col["filter"]], bytes) \
                else str(row[col["filter"]]).strip()
            ok = fv == flt.filter
            if "pupil" in names:
                pv = row[col["pupil"]]
                pv = pv.decode().strip() if isinstance(pv, bytes) else str(pv).strip()
                ok = ok and pv == flt.pupil
            if "subarray" in names:
                sv = row[col["subarray"]]
                sv = sv.decode().strip() if isinstance(sv, bytes) else str(sv).strip()
                ok = ok and sv == sub.name
            if ok:
                photmjsr = float(row[col["photmjsr"]])
                break
        for card in phot_m.extra_fits.get("PRIMARY", []):
            if card.keyword == "PIXAR_SR":
                pixar_sr = float(card.value)
    if photmjsr is None and flt is not None:
        photmjsr = flt.photmjsr

    distortion = None
    if refs.get("distortion") not in (None, "N/A"):
        import asdf

        with asdf.open(refs["distortion"], lazy_load=False, memmap=False) as af:
            distortion = af.tree["model"]
    if distortion is None:
        from . import wcs as W

        distortion = W.distortion_model(det, with_distortion=False)

    reset = None
    reset_m = open_("reset")
    if reset_m is not None:
        reset = _cut(np.asarray(reset_m.data, np.float32), reset_m, sub, "reset")
    rscd_skip = (1, 3)
    rscd_m = open_("rscd")
    if rscd_m is not None and rscd_m.rscd_table is not None:
        t = rscd_m.rscd_table
        for row in t:
            s = row["subarray"]
            s = s.decode().strip() if isinstance(s, bytes) else str(s).strip()
            p = row["readpatt"]
            p = p.decode().strip() if isinstance(p, bytes) else str(p).strip()
            if s == sub.name and p == str(params.get("META.EXPOSURE.READPATT", "")):
                rscd_skip = (int(row["group_skip1"]), int(row["group_skip"]))
    trapdensity = None
    td_m = open_("trapdensity")
    if td_m is not None:
        trapdensity = _cut(td_m.data, td_m, sub, "trapdensity").astype(np.float32)
    trap_tau = 300.0
    tp_m = open_("trappars")
    if tp_m is not None and tp_m.trappars_table is not None:
        decay = np.asarray(tp_m.trappars_table["decay_param"], float)
        decay = decay[decay < 0]
        if decay.size:
            trap_tau = float(-1.0 / decay.max())  # the fastest-decaying family

    return DetectorModel(
        det=det, sub=sub, gain=gain, rn_cds=rn, bias=bias, well=well, sat_threshold=sat,
        coeffs=coeffs, dark_rate=dark_rate, dark_frames=dark, ipc_forward=ipc_forward, qe=qe,
        area=area, refpix=refpix, mask_dq=mask_dq, photmjsr=photmjsr, pixar_sr=pixar_sr,
        distortion=distortion, reset=reset, rscd_skip=rscd_skip, trapdensity=trapdensity,
        trap_tau=trap_tau, references={k: str(v) for k, v in refs.items()},
        ipc_kernel=ipc_kernel)


def inverse_kernel(k: np.ndarray) -> np.ndarray:
    """Second-order inverse of a small convolution kernel ``k = delta + e``: ``delta - e + e*e``.

    The IPC reference holds the kernel that *removes* IPC; the detector applies its inverse. The
    truncation error is of order ``|e|**3`` (~1e-5 for a coupling of 0.5%).
    """
    from scipy.signal import convolve2d

    k = np.asarray(k, np.float64)
    ky, kx = k.shape
    e = k.copy()
    e[ky // 2, kx // 2] -= 1.0
    ee = convolve2d(e, e)  # (2ky-1, 2kx-1)
    out = ee.copy()
    cy, cx = ky - 1, kx - 1
    out[cy - ky // 2:cy + ky // 2 + 1, cx - kx // 2:cx + kx // 2 + 1] -= e
    out[cy, cx] += 1.0
    return out.astype(np.float32)


# -- cosmic rays --------------------------------------------------------------------------------

CR_DTYPE = [("int", "<i4"), ("group", "<i4"), ("frame", "<i4"), ("y", "<i4"), ("x", "<i4"),
            ("amp", "<f4"), ("event", "<i4"), ("kind", "<i2")]
#: ``kind`` values in the cosmic-ray truth table.
CR_KINDS = {0: "hit", 1: "snowball", 2: "shower"}


@dataclass
class CosmicRays:
    """Charge deposits of one integration (one row per affected pixel)."""

    y: np.ndarray
    x: np.ndarray
    read: np.ndarray     # first read frame index (0-based position in the read sequence)
    amp_e: np.ndarray    # electrons
    event: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return int(self.y.size)

    def csr(self, shape):
        """(rowptr, col, read, amp) sorted by row, column, read, for the ramp kernel."""
        order = np.lexsort((self.read, self.x, self.y))
        y = self.y[order]
        rowptr = np.searchsorted(y, np.arange(shape[0] + 1)).astype(np.int64)
        return (rowptr, np.ascontiguousarray(self.x[order], np.int32),
                np.ascontiguousarray(self.read[order], np.int32),
                np.ascontiguousarray(self.amp_e[order], np.float32))


def make_cosmic_rays(rng: np.random.Generator, model: DetectorModel, timing: Timing,
                     rate: float, snowball_rate: float, shower_rate: float,
                     first_event: int = 0) -> CosmicRays:
    """Draw the cosmic-ray deposits of one integration.

    Parameters
    ----------
    rate, snowball_rate, shower_rate : float
        Events per pixel per second. Hits put a log-normal charge (median 800 e) in one pixel,
        a quarter of them sharing 3-15% with each 4-neighbour; snowballs (near-IR) have a
        saturating core of radius 1.5-6 px and a 3-px halo; showers (MIRI) spread 10-60
        electrons per pixel over a 15-45 px radius around a bright primary hit.
    """
    ny, nx = model.shape
    active = ~model.refpix
    npix = int(active.sum())
    t_last = timing.t_last
    read_times = timing.read_times
    parts: list[tuple] = []  # (y, x, read, amp_e, event, kind) arrays
    ev = first_event

    def push(y, x, r, a, e, kind):
        m = len(y)
        parts.append((y, x, np.broadcast_to(r, (m,)), a, np.broadcast_to(e, (m,)),
                      np.full(m, kind, np.int16)))

    def at(t):
        return np.searchsorted(read_times, t, side="right")

    n = rng.poisson(rate * npix * t_last)
    if n:
        y = rng.integers(0, ny, n)
        x = rng.integers(0, nx, n)
        keep = active[y, x]
        y, x = y[keep], x[keep]
        n = y.size
        r = at(rng.uniform(0, t_last, n))
        a = np.minimum(np.exp(rng.normal(np.log(800.0), 0.9, n)), 3e5)
        eid = ev + np.arange(n)
        ev += n
        spread = rng.random(n) < 0.25
        frac = rng.uniform(0.03, 0.15, n) * spread
        push(y, x, r, a * (1 - 4 * frac), eid, 0)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            sel = spread & (y + dy >= 0) & (y + dy < ny) & (x + dx >= 0) & (x + dx < nx)
            yy, xx = y[sel] + dy, x[sel] + dx
            ok = active[yy, xx]
            push(yy[ok], xx[ok], r[sel][ok], (a * frac)[sel][ok], eid[sel][ok], 0)

    def blob(kind, cy, cx, radius, profile, r_read):
        nonlocal ev
        rad = int(np.ceil(radius)) + 1
        y0, y1 = max(int(cy) - rad, 0), min(int(cy) + rad + 1, ny)
        x0, x1 = max(int(cx) - rad, 0), min(int(cx) + rad + 1, nx)
        if y0 >= y1 or x0 >= x1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1]
        rr = np.hypot(yy - cy, xx - cx)
        q = profile(rr)
        ok = (q > 1.0) & active[yy, xx]
        m = int(ok.sum())
        if m == 0:
            return
        push(yy[ok], xx[ok], r_read, q[ok], ev, kind)
        ev += 1

    if not model.det.is_miri:
        for _ in range(rng.poisson(snowball_rate * npix * t_last)):
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            core = rng.uniform(1.5, 6.0)
            full = 2.5 * float(np.nanmedian(model.well * model.gain))
            r_read = int(at(rng.uniform(0, t_last)))
            blob(1, cy, cx, core + 4, lambda r, c=core, f=full: np.where(
                r <= c, f, f * 0.3 * np.exp(-(r - c) / 1.2)), r_read)
    else:
        for _ in range(rng.poisson(shower_rate * npix * t_last)):
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            radius = rng.uniform(15, 45)
            level = rng.uniform(10, 60)
            r_read = int(at(rng.uniform(0, t_last)))
            primary = float(np.exp(rng.normal(np.log(5000.0), 0.5)))
            blob(2, cy, cx, 1.5 * radius, lambda r, R_=radius, a=level, p=primary: np.where(
                r < 0.5, p, a * np.exp(-(r / R_) ** 2)), r_read)

    if not parts:
        empty = np.zeros(0, np.int32)
        return CosmicRays(empty, empty, empty, np.zeros(0, np.float32), empty,
                          np.zeros(0, np.int16))
    cols = [np.concatenate([p[k] for p in parts]) for k in range(6)]
    cr = CosmicRays(cols[0].astype(np.int32), cols[1].astype(np.int32),
                    cols[2].astype(np.int32), cols[3].astype(np.float32),
                    cols[4].astype(np.int32), cols[5])
    seen = cr.read < read_times.size
    if not seen.all():
        cr = CosmicRays(*(a[seen] for a in (cr.y, cr.x, cr.read, cr.amp_e, cr.event, cr.kind)))
    return cr


# -- one integration ------------------------------------------------------------------------------

@dataclass
class IntegrationResult:
    data: np.ndarray            # uint16 (ngroups, ny, nx)
    zeroframe: np.ndarray | None
    sat_group: np.ndarray       # int16 (ny, nx)
    sat_margin_group: np.ndarray
    last_signal: np.ndarray | None  # MIRI: non-linear signal of the last group (for RSCD)


def _channels(model: DetectorModel):
    """Per-pixel channel (amplifier x parity) and slow-line index, in the subarray frame."""
    det, sub = model.det, model.sub
    yy = np.arange(sub.ystart - 1, sub.ystart - 1 + sub.ysize)
    xx = np.arange(sub.xstart - 1, sub.xstart - 1 + sub.xsize)
    ny_full, nx_full = det.full
    if det.is_miri:
        amp = (xx % 4)[None, :] * np.ones((sub.ysize, 1), int)
        parity = (yy % 2)[:, None] * np.ones((1, sub.xsize), int)
        slow = np.broadcast_to(np.arange(sub.ysize)[:, None], sub.shape)
        nslow = sub.ysize
    elif abs(det.fastaxis) == 1:
        amp = np.broadcast_to((xx // (nx_full // 4) if sub.noutputs == 4 else 0 * xx)[None, :],
                              sub.shape)
        parity = np.broadcast_to((xx % 2)[None, :], sub.shape)
        slow = np.broadcast_to(np.arange(sub.ysize)[:, None], sub.shape)
        nslow = sub.ysize
    else:
        amp = np.broadcast_to((yy // (ny_full // 4) if sub.noutputs == 4 else 0 * yy)[:, None],
                              sub.shape)
        parity = np.broadcast_to((yy % 2)[:, None], sub.shape)
        slow = np.broadcast_to(np.arange(sub.xsize)[None, :], sub.shape)
        nslow = sub.xsize
    chan = np.ascontiguousarray((amp * 2 + parity).astype(np.uint8))
    return chan, np.ascontiguousarray(slow.astype(np.int32)), nslow


def _pink(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """A 1/f noise series of length n with standard deviation ~sigma."""
    if n < 2 or sigma <= 0:
        return np.zeros(n, np.float32)
    nf = n // 2 + 1
    f = np.arange(nf, dtype=np.float64)
    f[0] = 1.0
    spec = (rng.standard_normal(nf) + 1j * rng.standard_normal(nf)) / np.sqrt(f)
    spec[0] = 0.0
    s = np.fft.irfft(spec, n)
    sd = s.std()
    return (s * (sigma / sd if sd > 0 else 0.0)).astype(np.float32)


def correlated_offsets(rng, model: DetectorModel, ngroups: int, enabled: bool):
    """Per-group offset tables: amplifier x parity channels (drifting), and 1/f per slow line."""
    chan, slow, nslow = _channels(model)
    if not enabled:
        return chan, None, slow, None
    nchan = 8
    det = model.det
    if det.is_miri:
        base = rng.normal(0, 3.0, nchan)
        step = rng.normal(0, 0.8, (ngroups, nchan))
        f_sigma = 0.0
    else:
        base = rng.normal(0, 6.0, nchan)
        step = rng.normal(0, 1.5, (ngroups, nchan))
        f_sigma = 0.35 * float(np.median(model.rn_cds))
    chan_off = (base[None, :] + np.cumsum(step, axis=0)).astype(np.float32)
    slow_off = np.stack([_pink(rng, nslow, f_sigma) for _ in range(ngroups)]) if f_sigma > 0 \
        else None
    return chan, np.ascontiguousarray(chan_off), slow, slow_off


def linearized_pedestal(model: DetectorModel, *, ipc: bool = True) -> np.ndarray | None:
    """MIRI: the raw level without signal as the pipeline's linearity step sees it; else None.

    MIRI has no superbias step, so the linearity polynomial is applied to raw DN that still hold
    the pedestal (``bias``), after the IPC step's deconvolution (the reference kernel; reference
    pixels count as zero, zero outside the array, as in ``jwpipe.steps.ipc``). Float64.
    """
    if not model.det.is_miri:
        return None
    b = np.asarray(model.bias, np.float64)
    if ipc and model.ipc_kernel is not None and model.ipc_forward is not None:
        from scipy.signal import convolve2d

        src = np.where(model.refpix, 0.0, b)
        out = convolve2d(src, np.asarray(model.ipc_kernel, np.float64), mode="same")
        b = np.where(model.refpix, b, out)
    return b


def shift_polynomial(coeffs: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Coefficients of ``Q(s) = P(origin + s) - P(origin)`` for ``P`` = ``coeffs`` (lowest order
    first, (ncoeffs, ny, nx)); float64 (Taylor expansion at ``origin``, exact for polynomials).
    NaN coefficients stay NaN."""
    from math import comb

    c = np.asarray(coeffs, np.float64)
    n = c.shape[0]
    a = np.asarray(origin, np.float64)
    out = np.zeros_like(c)
    for k in range(1, n):
        acc = np.zeros_like(a)
        for j in range(n - 1, k - 1, -1):  # sum_j c_j C(j, k) a^(j-k), Horner in a
            acc = acc * a + c[j] * comb(j, k)
        out[k] = acc
    out[0] = np.where(np.isnan(c).any(axis=0), np.nan, 0.0)
    return out


def ramp_coefficients(model: DetectorModel, *, ipc: bool = True) -> np.ndarray:
    """The polynomial the ramp kernel inverts on the signal ``S`` above the bias (float32).

    Near-IR: the linearity reference's own coefficients (the superbias is subtracted before the
    linearity step, so it sees ``S``). MIRI: the pipeline linearises the raw value ``p + S``
    (``p`` = :func:`linearized_pedestal`), so the detector must satisfy ``P(p + S) - P(p) = L``
    (the linear signal): the reference polynomial re-expanded about ``p``. The linearised ramp
    then grows by exactly ``L`` from its zero-signal level ``P(p)``.
    """
    key = bool(ipc)
    cached = model._ramp_coeffs.get(key)
    if cached is not None:
        return cached
    ped = linearized_pedestal(model, ipc=ipc)
    if ped is None:
        c = model.coeffs
    else:
        c = np.ascontiguousarray(shift_polynomial(model.coeffs, ped), np.float32)
    model._ramp_coeffs[key] = c
    return c


def simulate_integration(model: DetectorModel, timing: Timing, rate: np.ndarray, *,
                         index: int, seed: int, crs: CosmicRays | None = None,
                         offsets: np.ndarray | None = None, noise: bool = True,
                         correlated: bool = True, nonlinearity: bool = True,
                         ipc: bool = True, saturation: bool = True, miri_effects: bool = True,
                         prev_last: np.ndarray | None = None, zeroframe: bool = False,
                         emi: np.ndarray | None = None, nthreads: int = 1) -> IntegrationResult:
    """Simulate one integration.

    Parameters
    ----------
    rate : ndarray of shape (ny, nx), float32
        Count rate in DN/s from the scene (QE applied), without dark current.
    offsets : ndarray of shape (nread, ny, nx), float32, optional
        Extra linear signal (DN) present at each read (persistence, dark transients).
    prev_last : ndarray, optional
        Last-group non-linear signal of the previous integration (MIRI RSCD).
    emi : ndarray of shape (ngroups, ny, nx), float32, optional
        Electronic pickup (DN) added to every read, reference pixels included (MIRI EMI).

    Returns
    -------
    IntegrationResult
    """
    from .._ext import _simulate

    ny, nx = model.shape
    if ny * nx * timing.ngroups < 1 << 20:
        nthreads = 1  # small arrays: a parallel region costs more than it saves
    dt, group, weight = timing.schedule()
    rate_e = np.ascontiguousarray(((np.asarray(rate, np.float32) + model.dark_rate) * model.gain),
                                  np.float32)
    rate_e[model.refpix] = 0.0
    coeffs = ramp_coefficients(model, ipc=ipc) if nonlinearity else None
    well = model.well if saturation else None
    if crs is not None and len(crs):
        rowptr, col, read, amp = crs.csr((ny, nx))
    else:
        rowptr = col = read = amp = None
    signal = np.empty((timing.ngroups, ny, nx), np.float32)
    frame0 = np.empty((ny, nx), np.float32) if zeroframe else None
    stream = 2 * int(index) + 1
    _simulate.sim_ramp(rate_e, model.gain, coeffs, well,
                       None if offsets is None else np.ascontiguousarray(offsets, np.float32),
                       dt, group, weight, rowptr, col, read, amp, signal, frame0,
                       int(seed) & 0xFFFFFFFFFFFFFFFF, stream, not noise, POISSON_EXACT_BELOW,
                       nthreads)
    last_signal = signal[-1].copy() if model.det.is_miri else None  # for the next RSCD
    refpix_u8 = model.refpix.view(np.uint8) if model.refpix.dtype == bool else model.refpix
    if ipc and model.ipc_forward is not None:
        coupled = np.empty_like(signal)
        _simulate.sim_ipc(signal, coupled, model.ipc_forward, refpix_u8, nthreads)
        signal = coupled
        if frame0 is not None:
            f0 = np.empty((1, ny, nx), np.float32)
            _simulate.sim_ipc(frame0[None], f0, model.ipc_forward, refpix_u8, nthreads)
            frame0 = f0[0]

    det = model.det
    if det.is_miri and miri_effects:
        ng = timing.ngroups
        if model.reset is not None:
            rr = model.reset[min(index, model.reset.shape[0] - 1)]
            k = min(rr.shape[0], ng)
            signal[:k] += rr[:k]
        skip1, skip = model.rscd_skip
        g = np.arange(ng, dtype=np.float32)
        if index == 0:
            k = min(skip1, ng)
            signal[:k] += (-4.0 * np.exp(-g[:k]))[:, None, None]
        elif prev_last is not None:
            k = min(skip, ng)
            signal[:k] += (-0.002 * prev_last)[None] * np.exp(-g[:k])[:, None, None]
        if ng > 2:
            signal[-1] += -0.002 * signal[-1] - 5.0
        signal[..., model.refpix] = 0.0
    if emi is not None:
        signal += emi

    sigma_g = (model.rn_cds / np.sqrt(2.0) / np.sqrt(timing.nframes)).astype(np.float32)
    thr = model.sat_threshold
    thr_margin = (thr - 5 * sigma_g).astype(np.float32)
    sat_group = np.empty((ny, nx), np.int16)
    sat_margin = np.empty((ny, nx), np.int16)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 1000 + int(index)])
    chan, chan_off, slow, slow_off = correlated_offsets(rng, model, timing.ngroups,
                                                        noise and correlated)
    data = np.empty((timing.ngroups, ny, nx), np.uint16)
    _simulate.sim_readout(signal, model.bias, sigma_g, chan, chan_off, slow, slow_off, thr,
                          thr_margin, sat_group, sat_margin, data,
                          int(seed) & 0xFFFFFFFFFFFFFFFF, 2 * int(index) + 2, not noise, nthreads)
    zf = None
    if frame0 is not None:
        zf = np.empty((1, ny, nx), np.uint16)
        sig0 = (model.rn_cds / np.sqrt(2.0)).astype(np.float32)
        _simulate.sim_readout(frame0[None], model.bias, sig0, chan,
                              None if chan_off is None else chan_off[:1].copy(), slow,
                              None if slow_off is None else slow_off[:1].copy(), None, None,
                              None, None, zf, int(seed) & 0xFFFFFFFFFFFFFFFF,
                              2 * int(index) + 1000001, not noise, nthreads)
        zf = zf[0]
    return IntegrationResult(data=data, zeroframe=zf, sat_group=sat_group,
                             sat_margin_group=sat_margin, last_signal=last_signal)
