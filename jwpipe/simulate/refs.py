"""Synthetic CRDS reference files, written as a local CRDS cache.

Each detector has deterministic full-frame "truth" fields (gain, read noise, bias, dark current,
well depth, non-linearity, quantum efficiency, bad pixels...), generated from ``(seed, detector,
field name)`` so that a cache holding one subarray and a cache holding everything agree pixel for
pixel. Reference files are cut-outs or derived products of those fields in the formats of the real
CRDS files (extension names, columns, header keywords and ``P_`` pattern keywords as the reference
ecosystem's data models write them); the simulator reads the same files back, so what the pipeline
calibrates with is what the detector did.

Reference types and their CRDS match parameters (besides INSTRUME, and DATE-OBS/TIME-OBS for the
UseAfter) follow the jwst 3.0 reference-selection documentation; see :data:`PARKEYS`.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from .. import dq
from ..datamodels import products as P
from ..errors import ConfigError
from . import instruments as I
from . import wcs as W
from .crdsmaps import Context, RmapSpec, read_context, write_context

__all__ = ["make_crds_cache", "PARKEYS", "NOT_APPLICABLE", "USEAFTER", "SAT_FRACTION",
           "DetectorFields", "detector_fields"]

USEAFTER = "2014-10-01T00:00:00"
AUTHOR = "jwpipe.simulate (synthetic)"
PEDIGREE = "SIMULATION"
#: Saturation reference threshold = bias + SAT_FRACTION * hard (clipping) well.
SAT_FRACTION = 0.95

_DET = "META.INSTRUMENT.DETECTOR"
_SUB = "META.SUBARRAY.NAME"
_RP = "META.EXPOSURE.READPATT"
_EXP = "META.EXPOSURE.TYPE"
_NOUT = "META.EXPOSURE.NOUTPUTS"
_FLT = "META.INSTRUMENT.FILTER"
_PUP = "META.INSTRUMENT.PUPIL"
_CHAN = "META.INSTRUMENT.CHANNEL"
_BAND = "META.INSTRUMENT.BAND"
_CORNER = ("META.SUBARRAY.XSTART", "META.SUBARRAY.YSTART", "META.SUBARRAY.XSIZE",
           "META.SUBARRAY.YSIZE")

#: Match parameters of each (instrument, reftype) rmap (jwst 3.0 docs, references_general).
PARKEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "NIRCAM": {
        "mask": (_DET, _SUB), "saturation": (_DET,), "superbias": (_DET, _RP, _SUB),
        "linearity": (_DET, _SUB), "dark": (_EXP, _DET, _SUB, _NOUT), "gain": (_DET, _SUB),
        "readnoise": (_DET, _RP, _SUB), "ipc": (_DET,), "flat": (_DET, _FLT, _PUP),
        "area": (_DET, _FLT, _PUP, _EXP), "photom": (_DET,),
        "distortion": (_DET, _EXP, _CHAN, _FLT),
        "persat": (_DET,), "trapdensity": (_DET,), "trappars": (_DET,), "sirskernel": (_DET,),
    },
    "NIRISS": {
        "mask": (_DET, _SUB), "saturation": (_DET,), "superbias": (_DET, _RP, _SUB),
        "linearity": (_DET, _SUB), "dark": (_DET, _RP, _SUB), "gain": (_DET, _SUB),
        "readnoise": (_DET, _RP, _SUB), "ipc": (_DET,), "flat": (_DET, _FLT, _PUP),
        "area": (_DET, _FLT, _PUP, _EXP), "photom": (_DET,), "distortion": (_EXP, _PUP),
        "persat": (_DET,), "trapdensity": (_DET,), "trappars": (_DET,), "sirskernel": (_DET,),
    },
    "NIRSPEC": {
        "mask": (_DET, _SUB, _RP), "saturation": (_DET, _SUB),
        "superbias": (_DET, _RP, _SUB) + _CORNER, "linearity": (_DET, _SUB),
        "dark": (_DET, _RP, _SUB) + _CORNER, "gain": (_DET, _SUB),
        "readnoise": (_DET, _RP, _SUB), "ipc": (_DET,), "sirskernel": (_DET,),
        "pictureframe": (_DET,),
    },
    "MIRI": {
        "mask": (_DET, _SUB), "saturation": (_DET,), "linearity": (_DET, _SUB, _BAND, _FLT),
        "dark": (_DET, _RP, _SUB), "gain": (_DET, _SUB), "readnoise": (_DET, _RP, _SUB),
        "ipc": (_DET,), "reset": (_DET, _SUB, _RP), "rscd": (_DET,),
        "flat": (_DET, _FLT, _BAND, _RP, _SUB), "area": (_DET, _FLT, _EXP), "photom": (_DET, _BAND),
        "distortion": (_DET, _EXP, _CHAN, _BAND), "emicorr": (_DET,),
    },
}

#: Reference types the instrument mappings list as not applicable ('N/A').
NOT_APPLICABLE: dict[str, tuple[str, ...]] = {
    "NIRCAM": ("refpix", "rscd", "reset", "filteroffset", "pictureframe",
               "emicorr", "drizpars", "apcorr", "abvegaoffset"),
    "NIRISS": ("refpix", "rscd", "reset", "filteroffset", "pictureframe",
               "emicorr", "drizpars", "apcorr", "abvegaoffset"),
    "NIRSPEC": ("refpix", "flat", "fflat", "sflat", "dflat", "area", "photom",
                "distortion", "persat", "trapdensity", "trappars", "rscd", "reset",
                "emicorr", "drizpars"),
    "MIRI": ("superbias", "refpix", "sirskernel", "persat", "trapdensity", "trappars",
             "filteroffset", "lastframe", "drizpars", "apcorr", "abvegaoffset"),
}

# How many files of each type: per detector, per subarray, per filter, per (filter, subarray).
_GRAIN = {"mask": "sub", "saturation": "det", "superbias": "sub", "linearity": "sub",
          "dark": "sub", "gain": "sub", "readnoise": "sub", "ipc": "det", "flat": "filter",
          "area": "det", "photom": "det", "distortion": "det", "persat": "det",
          "trapdensity": "det", "trappars": "det", "reset": "sub", "rscd": "det",
          "sirskernel": "det", "emicorr": "det", "pictureframe": "det"}
_GRAIN_OVERRIDE = {("NIRSPEC", "saturation"): "sub", ("MIRI", "flat"): "filter_sub"}

_ALL_READPATTS_MIRI = "FAST|FASTR1|SLOW|SLOWR1"


def _grain(instr: str, reftype: str) -> str:
    return _GRAIN_OVERRIDE.get((instr, reftype), _GRAIN[reftype])


# -- deterministic detector fields ----------------------------------------------------------------

def _smooth(rng, shape, order: int, amplitude: float) -> np.ndarray:
    """A smooth random field: sum of Legendre products up to ``order``, RMS ~ ``amplitude``."""
    ny, nx = shape
    u = np.linspace(-1, 1, nx)
    v = np.linspace(-1, 1, ny)
    U = np.polynomial.legendre.legvander(u, order).T  # (order+1, nx)
    V = np.polynomial.legendre.legvander(v, order).T
    coef = rng.standard_normal((order + 1, order + 1)) / (1.0 + np.add.outer(
        np.arange(order + 1), np.arange(order + 1)))
    coef[0, 0] = 0.0
    field = V.T @ coef @ U
    rms = float(np.sqrt(np.mean(field ** 2))) or 1.0
    return (field * (amplitude / rms)).astype(np.float32)


class DetectorFields:
    """Full-frame synthetic truth of one detector, computed field by field on first use."""

    def __init__(self, det: I.Detector, seed: int = 0):
        self.det = det
        self.seed = int(seed)
        self._cache: dict[str, np.ndarray] = {}

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(self.det.name.encode()),
                                      zlib.crc32(name.encode())])

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name not in cache:
            maker = getattr(type(self), "_make_" + name, None)
            if maker is None:
                raise AttributeError(name)
            cache[name] = maker(self)
        return cache[name]

    @property
    def shape(self) -> tuple[int, int]:
        return self.det.full

    # geometry ---------------------------------------------------------------------------------
    def _make_refpix(self):
        ny, nx = self.shape
        mask = np.zeros(self.shape, bool)
        n = self.det.refpix
        if n:
            mask[:n] = mask[-n:] = True
            mask[:, :n] = mask[:, -n:] = True
        left, right = self.det.ref_columns
        if left:
            mask[:, :left] = True
        if right:
            mask[:, nx - right:] = True
        return mask

    def _make_amp(self):
        """Amplifier (output) index of each pixel, 0..3."""
        ny, nx = self.shape
        if self.det.is_miri:
            return np.broadcast_to((np.arange(nx) % 4).astype(np.uint8), self.shape).copy()
        if abs(self.det.fastaxis) == 1:
            return np.broadcast_to((np.arange(nx) // (nx // 4)).astype(np.uint8), self.shape).copy()
        return np.broadcast_to((np.arange(ny) // (ny // 4)).astype(np.uint8)[:, None],
                               self.shape).copy()

    def _make_fastcoord(self):
        """Pixel index along the fast readout axis (DMS frame), for odd/even column effects."""
        ny, nx = self.shape
        if abs(self.det.fastaxis) == 1:
            return np.broadcast_to(np.arange(nx, dtype=np.int32), self.shape)
        return np.broadcast_to(np.arange(ny, dtype=np.int32)[:, None], self.shape)

    # electronics ------------------------------------------------------------------------------
    def _make_gain(self):
        r = self.rng("gain")
        amp = r.normal(0, 0.02, 4).astype(np.float32)
        g = self.det.gain * (1 + amp[self.amp]) * (1 + 0.008 * r.standard_normal(
            self.shape, dtype=np.float32)) * (1 + _smooth(r, self.shape, 3, 0.01))
        return g.astype(np.float32)

    def _make_rn_cds(self):
        r = self.rng("readnoise")
        amp = r.normal(0, 0.05, 4).astype(np.float32)
        rn = self.det.rn_cds * (1 + amp[self.amp]) * np.exp(
            0.08 * r.standard_normal(self.shape, dtype=np.float32))
        noisy = r.random(self.shape, dtype=np.float32) < 0.002
        rn[noisy] *= r.uniform(2, 4, int(noisy.sum())).astype(np.float32)
        return rn.astype(np.float32)

    def _make_bias(self):
        """Superbias (DN): amplifier and column structure, odd/even columns, pixel scatter."""
        r = self.rng("bias")
        det = self.det
        ny, nx = self.shape
        amp_off = r.normal(0, 350, 4).astype(np.float32)
        oddeven = r.normal(0, 18, (4, 2)).astype(np.float32)
        nfast = nx if abs(det.fastaxis) == 1 else ny
        col = r.normal(0, 35, nfast).astype(np.float32)
        fc = self.fastcoord
        b = (det.bias + amp_off[self.amp] + oddeven[self.amp, fc % 2] + col[fc]
             + _smooth(r, self.shape, 2, 80.0)
             + 22 * r.standard_normal(self.shape, dtype=np.float32))
        return b.astype(np.float32)

    def _make_unreliable_bias(self):
        return self.rng("unreliable_bias").random(self.shape, dtype=np.float32) < 0.0005

    # dark current -----------------------------------------------------------------------------
    def _make_dark_class(self):
        """0 normal, 1 warm, 2 hot (DO_NOT_USE)."""
        r = self.rng("dark_class")
        u = r.random(self.shape, dtype=np.float32)
        cls = np.zeros(self.shape, np.uint8)
        cls[u < 0.01] = 1
        cls[u < 0.001] = 2
        cls[self.refpix] = 0
        return cls

    def _make_dark_rate(self):
        r = self.rng("dark_rate")
        d0 = self.det.dark
        rate = d0 * np.exp(0.3 * r.standard_normal(self.shape, dtype=np.float32))
        cls = self.dark_class
        warm = cls == 1
        rate[warm] *= r.uniform(5, 30, int(warm.sum())).astype(np.float32)
        hot = cls == 2
        lo, hi = (1.3, 2.5) if self.det.is_miri else (2.0, 4.0)
        rate[hot] = d0 * 10 ** r.uniform(lo, hi, int(hot.sum())).astype(np.float32)
        rate[self.refpix] = 0.0
        return rate.astype(np.float32)

    # response ---------------------------------------------------------------------------------
    def _make_dead(self):
        u = self.rng("dead").random(self.shape, dtype=np.float32)
        return (u < 0.0005) & ~self.refpix

    def _make_lowqe(self):
        u = self.rng("lowqe").random(self.shape, dtype=np.float32)
        return (u < 0.001) & ~self.refpix & ~self.dead

    def _make_qe(self):
        """Relative quantum efficiency (filter independent part); 0 on reference/dead pixels."""
        r = self.rng("qe")
        ny, nx = self.shape
        qe = 1.0 + _smooth(r, self.shape, 4, 0.015) + 0.008 * r.standard_normal(
            self.shape, dtype=np.float32)
        # A few out-of-focus particulates ("spots"): shallow Gaussian dips.
        for _ in range(4):
            cy, cx = r.uniform(0, ny), r.uniform(0, nx)
            s = r.uniform(6, 14)
            y0, y1 = int(max(cy - 4 * s, 0)), int(min(cy + 4 * s, ny))
            x0, x1 = int(max(cx - 4 * s, 0)), int(min(cx + 4 * s, nx))
            yy, xx = np.ogrid[y0:y1, x0:x1]
            qe[y0:y1, x0:x1] *= 1 - 0.06 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        low = self.lowqe
        qe[low] *= r.uniform(0.3, 0.6, int(low.sum())).astype(np.float32)
        qe[self.dead] = 0.0
        qe[self.refpix] = 0.0
        return qe.astype(np.float32)

    def qe_filter(self, filter_name: str) -> np.ndarray:
        key = "qe_" + filter_name
        if key not in self._cache:
            r = self.rng(key)
            self._cache[key] = (self.qe * (1 + _smooth(r, self.shape, 3, 0.01))).astype(np.float32)
        return self._cache[key]

    def _make_area(self):
        return W.pixel_area_map(self.det, I.subarray(self.det, "FULL"))

    # full well and non-linearity ----------------------------------------------------------------
    def _make_well(self):
        r = self.rng("well")
        w = self.det.well * (1 + 0.015 * r.standard_normal(self.shape, dtype=np.float32)) * (
            1 + _smooth(r, self.shape, 2, 0.02))
        if not self.det.is_miri:  # keep bias + well inside the 16-bit range
            w = np.minimum(w, 65000.0 - self.bias)
        return w.astype(np.float32)

    def _make_lincoeffs(self):
        """(c0..c3): linear signal L = S + c2 S^2 + c3 S^3 for the measured signal S (DN)."""
        r = self.rng("linearity")
        inv_w = 1.0 / self.well
        c = np.zeros((4,) + self.shape, np.float32)
        c[1] = 1.0
        c[2] = r.standard_normal(self.shape, dtype=np.float32)
        c[2] *= 0.005
        c[2] += 0.05
        c[2] *= inv_w
        c[3] = r.standard_normal(self.shape, dtype=np.float32)
        c[3] *= 0.003
        c[3] += 0.03
        c[3] *= inv_w
        c[3] *= inv_w
        c[2:, self.refpix] = 0.0
        c[:, self.nolin] = np.nan
        return c

    def _make_nolin(self):
        u = self.rng("nolin").random(self.shape, dtype=np.float32)
        return (u < 0.0001) & ~self.refpix

    def _make_nosat(self):
        u = self.rng("nosat").random(self.shape, dtype=np.float32)
        return (u < 0.0001) & ~self.refpix

    def _make_trapdensity(self):
        r = self.rng("trapdensity")
        t = np.clip(1 + 0.25 * r.standard_normal(self.shape, dtype=np.float32), 0.05, None)
        t[self.refpix] = 0.0
        return t.astype(np.float32)

    # MIRI only ----------------------------------------------------------------------------------
    def _make_reset_amp(self):
        r = self.rng("reset_amp")
        return (-(35.0 + 8.0 * r.standard_normal(self.shape, dtype=np.float32))
                * (1 + _smooth(r, self.shape, 2, 0.15))).astype(np.float32)

    def _make_dark_transient(self):
        r = self.rng("dark_transient")
        t = 3.0 * (1 + 0.3 * r.standard_normal(self.shape, dtype=np.float32))
        t[self.refpix] = 0.0
        return t.astype(np.float32)

    # derived masks ------------------------------------------------------------------------------
    def mask_dq(self) -> np.ndarray:
        d = np.zeros(self.shape, np.uint32)
        d[self.refpix] |= dq.REFERENCE_PIXEL
        d[self.dead] |= dq.DEAD | dq.DO_NOT_USE
        d[self.dark_class == 2] |= dq.HOT | dq.DO_NOT_USE
        d[self.dark_class == 1] |= dq.WARM
        d[self.lowqe] |= dq.LOW_QE
        return d


_FIELDS: dict[tuple[str, int], DetectorFields] = {}


def detector_fields(det: I.Detector | str, seed: int = 0) -> DetectorFields:
    """The (cached) :class:`DetectorFields` of a detector."""
    det = I.detector(det) if isinstance(det, str) else det
    key = (det.name, int(seed))
    if key not in _FIELDS:
        _FIELDS.clear()  # keep at most one detector's fields in memory
        _FIELDS[key] = DetectorFields(det, seed)
    return _FIELDS[key]


# -- writing helpers ----------------------------------------------------------------------------

_DQ_DEF_FLAGS = ("DO_NOT_USE", "SATURATED", "DEAD", "HOT", "WARM", "LOW_QE", "NO_FLAT_FIELD",
                 "NO_LIN_CORR", "NO_SAT_CHECK", "UNRELIABLE_BIAS", "UNRELIABLE_DARK",
                 "REFERENCE_PIXEL")


def dq_def_table() -> np.ndarray:
    """The DQ_DEF table (BIT, VALUE, NAME, DESCRIPTION) of the flags these references use."""
    rows = [(bit, 1 << bit, name, text) for bit, name, text in dq.FLAGS if name in _DQ_DEF_FLAGS]
    table = np.zeros(len(rows), dtype=[("BIT", ">i4"), ("VALUE", ">u4"), ("NAME", "S40"),
                                       ("DESCRIPTION", "S80")])
    for i, row in enumerate(rows):
        table[i] = row
    return table


def _card(model, key, value, comment=""):
    if isinstance(value, str) and len(value) + len(comment) > 60:
        comment = ""  # long values use the CONTINUE convention; drop the comment
    model.extra_fits.setdefault("PRIMARY", []).append(fits.Card(key, value, comment))


def _model(cls, model_type: str | None = None):
    if model_type and model_type != cls.model_type:
        cls = type(model_type, (cls,), {"model_type": model_type})
    return cls()


def _describe(m, det: I.Detector, reftype: str, description: str, sub: I.Subarray | None,
              generic: bool = False):
    meta = m.meta
    meta.telescope = "JWST"
    meta.origin = "jwpipe"
    meta.reftype = reftype.upper()
    meta.description = description
    meta.author = AUTHOR
    meta.pedigree = PEDIGREE
    meta.useafter = USEAFTER
    meta.instrument.name = det.instrument
    meta.instrument.detector = det.name
    if det.instrument == "NIRCAM":
        meta.instrument.module = det.module
        meta.instrument.channel = det.channel
    if sub is not None:
        meta.subarray.name = "GENERIC" if generic else sub.name
        meta.subarray.xstart = sub.xstart
        meta.subarray.ystart = sub.ystart
        meta.subarray.xsize = sub.xsize
        meta.subarray.ysize = sub.ysize
        meta.subarray.fastaxis = det.fastaxis
        meta.subarray.slowaxis = det.slowaxis


def _readpatt_keys(m, instr: str):
    m.meta.exposure.readpatt = "ANY"
    patt = _ALL_READPATTS_MIRI if instr == "MIRI" else I.P_READPATT[instr]
    _card(m, "P_READPA", patt + "|", "Readout pattern")


def _exptype_keys(m, instr: str):
    m.meta.exposure.type = "ANY"
    _card(m, "P_EXP_TY", "|".join(I.EXP_TYPES[instr]) + "|", "Applicable EXP_TYPE values")


def _elements(det: I.Detector) -> tuple[str, str]:
    flts = sorted({f.filter for f in I.FILTERS[det.name].values()})
    pups = sorted({f.pupil for f in I.FILTERS[det.name].values()})
    return "|".join(flts), "|".join(pups)


def _cut(a: np.ndarray, sub: I.Subarray) -> np.ndarray:
    return np.ascontiguousarray(a[(Ellipsis,) + sub.slices])


def default_dark_frames(det: I.Detector, sub: I.Subarray) -> int:
    """Dark frames written by default: about 32 MB of SCI+ERR, between 10 and 100 frames."""
    nint = 2 if det.is_miri else 1
    budget = 32 * 2 ** 20
    return int(np.clip(budget // (8 * nint * sub.xsize * sub.ysize), 10, 100))


# -- reference builders -------------------------------------------------------------------------

def _build_mask(f: DetectorFields, sub, **_):
    det = f.det
    m = _model(P.MaskModel)
    _describe(m, det, "mask", "Synthetic bad pixel mask", sub)
    if det.instrument == "NIRSPEC":
        _readpatt_keys(m, det.instrument)
    m.dq = _cut(f.mask_dq(), sub)
    m.dq_def = dq_def_table()
    return m


def _build_saturation(f: DetectorFields, sub, generic=False, **_):
    det = f.det
    m = _model(P.SaturationModel)
    _describe(m, det, "saturation", "Synthetic saturation thresholds (raw DN including bias)",
              sub, generic)
    base = f.bias if not det.is_miri else np.float32(det.bias)
    sat = (base + SAT_FRACTION * f.well).astype(np.float32)
    d = np.zeros(f.shape, np.uint32)
    sat[f.nosat] = np.nan
    d[f.nosat] |= dq.NO_SAT_CHECK
    m.data = _cut(sat, sub)
    m.dq = _cut(d, sub)
    m.dq_def = dq_def_table()
    return m


def _build_superbias(f: DetectorFields, sub, **_):
    det = f.det
    m = _model(P.SuperBiasModel)
    _describe(m, det, "superbias", f"Synthetic superbias {sub.name}", sub)
    _readpatt_keys(m, det.instrument)
    m.meta.exposure.noutputs = sub.noutputs
    m.meta.bunit_data = "DN"
    m.data = _cut(f.bias, sub)
    err = np.full(sub.shape, 2.0, np.float32)
    d = np.zeros(f.shape, np.uint32)
    d[f.unreliable_bias] |= dq.UNRELIABLE_BIAS
    m.err = err
    m.dq = _cut(d, sub)
    m.dq_def = dq_def_table()
    return m


def _build_linearity(f: DetectorFields, sub, **_):
    det = f.det
    m = _model(P.LinearityModel)
    _describe(m, det, "linearity",
              "Synthetic linearity correction (corr = raw + c2 raw^2 + c3 raw^3)", sub)
    if det.is_miri:
        flts, _ = _elements(det)
        m.meta.instrument.filter = "ANY"
        _card(m, "P_FILTER", flts + "|", "Applicable filters")
        m.meta.instrument.band = "N/A"
    m.coeffs = _cut(f.lincoeffs, sub)
    d = np.zeros(f.shape, np.uint32)
    d[f.nolin] |= dq.NO_LIN_CORR
    m.dq = _cut(d, sub)
    m.dq_def = dq_def_table()
    return m


def _dark_sci(f: DetectorFields, sub, nframes: int, tframe: float, nint: int):
    rate = _cut(f.dark_rate, sub)
    k = np.arange(nframes, dtype=np.float32)[:, None, None]
    base = rate[None] * (k * np.float32(tframe))
    if nint == 1:
        return base[None]
    trans = _cut(f.dark_transient, sub)
    first = base + trans[None] * (1 - np.exp(-k / 4.0)).astype(np.float32)
    return np.stack([first] + [base] * (nint - 1))


def _build_dark(f: DetectorFields, sub, dark_frames=None, **_):
    det = f.det
    nframes = int(dark_frames or default_dark_frames(det, sub))
    tframe = I.frame_time(det, sub)
    nint = 2 if det.is_miri else 1
    if det.is_miri:
        m = _model(P.DarkMIRIModel)
    else:
        m = _model(P.DarkModel)
    _describe(m, det, "dark", f"Synthetic dark {sub.name} (frames of {tframe} s, group 0 "
              "subtracted)", sub)
    pat = I.P_READPATT[det.instrument]
    if det.instrument == "NIRCAM":
        _exptype_keys(m, det.instrument)
        m.meta.exposure.readpatt = "ANY"
        _card(m, "P_READPA", pat + "|", "Readout pattern")
    else:
        m.meta.exposure.readpatt = "ANY"
        _card(m, "P_READPA", pat + "|", "Readout pattern")
        m.meta.exposure.type = "ANY"
    m.meta.exposure.noutputs = sub.noutputs
    m.meta.exposure.nframes = 1
    m.meta.exposure.ngroups = nframes
    m.meta.exposure.groupgap = 0
    if nint > 1:
        m.meta.exposure.nints = nint
    avg = float(np.median(_cut(f.dark_rate, sub) * _cut(f.gain, sub)))
    _card(m, "AVDRKCUR", avg, "Average dark current (e-/s)")
    sci = _dark_sci(f, sub, nframes, tframe, nint)
    gain = _cut(f.gain, sub)
    rn = _cut(f.rn_cds, sub)
    err = np.sqrt(np.maximum(sci, 0) / (gain * 50.0) + (rn * rn) / 200.0).astype(np.float32)
    d2 = np.zeros(f.shape, np.uint32)
    d2[f.dark_class == 2] |= dq.HOT | dq.DO_NOT_USE
    d2[f.dark_class == 1] |= dq.WARM
    d2 = _cut(d2, sub)
    if det.is_miri:
        m.data = sci
        m.err = err
        m.dq = np.broadcast_to(d2, (nint, 1) + d2.shape).copy()
    else:
        m.data = sci[0]
        m.err = err[0]
        m.dq = d2
    m.dq_def = dq_def_table()
    return m


def _build_gain(f: DetectorFields, sub, **_):
    m = _model(P.GainModel)
    _describe(m, f.det, "gain", "Synthetic gain", sub)
    m.meta.bunit_data = "electrons/DN"
    m.data = _cut(f.gain, sub)
    return m


def _build_readnoise(f: DetectorFields, sub, **_):
    m = _model(P.ReadnoiseModel)
    _describe(m, f.det, "readnoise", "Synthetic CDS read noise", sub)
    _readpatt_keys(m, f.det.instrument)
    m.meta.bunit_data = "DN"
    m.data = _cut(f.rn_cds, sub)
    return m


def ipc_kernel(alpha: float) -> np.ndarray:
    """3x3 IPC *deconvolution* kernel (what the IPC reference holds) for coupling ``alpha``."""
    k = np.zeros((3, 3), np.float32)
    k[1, 1] = 1 + 4 * alpha
    k[0, 1] = k[2, 1] = k[1, 0] = k[1, 2] = -alpha
    return k


def _build_ipc(f: DetectorFields, sub=None, **_):
    m = _model(P.IPCModel)
    _describe(m, f.det, "ipc", f"Synthetic IPC deconvolution kernel alpha={f.det.ipc_alpha}", None)
    m.data = ipc_kernel(f.det.ipc_alpha)
    return m


def _build_flat(f: DetectorFields, sub, flt: I.Filter, **_):
    det = f.det
    m = _model(P.FlatModel)
    _describe(m, det, "flat", f"Synthetic pixel flat {flt.filter}/{flt.pupil}", sub,
              generic=sub.name == "FULL" and not det.is_miri)
    m.meta.instrument.filter = flt.filter
    if det.is_miri:
        m.meta.instrument.band = "N/A"
        _readpatt_keys(m, det.instrument)
    else:
        m.meta.instrument.pupil = flt.pupil
    flat = f.qe_filter(flt.filter + "_" + flt.pupil) * f.area
    flat[f.refpix] = 1.0
    flat[f.dead] = np.nan
    d = np.zeros(f.shape, np.uint32)
    d[f.dead] |= dq.NO_FLAT_FIELD | dq.DO_NOT_USE
    d[f.refpix] |= dq.REFERENCE_PIXEL
    m.data = _cut(flat.astype(np.float32), sub)
    m.err = np.full(sub.shape, 0.004, np.float32)
    m.dq = _cut(d, sub)
    m.dq_def = dq_def_table()
    return m


def _pixar(det: I.Detector) -> tuple[float, float]:
    a2 = det.pixel_scale[0] * det.pixel_scale[1]
    return a2 / (180 / np.pi * 3600) ** 2, a2


def _build_area(f: DetectorFields, sub, generic=True, **_):
    det = f.det
    m = _model(P.PixelAreaModel)
    _describe(m, det, "area", "Synthetic pixel area map (relative to nominal PIXAR_SR)", sub,
              generic)
    flts, pups = _elements(det)
    m.meta.instrument.filter = "ANY"
    _card(m, "P_FILTER", flts + "|", "Applicable filters")
    if not det.is_miri:
        m.meta.instrument.pupil = "ANY"
        _card(m, "P_PUPIL", pups + "|", "Applicable pupils")
    _exptype_keys(m, det.instrument)
    sr, a2 = _pixar(det)
    _card(m, "PIXAR_SR", sr, "Nominal pixel area in steradians")
    _card(m, "PIXAR_A2", a2, "Nominal pixel area in arcsec^2")
    m.data = _cut(f.area, sub)
    return m


_PHOTOM_TYPES = {"NIRCAM": "NrcImgPhotomModel", "NIRISS": "NisImgPhotomModel",
                 "MIRI": "MirImgPhotomModel"}


def photom_table(det: I.Detector) -> np.ndarray:
    flts = list(I.FILTERS[det.name].values())
    if det.is_miri:
        subs = list(det.subarrays)
        rows = [(f.filter, s, f.photmjsr, 0.02 * f.photmjsr) for f in flts for s in subs]
        dtype = [("filter", "S12"), ("subarray", "S17"), ("photmjsr", ">f4"),
                 ("uncertainty", ">f4")]
    else:
        rows = [(f.filter, f.pupil, f.photmjsr, 0.02 * f.photmjsr) for f in flts]
        dtype = [("filter", "S12"), ("pupil", "S12"), ("photmjsr", ">f4"), ("uncertainty", ">f4")]
    table = np.zeros(len(rows), dtype=dtype)
    for i, row in enumerate(rows):
        table[i] = row
    return table


def _build_photom(f: DetectorFields, sub=None, **_):
    det = f.det
    m = _model(P.PhotomModel, _PHOTOM_TYPES[det.instrument])
    _describe(m, det, "photom", "Synthetic photometric calibration (MJy/sr per DN/s)", None)
    _exptype_keys(m, det.instrument)
    if det.is_miri:
        m.meta.instrument.band = "N/A"
    sr, a2 = _pixar(det)
    _card(m, "PIXAR_SR", sr, "Nominal pixel area in steradians")
    _card(m, "PIXAR_A2", a2, "Nominal pixel area in arcsec^2")
    m.phot_table = photom_table(det)
    return m


def _build_persat(f: DetectorFields, sub, generic=True, **_):
    m = _model(P.PersistenceSatModel)
    _describe(m, f.det, "persat", "Synthetic persistence saturation (full well, DN)", sub, generic)
    m.data = _cut(f.well, sub)
    m.dq = np.zeros(sub.shape, np.uint32)
    m.dq_def = dq_def_table()
    return m


def _build_trapdensity(f: DetectorFields, sub, generic=True, **_):
    m = _model(P.TrapDensityModel)
    _describe(m, f.det, "trapdensity", "Synthetic relative trap density", sub, generic)
    m.data = _cut(f.trapdensity, sub)
    m.dq = np.zeros(sub.shape, np.uint32)
    m.dq_def = dq_def_table()
    return m


#: Trap families (capture0, capture1, capture2, decay_param) of the persistence model.
TRAPPARS = ((180.0, -5.0e-4, 0.0, -1.0 / 300.0), (90.0, -2.0e-3, 0.0, -1.0 / 1500.0),
            (45.0, -8.0e-3, 0.0, -1.0 / 8000.0))


def _build_trappars(f: DetectorFields, sub=None, **_):
    m = _model(P.TrapParsModel)
    _describe(m, f.det, "trappars", "Synthetic trap parameters", None)
    table = np.zeros(len(TRAPPARS), dtype=[("capture0", ">f8"), ("capture1", ">f8"),
                                           ("capture2", ">f8"), ("decay_param", ">f8")])
    for i, row in enumerate(TRAPPARS):
        table[i] = row
    m.trappars_table = table
    return m


def _build_reset(f: DetectorFields, sub, reset_groups=6, **_):
    det = f.det
    m = _model(P.ResetModel)
    _describe(m, det, "reset", "Synthetic MIRI reset anomaly", sub)
    _readpatt_keys(m, det.instrument)
    m.meta.exposure.ngroups = int(reset_groups)
    m.meta.exposure.nints = 2
    amp = _cut(f.reset_amp, sub)
    g = np.arange(int(reset_groups), dtype=np.float32)[:, None, None]
    shape1 = np.exp(-g / 1.5).astype(np.float32)
    sci = np.stack([amp[None] * shape1, 0.35 * amp[None] * shape1])
    refcols = _cut(f.refpix, sub)
    sci[:, :, refcols] = 0.0
    m.data = sci.astype(np.float32)
    m.err = np.full(sci.shape, 0.5, np.float32)
    m.dq = np.zeros(sub.shape, np.uint32)
    m.dq_def = dq_def_table()
    return m


def rscd_table(det: I.Detector) -> np.ndarray:
    table = np.zeros(len(det.subarrays) * 4, dtype=[("subarray", "S17"), ("readpatt", "S12"),
                                                    ("group_skip1", ">i4"), ("group_skip", ">i4")])
    i = 0
    for s in det.subarrays:
        for p in _ALL_READPATTS_MIRI.split("|"):
            table[i] = (s, p, 1, 3)
            i += 1
    return table


def _build_rscd(f: DetectorFields, sub=None, **_):
    m = _model(P.RSCDModel)
    _describe(m, f.det, "rscd", "Synthetic RSCD group-skip table", None)
    m.rscd_table = rscd_table(f.det)
    return m


def _build_distortion(f: DetectorFields, sub=None, **_):
    """The DISTORTION reference as an ASDF tree (written with asdf, not as FITS)."""
    det = f.det
    flts, pups = _elements(det)
    model = W.distortion_model(det)
    meta = {
        "author": AUTHOR, "description": "Synthetic distortion: detector pixels -> V2/V3 (arcsec)",
        "pedigree": PEDIGREE, "reftype": "distortion", "telescope": "JWST",
        "useafter": USEAFTER, "model_type": "DistortionModel", "origin": "jwpipe",
        "title": f"{det.instrument} {det.name} synthetic distortion",
        "input_units": "pixel", "output_units": "arcsec",
        "instrument": {"name": det.instrument, "detector": det.name},
        "exposure": {"type": I.EXP_TYPES[det.instrument][0],
                     "p_exptype": "|".join(I.EXP_TYPES[det.instrument]) + "|"},
        "subarray": {"name": "GENERIC", "xstart": 1, "ystart": 1, "xsize": det.full[1],
                     "ysize": det.full[0], "fastaxis": det.fastaxis, "slowaxis": det.slowaxis},
    }
    if det.instrument == "NIRCAM":
        meta["instrument"].update(module=det.module, channel=det.channel, filter="ANY",
                                  p_filter=flts + "|", pupil="ANY", p_pupil=pups + "|")
    elif det.instrument == "NIRISS":
        meta["instrument"].update(pupil="ANY", p_pupil=pups + "|")
    elif det.is_miri:
        meta["instrument"].update(channel="N/A", band="N/A")
    return {"meta": meta, "model": model}


def _build_sirskernel(f: DetectorFields, sub=None, **_):
    """The SIRSKERNEL reference (ASDF) of one detector: single-tap kernels at lag 0, half the
    weight on each side, for every amplifier. The simulator's 1/f noise is one offset per
    detector row shared by every pixel of the row (``detector.correlated_offsets``), which the
    mean of the row's left and right reference pixels predicts without lag."""
    from .sirs import lagged_coefficients, sirskernel_tree

    det = f.det
    half = np.stack([lagged_coefficients({0: 0.5}, det.full[0])] * 4)
    meta = {
        "author": AUTHOR, "description": "Synthetic SIRS kernels: lag 0, half per side",
        "pedigree": PEDIGREE, "reftype": "sirskernel", "telescope": "JWST",
        "useafter": USEAFTER, "model_type": "SIRSKernelModel", "origin": "jwpipe",
        "instrument": {"name": det.instrument, "detector": det.name},
    }
    return sirskernel_tree({det.name: (half, half)}, meta)


def _build_emicorr(f: DetectorFields, sub=None, **_):
    """The EMICORR reference (ASDF): the synthetic EMI waveforms (:mod:`.emi`) and the
    frequencies to correct per subarray and read speed."""
    from .emi import emicorr_tree

    meta = {
        "author": AUTHOR, "description": "Synthetic MIRI EMI waveforms",
        "pedigree": PEDIGREE, "reftype": "emicorr", "telescope": "JWST",
        "useafter": USEAFTER, "model_type": "EmiModel", "origin": "jwpipe",
        "instrument": {"name": "MIRI", "detector": f.det.name},
    }
    return emicorr_tree(meta)


def _build_pictureframe(f: DetectorFields, sub=None, **_):
    """The NIRSpec PICTUREFRAME reference: the synthetic glow's shape as a full-frame rate."""
    from .picture_frame import REFERENCE_RATE, frame_shape

    m = _model(P.PictureFrameModel)
    _describe(m, f.det, "pictureframe", "Synthetic thermal picture-frame rate image", None)
    m.data = frame_shape(f.shape) * np.float32(REFERENCE_RATE)
    return m


_BUILDERS = {
    "mask": _build_mask, "saturation": _build_saturation, "superbias": _build_superbias,
    "linearity": _build_linearity, "dark": _build_dark, "gain": _build_gain,
    "readnoise": _build_readnoise, "ipc": _build_ipc, "flat": _build_flat, "area": _build_area,
    "photom": _build_photom, "distortion": _build_distortion, "persat": _build_persat,
    "trapdensity": _build_trapdensity, "trappars": _build_trappars, "reset": _build_reset,
    "rscd": _build_rscd, "sirskernel": _build_sirskernel, "emicorr": _build_emicorr,
    "pictureframe": _build_pictureframe,
}


# -- match keys ---------------------------------------------------------------------------------

def _key(instr: str, reftype: str, det: I.Detector, sub: I.Subarray | None,
         flt: I.Filter | None) -> tuple[str, ...]:
    flts, pups = _elements(det)
    vals = []
    for pk in PARKEYS[instr][reftype]:
        if pk == _DET:
            vals.append(det.name)
        elif pk == _SUB:
            vals.append(sub.name)
        elif pk == _RP:
            vals.append(_ALL_READPATTS_MIRI if instr == "MIRI" else I.P_READPATT[instr])
        elif pk == _EXP:
            vals.append("|".join(I.EXP_TYPES[instr]))
        elif pk == _NOUT:
            vals.append(str(sub.noutputs))
        elif pk in _CORNER:
            corner = dict(zip(_CORNER, (sub.xstart, sub.ystart, sub.xsize, sub.ysize),
                              strict=True))
            vals.append(str(corner[pk]))
        elif pk == _FLT:
            vals.append(flt.filter if flt is not None else flts)
        elif pk == _PUP:
            vals.append(flt.pupil if flt is not None else pups)
        elif pk == _CHAN:
            vals.append(det.channel or "N/A")
        elif pk == _BAND:
            vals.append("N/A")
        else:  # pragma: no cover - table and code are kept together
            raise ConfigError(f"no value rule for match parameter {pk}")
    return tuple(vals)


def _jobs(det: I.Detector, subs: list[I.Subarray], flts: list[I.Filter], reftypes):
    """(reftype, key, builder kwargs, extension) for every file a detector needs."""
    instr = det.instrument
    full = I.subarray(det, "FULL")
    for reftype in PARKEYS[instr]:
        if reftypes is not None and reftype not in reftypes:
            continue
        grain = _grain(instr, reftype)
        ext = "asdf" if reftype in ("distortion", "sirskernel", "emicorr") else "fits"
        if grain == "det":
            key = _key(instr, reftype, det, full, None)
            yield reftype, key, {"sub": full, "generic": True}, ext
        elif grain == "sub":
            for sub in subs:
                yield reftype, _key(instr, reftype, det, sub, None), {"sub": sub}, ext
        elif grain == "filter":
            for flt in flts:
                yield reftype, _key(instr, reftype, det, full, flt), {"sub": full, "flt": flt}, ext
        elif grain == "filter_sub":
            for flt in flts:
                for sub in subs:
                    yield (reftype, _key(instr, reftype, det, sub, flt),
                           {"sub": sub, "flt": flt}, ext)


# -- the cache ------------------------------------------------------------------------------------

def _resolve_root(path) -> Path:
    if path is None:
        path = os.environ.get("CRDS_PATH")
        if not path:
            raise ConfigError("no cache folder given and CRDS_PATH is not set")
    return Path(path).expanduser().resolve()


def _select_detectors(instruments, detectors) -> list[I.Detector]:
    if detectors is not None:
        dets = [I.detector(d) for d in ([detectors] if isinstance(detectors, str) else detectors)]
        if instruments is not None:
            want = {str(i).upper() for i in ([instruments] if isinstance(instruments, str)
                                             else instruments)}
            dets = [d for d in dets if d.instrument in want]
        return dets
    names = I.INSTRUMENTS if instruments is None else [
        str(i).upper() for i in ([instruments] if isinstance(instruments, str) else instruments)]
    out = []
    for instr in names:
        if instr not in I.INSTRUMENTS:
            raise ConfigError(f"instrument {instr!r} is not simulated; choose from "
                              f"{', '.join(I.INSTRUMENTS)}")
        out += [I.detector(d) for d in I.INSTRUMENTS[instr]]
    return out


def _select_filters(det: I.Detector, filters) -> list[I.Filter]:
    if filters is None:
        names = I.DEFAULT_CACHE_FILTERS[det.name]
    elif filters == "all":
        names = list(I.FILTERS[det.name])
    else:
        names = [filters] if isinstance(filters, str) else list(filters)
        names = [n for n in names if _has_filter(det, n)]
    return [I.filter_info(det, n) for n in names]


def _has_filter(det, name) -> bool:
    try:
        I.filter_info(det, name)
        return True
    except ConfigError:
        return False


_SERIAL = re.compile(r"_(\d{4})\.(fits|asdf)$")


def _next_file_serial(refdir: Path, stem: str, ctx_spec) -> int:
    used = [int(m.group(1)) for p in refdir.glob(stem + "_*") if (m := _SERIAL.search(p.name))]
    if isinstance(ctx_spec, RmapSpec):
        for dates in ctx_spec.entries.values():
            for fname in dates.values():
                if (m := _SERIAL.search(str(fname))):
                    used.append(int(m.group(1)))
    return max(used, default=0) + 1


def make_crds_cache(path=None, instruments=None, detectors=None, subarrays=None, filters=None,
                    *, reftypes=None, seed: int = 0, dark_frames: int | None = None,
                    reset_groups: int = 6, overwrite: bool = False, log=None) -> Path:
    """Write (or extend) a local CRDS cache of synthetic reference files.

    Parameters
    ----------
    path : str or Path, optional
        Cache root (``CRDS_PATH``); defaults to the ``CRDS_PATH`` environment variable.
    instruments : str or sequence of str, optional
        ``NIRCAM``, ``NIRISS``, ``NIRSPEC``, ``MIRI`` (default: all, or those of ``detectors``).
    detectors : str or sequence of str, optional
        e.g. ``["NRCA1"]`` (default: every simulated detector of the instruments).
    subarrays : str or sequence of str, optional
        Subarrays to write per-subarray references for (default: every defined one, ``FULL``
        included). A detector none of whose subarrays is requested is skipped.
    filters : sequence of str or "all", optional
        Filters to write flats for (default: a few per detector, see
        :data:`~jwpipe.simulate.instruments.DEFAULT_CACHE_FILTERS`).
    reftypes : sequence of str, optional
        Only these reference types (the mappings still declare every type).
    seed : int
        Seed of the detector truth fields.
    dark_frames : int, optional
        Frames per dark (default: about 32 MB per dark, 10 to 100 frames).
    reset_groups : int
        Groups in MIRI reset-anomaly references.
    overwrite : bool
        Rewrite files whose match keys the cache already has (default: keep them).
    log : callable, optional
        Called with a progress message per file written.

    Returns
    -------
    Path
        The cache root. Files go to ``references/jwst/<instrument>/``, mappings (new versions on
        every change) to ``mappings/jwst/``; ``config/jwst/server_config`` names the context.

    Notes
    -----
    Sizes: one detector with one small subarray about 0.25 GB (saturation, flats, area and the
    persistence types are full frame whatever the subarrays); one near-IR detector with FULL
    about 0.8 GB (the full-frame dark alone 0.35 GB); every default about 4.7 GB.
    """
    root = _resolve_root(path)
    dets = _select_detectors(instruments, detectors)
    if not dets:
        raise ConfigError("no detector selected for the cache")
    want_subs = None if subarrays is None else {
        s.upper() for s in ([subarrays] if isinstance(subarrays, str) else subarrays)}
    reftypes = None if reftypes is None else {r.lower() for r in (
        [reftypes] if isinstance(reftypes, str) else reftypes)}
    ctx: Context = read_context(root)
    changed: set = set()
    for instr in sorted({d.instrument for d in dets}):
        types = ctx.instruments.setdefault(instr, {})
        for reftype, parkey in PARKEYS[instr].items():
            spec = types.get(reftype)
            if isinstance(spec, RmapSpec) and tuple(spec.parkey) != parkey:
                raise ConfigError(f"{root}: the cache's {instr} {reftype} rmap selects on "
                                  f"{spec.parkey}, not {parkey}; use another folder")
            if not isinstance(spec, RmapSpec):
                types[reftype] = RmapSpec(instr, reftype, parkey)
                changed.add((instr, reftype))
        for reftype in NOT_APPLICABLE[instr]:
            if reftype not in types:
                types[reftype] = "N/A"
                changed.add(instr)
    written = 0
    for det in dets:
        subs = [s for name, s in det.subarrays.items() if want_subs is None or name in want_subs]
        if not subs:
            continue
        fields = detector_fields(det, seed)
        flts = _select_filters(det, filters)
        instr = det.instrument
        refdir = root / "references" / "jwst" / instr.lower()
        refdir.mkdir(parents=True, exist_ok=True)
        for reftype, key, kwargs, ext in _jobs(det, subs, flts, reftypes):
            spec = ctx.instruments[instr][reftype]
            if key in spec.entries and not overwrite:
                continue
            stem = f"jwst_{instr.lower()}_{reftype}"
            fname = f"{stem}_{_next_file_serial(refdir, stem, spec):04d}.{ext}"
            obj = _BUILDERS[reftype](fields, dark_frames=dark_frames, reset_groups=reset_groups,
                                     **kwargs)
            _save(obj, refdir / fname)
            spec.add(key, USEAFTER, fname)
            changed.add((instr, reftype))
            written += 1
            if log is not None:
                log(f"{fname}: {reftype} {' '.join(key)}")
    if changed:
        write_context(root, ctx, changed)
    return root


def _save(obj, path: Path) -> None:
    if isinstance(obj, dict):
        import asdf

        from ..datamodels.fits_io import atomic_path

        obj["meta"]["filename"] = path.name
        from datetime import datetime, timezone

        obj["meta"]["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        with atomic_path(path) as tmp:
            asdf.AsdfFile(obj).write_to(tmp)
    else:
        obj.save(path)
