"""Instrument facts the synthetic observatory needs: detectors, subarrays, readouts, filters.

Values are the public, documented ones where they matter to the pipeline (subarray corners and
sizes, readout axes, frame times, readout patterns, EXP_TYPE names); detector physics (gain, noise,
well depth, dark current) and the aperture geometry (V2/V3 reference points, pixel scales,
photometric conversions) are plausible round numbers, not calibrations. Everything is in plain
tables, so adding a detector or a subarray is one line.

Coordinates follow the JWST "DMS" (science) orientation: numpy ``[y, x]``, FITS ``SUBSTRT1/2``
1-based in full-frame pixels. ``FASTAXIS``/``SLOWAXIS`` give the detector readout directions in
that frame (``1``/``2`` = +x/+y, negative = reversed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = [
    "Detector", "Subarray", "ReadPattern", "Filter", "INSTRUMENTS", "DETECTORS", "READPATTS",
    "detector", "subarray", "readpattern", "filter_info", "frame_time", "instrument_of",
    "default_readpatt", "default_exp_type", "default_filter", "EXP_TYPES", "P_READPATT",
]


@dataclass(frozen=True)
class Subarray:
    """A detector readout region (full-frame 1-based corner and size, in DMS orientation)."""

    name: str
    xstart: int
    ystart: int
    xsize: int
    ysize: int
    noutputs: int = 1

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(y, x)`` slices of this region in a full-frame array."""
        return (slice(self.ystart - 1, self.ystart - 1 + self.ysize),
                slice(self.xstart - 1, self.xstart - 1 + self.xsize))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ysize, self.xsize)


@dataclass(frozen=True)
class Detector:
    """One sensor chip assembly and its (synthetic) physical properties.

    Attributes
    ----------
    gain : float
        Mean gain, electrons per DN.
    rn_cds : float
        Mean correlated-double-sampling read noise, DN.
    dark : float
        Mean dark current, DN/s.
    well : float
        Mean hard saturation level, DN above bias.
    bias : float
        Mean bias (reset) level, DN.
    ipc_alpha : float
        Coupling to each of the 4 nearest neighbours.
    pixel_scale : (float, float)
        Arcsec per pixel along detector x and y.
    v2_ref, v3_ref, v3_yangle, vparity :
        Full-frame aperture reference point in the telescope V2/V3 frame (arcsec), the angle of
        the ideal Y axis from V3 (deg), and the parity of the ideal frame.
    """

    name: str
    instrument: str
    full: tuple[int, int]  # (ny, nx)
    fastaxis: int
    slowaxis: int
    gain: float
    rn_cds: float
    dark: float
    well: float
    bias: float
    ipc_alpha: float
    pixel_scale: tuple[float, float]
    v2_ref: float
    v3_ref: float
    v3_yangle: float
    vparity: int
    module: str | None = None
    channel: str | None = None
    refpix: int = 4               # near-IR: 4-pixel border on every side
    ref_columns: tuple[int, int] = (0, 0)  # MIRI: reference columns at left, right
    subarrays: dict = field(default_factory=dict)

    @property
    def is_miri(self) -> bool:
        return self.instrument == "MIRI"


def _nircam_subarrays(long_wave: bool) -> dict:
    subs = [
        Subarray("FULL", 1, 1, 2048, 2048, 4),
        Subarray("SUB640", 1409, 1409, 640, 640),
        Subarray("SUB320", 1729, 1729, 320, 320),
        Subarray("SUB160", 1889, 1889, 160, 160),
        Subarray("SUB400P", 1, 1, 400, 400),
        Subarray("SUB160P", 1, 1, 160, 160),
        Subarray("SUB64P", 1, 1, 64, 64),
        Subarray("SUBGRISM256", 1, 1793, 2048, 256, 4),
        Subarray("SUBGRISM128", 1, 1921, 2048, 128, 4),
        Subarray("SUBGRISM64", 1, 1985, 2048, 64, 4),
    ]
    return {s.name: s for s in subs}


def _niriss_subarrays() -> dict:
    subs = [
        Subarray("FULL", 1, 1, 2048, 2048, 4),
        Subarray("SUBSTRIP256", 1, 1793, 2048, 256),
        Subarray("SUBSTRIP96", 1, 1803, 2048, 96),
        Subarray("SUB80", 1, 1, 80, 80),
        Subarray("SUB64", 1, 1, 64, 64),
        Subarray("SUB128", 1, 1, 128, 128),
        Subarray("SUB256", 1, 1, 256, 256),
    ]
    return {s.name: s for s in subs}


def _nirspec_subarrays(ystart: int) -> dict:
    # Corners from the NIRSpec subarray definitions (PRISM positions); sizes 32 rows.
    subs = [
        Subarray("FULL", 1, 1, 2048, 2048, 4),
        Subarray("SUB2048", 1, ystart, 2048, 32),
        Subarray("SUB1024A", 1, ystart, 1024, 32),
        Subarray("SUB1024B", 1025, ystart, 1024, 32),
        Subarray("SUB512", 1025, ystart, 512, 32),
    ]
    return {s.name: s for s in subs}


def _miri_subarrays() -> dict:
    subs = [
        Subarray("FULL", 1, 1, 1032, 1024, 4),
        Subarray("BRIGHTSKY", 457, 51, 512, 512, 4),
        Subarray("SUB256", 413, 51, 256, 256, 4),
        Subarray("SUB128", 1, 889, 136, 128, 4),
        Subarray("SUB64", 1, 779, 72, 64, 4),
    ]
    return {s.name: s for s in subs}


DETECTORS: dict[str, Detector] = {d.name: d for d in (
    Detector("NRCA1", "NIRCAM", (2048, 2048), -1, 2, gain=2.05, rn_cds=9.0, dark=0.003,
             well=47000.0, bias=12500.0, ipc_alpha=0.005, pixel_scale=(0.0311, 0.0313),
             v2_ref=120.6714, v3_ref=-527.3877, v3_yangle=-0.5545, vparity=-1, module="A",
             channel="SHORT", subarrays=_nircam_subarrays(False)),
    Detector("NRCALONG", "NIRCAM", (2048, 2048), -1, 2, gain=1.82, rn_cds=8.0, dark=0.02,
             well=52000.0, bias=11800.0, ipc_alpha=0.006, pixel_scale=(0.0629, 0.0630),
             v2_ref=86.1035, v3_ref=-493.2276, v3_yangle=-0.2608, vparity=-1, module="A",
             channel="LONG", subarrays=_nircam_subarrays(True)),
    Detector("NIS", "NIRISS", (2048, 2048), -2, -1, gain=1.62, rn_cds=11.0, dark=0.01,
             well=45000.0, bias=13000.0, ipc_alpha=0.005, pixel_scale=(0.0656, 0.0658),
             v2_ref=-289.8484, v3_ref=-697.3771, v3_yangle=-0.5776, vparity=-1,
             subarrays=_niriss_subarrays()),
    Detector("NRS1", "NIRSPEC", (2048, 2048), 2, 1, gain=1.0, rn_cds=14.0, dark=0.006,
             well=55000.0, bias=11000.0, ipc_alpha=0.004, pixel_scale=(0.1, 0.1),
             v2_ref=378.5631, v3_ref=-428.6466, v3_yangle=138.5, vparity=-1,
             subarrays=_nirspec_subarrays(957)),
    Detector("NRS2", "NIRSPEC", (2048, 2048), -2, -1, gain=1.05, rn_cds=15.0, dark=0.007,
             well=55000.0, bias=12000.0, ipc_alpha=0.004, pixel_scale=(0.1, 0.1),
             v2_ref=378.5631, v3_ref=-428.6466, v3_yangle=138.5, vparity=-1,
             subarrays=_nirspec_subarrays(1059)),
    Detector("MIRIMAGE", "MIRI", (1024, 1032), 1, 2, gain=4.0, rn_cds=10.0, dark=0.3,
             well=45000.0, bias=11000.0, ipc_alpha=0.01, pixel_scale=(0.1108, 0.1108),
             v2_ref=-453.5584, v3_ref=-373.8072, v3_yangle=4.4500, vparity=-1, refpix=0,
             ref_columns=(4, 4), subarrays=_miri_subarrays()),
)}

INSTRUMENTS: dict[str, tuple[str, ...]] = {
    "NIRCAM": ("NRCA1", "NRCALONG"),
    "NIRISS": ("NIS",),
    "NIRSPEC": ("NRS1", "NRS2"),
    "MIRI": ("MIRIMAGE",),
}


@dataclass(frozen=True)
class ReadPattern:
    """Frames averaged per group and frames dropped between groups."""

    name: str
    nframes: int
    groupgap: int


READPATTS: dict[str, dict[str, ReadPattern]] = {
    "NIRCAM": {p.name: p for p in (
        ReadPattern("RAPID", 1, 0), ReadPattern("BRIGHT1", 1, 1), ReadPattern("BRIGHT2", 2, 0),
        ReadPattern("SHALLOW2", 2, 3), ReadPattern("SHALLOW4", 4, 1),
        ReadPattern("MEDIUM2", 2, 8), ReadPattern("MEDIUM8", 8, 2),
        ReadPattern("DEEP2", 2, 18), ReadPattern("DEEP8", 8, 12))},
    "NIRISS": {p.name: p for p in (ReadPattern("NISRAPID", 1, 0), ReadPattern("NIS", 4, 0))},
    "NIRSPEC": {p.name: p for p in (ReadPattern("NRSRAPID", 1, 0), ReadPattern("NRS", 4, 0))},
    "MIRI": {p.name: p for p in (ReadPattern("FASTR1", 1, 0), ReadPattern("FAST", 1, 0))},
}

#: Readout-pattern lists as written in ``P_READPA`` (without the trailing bar) and in rmaps.
P_READPATT = {inst: "|".join(pats) for inst, pats in READPATTS.items()}

#: EXP_TYPE values the synthetic references apply to, per instrument.
EXP_TYPES = {
    "NIRCAM": ("NRC_IMAGE", "NRC_TSIMAGE", "NRC_FLAT", "NRC_LED", "NRC_WFSC", "NRC_TACQ",
               "NRC_TACONFIRM", "NRC_FOCUS", "NRC_DARK", "NRC_GRISM", "NRC_TSGRISM", "NRC_WFSS"),
    "NIRISS": ("NIS_IMAGE", "NIS_AMI", "NIS_SOSS", "NIS_WFSS", "NIS_TACQ", "NIS_TACONFIRM",
               "NIS_FOCUS", "NIS_DARK", "NIS_LAMP", "NIS_EXTCAL"),
    "NIRSPEC": ("NRS_FIXEDSLIT", "NRS_BRIGHTOBJ", "NRS_MSASPEC", "NRS_IFU", "NRS_IMAGE",
                "NRS_DARK", "NRS_LAMP", "NRS_AUTOWAVE", "NRS_AUTOFLAT", "NRS_TACQ", "NRS_WATA",
                "NRS_MSATA", "NRS_CONFIRM", "NRS_FOCUS", "NRS_MIMF"),
    "MIRI": ("MIR_IMAGE", "MIR_TACQ", "MIR_LYOT", "MIR_4QPM", "MIR_CORONCAL", "MIR_DARKIMG",
             "MIR_FLATIMAGE", "MIR_FLATIMAGE-EXT", "MIR_TACONFIRM"),
}

_DEFAULT_READPATT = {"NIRCAM": "RAPID", "NIRISS": "NISRAPID", "NIRSPEC": "NRSRAPID",
                     "MIRI": "FASTR1"}
_DEFAULT_EXP_TYPE = {"NIRCAM": "NRC_IMAGE", "NIRISS": "NIS_IMAGE", "NIRSPEC": "NRS_FIXEDSLIT",
                     "MIRI": "MIR_IMAGE"}


@dataclass(frozen=True)
class Filter:
    """An optical element pair and its (synthetic) photometric calibration.

    ``photmjsr`` is MJy/sr per DN/s; ``background`` a typical sky (zodiacal + thermal) surface
    brightness in MJy/sr; ``wavelength`` the pivot wavelength in microns.
    """

    filter: str
    pupil: str
    wavelength: float
    photmjsr: float
    background: float


def _filters(rows) -> dict[str, Filter]:
    return {key: Filter(*vals) for key, *vals in rows}


# Keyed by the name users give (the element that defines the bandpass).
FILTERS: dict[str, dict[str, Filter]] = {
    "NRCA1": _filters([
        ("F070W", "F070W", "CLEAR", 0.704, 0.62, 0.12),
        ("F090W", "F090W", "CLEAR", 0.902, 0.52, 0.13),
        ("F115W", "F115W", "CLEAR", 1.154, 0.40, 0.14),
        ("F150W", "F150W", "CLEAR", 1.501, 0.28, 0.15),
        ("F200W", "F200W", "CLEAR", 1.989, 0.22, 0.15),
        ("F210M", "F210M", "CLEAR", 2.093, 0.95, 0.15),
    ]),
    "NRCALONG": _filters([
        ("F277W", "F277W", "CLEAR", 2.762, 0.24, 0.15),
        ("F356W", "F356W", "CLEAR", 3.568, 0.20, 0.18),
        ("F444W", "F444W", "CLEAR", 4.408, 0.30, 0.30),
        ("F410M", "F410M", "CLEAR", 4.082, 0.85, 0.25),
    ]),
    "NIS": _filters([
        ("F090W", "CLEAR", "F090W", 0.901, 0.90, 0.13),
        ("F115W", "CLEAR", "F115W", 1.149, 0.75, 0.14),
        ("F150W", "CLEAR", "F150W", 1.493, 0.55, 0.15),
        ("F200W", "CLEAR", "F200W", 1.985, 0.45, 0.15),
        ("F277W", "F277W", "CLEARP", 2.762, 0.25, 0.15),
        ("F356W", "F356W", "CLEARP", 3.529, 0.20, 0.18),
        ("F444W", "F444W", "CLEARP", 4.350, 0.25, 0.30),
        ("F480M", "F480M", "NRM", 4.815, 2.50, 0.35),
        ("GR700XD", "CLEAR", "GR700XD", 1.500, 0.50, 0.15),
    ]),
    "NRS1": _filters([
        ("CLEAR", "CLEAR", "N/A", 2.5, 1.0, 0.15),
        ("F290LP", "F290LP", "N/A", 4.0, 1.0, 0.2),
    ]),
    "NRS2": _filters([
        ("CLEAR", "CLEAR", "N/A", 2.5, 1.0, 0.15),
        ("F290LP", "F290LP", "N/A", 4.0, 1.0, 0.2),
    ]),
    "MIRIMAGE": _filters([
        ("F560W", "F560W", "N/A", 5.635, 0.40, 2.0),
        ("F770W", "F770W", "N/A", 7.639, 0.26, 8.0),
        ("F1000W", "F1000W", "N/A", 9.953, 0.50, 20.0),
        ("F1130W", "F1130W", "N/A", 11.309, 1.10, 30.0),
        ("F1280W", "F1280W", "N/A", 12.810, 0.40, 40.0),
        ("F1500W", "F1500W", "N/A", 15.064, 0.35, 60.0),
        ("F1800W", "F1800W", "N/A", 17.984, 0.45, 100.0),
        ("F2100W", "F2100W", "N/A", 20.795, 0.35, 150.0),
        ("F2550W", "F2550W", "N/A", 25.365, 1.40, 300.0),
    ]),
}

_DEFAULT_FILTER = {"NRCA1": "F200W", "NRCALONG": "F444W", "NIS": "F150W", "NRS1": "CLEAR",
                   "NRS2": "CLEAR", "MIRIMAGE": "F770W"}

#: Filters whose flats a default cache holds (photom tables always list every filter).
DEFAULT_CACHE_FILTERS = {"NRCA1": ("F150W", "F200W"), "NRCALONG": ("F356W", "F444W"),
                         "NIS": ("F150W", "F200W", "GR700XD"), "NRS1": (), "NRS2": (),
                         "MIRIMAGE": ("F770W", "F1130W")}

#: MIRI frame times (s) per subarray for the FAST patterns.
_MIRI_TFRAME = {"FULL": 2.77504, "BRIGHTSKY": 0.86528, "SUB256": 0.29952, "SUB128": 0.11904,
                "SUB64": 0.08544}


def instrument_of(detector_name: str) -> str:
    return detector(detector_name).instrument


def detector(name: str) -> Detector:
    """The :class:`Detector` called ``name`` (case-insensitive)."""
    key = str(name).upper()
    if key not in DETECTORS:
        raise ConfigError(f"detector {name!r} is not simulated; choose one of "
                          f"{', '.join(DETECTORS)}")
    return DETECTORS[key]


def subarray(det: Detector | str, name: str) -> Subarray:
    """The :class:`Subarray` ``name`` of a detector."""
    det = detector(det) if isinstance(det, str) else det
    key = str(name).upper()
    if key not in det.subarrays:
        raise ConfigError(f"subarray {name!r} is not defined for {det.name}; choose one of "
                          f"{', '.join(det.subarrays)}")
    return det.subarrays[key]


def readpattern(instrument: str, name: str | None) -> ReadPattern:
    pats = READPATTS[instrument]
    key = str(name or _DEFAULT_READPATT[instrument]).upper()
    if key not in pats:
        raise ConfigError(f"readout pattern {name!r} is not simulated for {instrument}; choose "
                          f"one of {', '.join(pats)}")
    return pats[key]


def filter_info(det: Detector | str, name: str | None) -> Filter:
    det = detector(det) if isinstance(det, str) else det
    table = FILTERS[det.name]
    key = str(name or _DEFAULT_FILTER[det.name]).upper()
    if key not in table:
        for f in table.values():  # accept the element name as well (e.g. NIRISS PUPIL)
            if key in (f.filter, f.pupil) and f.pupil != "N/A":
                return f
        raise ConfigError(f"filter {name!r} is not simulated for {det.name}; choose one of "
                          f"{', '.join(table)}")
    return table[key]


def default_readpatt(instrument: str) -> str:
    return _DEFAULT_READPATT[instrument]


def default_exp_type(instrument: str) -> str:
    return _DEFAULT_EXP_TYPE[instrument]


def default_filter(det: str) -> str:
    return _DEFAULT_FILTER[detector(det).name]


def frame_time(det: Detector, sub: Subarray) -> float:
    """Frame time TFRAME in seconds for a detector region.

    Near-IR: 10 us per pixel, 12 extra pixel times per line and one (four outputs) or two (one
    output) extra lines per frame, counted along the fast (line) and slow axes of the readout.
    MIRI: the documented per-subarray values for the FAST modes.
    """
    if det.is_miri:
        if sub.name not in _MIRI_TFRAME:
            raise ConfigError(f"no MIRI frame time known for subarray {sub.name}")
        return _MIRI_TFRAME[sub.name]
    nfast, nslow = (sub.xsize, sub.ysize) if abs(det.fastaxis) == 1 else (sub.ysize, sub.xsize)
    if sub.noutputs == 4:
        return round((nfast // 4 + 12) * (nslow + 1) * 1e-5, 6)
    return round((nfast + 12) * (nslow + 2) * 1e-5, 6)
