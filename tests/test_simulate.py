"""The synthetic observatory: reference files, CRDS mappings, raw exposures and their truth."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from jwpipe import datamodels as dm
from jwpipe import dq
from jwpipe.errors import ReferenceNotFoundError
from jwpipe.references import find_reference
from jwpipe.simulate import (
    Galaxy,
    PointSource,
    Scene,
    make_crds_cache,
    simulate_exposure,
    simulate_imaging_observation,
    simulate_time_series,
)
from jwpipe.simulate.crdsmaps import read_context, rmap_text

pytestmark = pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")

SDM_CLASS = {  # REFTYPE -> stdatamodels class name
    "MASK": "MaskModel", "SATURATION": "SaturationModel", "SUPERBIAS": "SuperBiasModel",
    "LINEARITY": "LinearityModel", "GAIN": "GainModel", "READNOISE": "ReadnoiseModel",
    "IPC": "IPCModel", "FLAT": "FlatModel", "AREA": "PixelAreaModel", "RESET": "ResetModel",
    "RSCD": "RSCDModel", "PERSAT": "PersistenceSatModel", "TRAPDENSITY": "TrapDensityModel",
    "TRAPPARS": "TrapParsModel",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crds")
    make_crds_cache(root, detectors=["NRCA1"], subarrays=["SUB160"], filters=["F200W"], seed=1)
    # A second call extends the cache: new mapping versions, the NIRCam entries kept.
    make_crds_cache(root, detectors=["MIRIMAGE"], subarrays=["SUB64"], filters=["F770W"], seed=1)
    return root


@pytest.fixture(scope="module")
def nrc(cache, tmp_path_factory):
    """A NIRCam SUB160 exposure with every effect on."""
    out = tmp_path_factory.mktemp("nrc")
    return simulate_exposure(detector="NRCA1", subarray="SUB160", ngroups=6, nints=2,
                             crds_path=cache, output_dir=out, seed=42, cosmic_rays=2e-3,
                             zeroframe=True, roll=37.0)


def _scene(*rates):
    """Stars of the given rates (DN/s) spread over the SUB160 field, plus a galaxy and sky."""
    stars = [PointSource(80.5 + 0.0004 * np.cos(k) * (1 + k % 3), -69.5 + 0.00013 * np.sin(k)
                         * (1 + k % 3), rate=r) for k, r in enumerate(rates)]
    return Scene(stars=stars, galaxies=[Galaxy(80.4996, -69.5006, rate=3000.0, r_eff=0.2)],
                 background=0.3)


def _noiseless(cache, out, **kw):
    opts = dict(detector="NRCA1", subarray="SUB160", ngroups=6, nints=1, noise=False,
                cosmic_rays=0.0, snowballs=0.0, crds_path=cache, output_dir=out, seed=7,
                scene=_scene(300.0, 1000.0, 3000.0, 1e4, 3e4, 1e5))
    opts.update(kw)
    return simulate_exposure(**opts)


# -- an independent reading of the CRDS mapping files ---------------------------------------------

def _parse_mapping(path: Path):
    """(header, selector) of a mapping, checking it is the CRDS Python-literal syntax."""
    tree = ast.parse(path.read_text())
    names = [s.targets[0].id for s in tree.body]
    assert names == ["header", "selector"], path
    header = ast.literal_eval(tree.body[0].value)
    sel = tree.body[1].value
    return header, sel


def _rmap_rules(sel):
    assert isinstance(sel, ast.Call) and sel.func.id == "Match"
    rules = {}
    for k, v in zip(sel.args[0].keys, sel.args[0].values, strict=True):
        key = ast.literal_eval(k)
        assert isinstance(v, ast.Call) and v.func.id == "UseAfter"
        rules[key if isinstance(key, tuple) else (key,)] = ast.literal_eval(v.args[0])
    return rules


def _select(root: Path, params: dict, reftype: str):
    """Best reference by the CRDS rules (exact / or-list / N/A don't care, latest UseAfter)."""
    mapdir = root / "mappings" / "jwst"
    server = ast.literal_eval((root / "config" / "jwst" / "server_config").read_text())
    _, pmap = _parse_mapping(mapdir / server["operational_context"])
    imap = ast.literal_eval(pmap)[params["META.INSTRUMENT.NAME"]]
    _, isel = _parse_mapping(mapdir / imap)
    rmap = ast.literal_eval(isel)[reftype.upper()]
    if rmap == "N/A":
        return "N/A"
    header, sel = _parse_mapping(mapdir / rmap)
    match_keys, date_keys = header["parkey"]
    assert date_keys == ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")
    when = f"{params['META.OBSERVATION.DATE']} {params['META.OBSERVATION.TIME']}"[:19]
    best = None
    for key, dates in _rmap_rules(sel).items():
        weight = 0
        for rule, pk in zip(key, match_keys, strict=True):
            if rule == "N/A":
                continue
            value = str(params.get(pk, "")).upper()
            alts = rule.split("|")
            if value not in alts and not any(_num(value) is not None and _num(value) == _num(a)
                                             for a in alts):
                break
            weight += 1
        else:
            usable = sorted(d for d in dates if d <= when)
            if usable and (best is None or weight > best[0]):
                best = (weight, dates[usable[-1]])
    if best is None:
        return None
    return root / "references" / "jwst" / params["META.INSTRUMENT.NAME"].lower() / best[1]


def _num(text):
    try:
        return float(text)
    except ValueError:
        return None


def _params(path) -> dict:
    m = dm.open(path)
    return {k.upper(): v for k, v in m.meta.to_flat_dict().items()}


# -- the cache ------------------------------------------------------------------------------------

def test_cache_layout_and_context(cache):
    mapdir = cache / "mappings" / "jwst"
    server = ast.literal_eval((cache / "config" / "jwst" / "server_config").read_text())
    assert server["operational_context"] == "jwst_0002.pmap"  # extended once
    assert (mapdir / "jwst_0001.pmap").exists()               # old context kept
    header, sel = _parse_mapping(mapdir / "jwst_0002.pmap")
    assert header["mapping"] == "PIPELINE" and header["parkey"] == ("META.INSTRUMENT.NAME",)
    imaps = ast.literal_eval(sel)
    assert set(imaps) == {"NIRCAM", "MIRI"}
    for instr, imap in imaps.items():
        h, s = _parse_mapping(mapdir / imap)
        assert h["parkey"] == ("REFTYPE",) and h["instrument"] == instr
        types = ast.literal_eval(s)
        for reftype, rmap in types.items():
            if rmap == "N/A":
                continue
            rh, rsel = _parse_mapping(mapdir / rmap)
            assert rh["classes"] == ("Match", "UseAfter")
            assert rh["filekind"] == reftype and rh["mapping"] == "REFERENCE"
            assert rh["name"] == rmap and len(rh["sha1sum"]) == 40
            for key, dates in _rmap_rules(rsel).items():
                assert len(key) == len(rh["parkey"][0])
                for date, fname in dates.items():
                    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", date)
                    pattern = rf"jwst_{instr.lower()}_{reftype.lower()}_\d{{4}}\.(fits|asdf)"
                    assert re.fullmatch(pattern, fname)
                    assert (cache / "references" / "jwst" / instr.lower() / fname).exists()
    nircam = ast.literal_eval(_parse_mapping(mapdir / imaps["NIRCAM"])[1])
    assert nircam["REFPIX"] == "N/A" and nircam["RSCD"] == "N/A"
    miri = ast.literal_eval(_parse_mapping(mapdir / imaps["MIRI"])[1])
    assert miri["SUPERBIAS"] == "N/A" and miri["RESET"] != "N/A" and miri["RSCD"] != "N/A"


def test_rmaps_select_the_references_the_simulator_used(cache, nrc):
    params = _params(nrc.uncal_path)
    for reftype, used in nrc.references.items():
        expected = _select(cache, params, reftype)
        assert expected is not None, reftype
        assert str(expected) == str(used) or expected == used == "N/A", reftype
    # A subarray the cache has no per-subarray files for selects nothing.
    other = dict(params, **{"META.SUBARRAY.NAME": "SUB320"})
    assert _select(cache, other, "mask") is None
    # A date before every USEAFTER selects nothing.
    early = dict(params, **{"META.OBSERVATION.DATE": "2010-01-01"})
    assert _select(cache, early, "gain") is None


def test_pipeline_reference_lookup_agrees(cache, nrc):
    """The pipeline's lookup, on the uncal file's own metadata, picks the files simulated with."""
    meta = dm.open(nrc.uncal_path).meta
    for reftype, used in nrc.references.items():
        got = find_reference(reftype, meta, crds_path=cache)
        assert got == "N/A" if used == "N/A" else Path(got).resolve() == Path(used).resolve()


def test_context_reads_back_through_the_pipeline_parser(cache):
    """read_context (jwpipe.references' parser) recovers every rule the writer wrote."""
    mapdir = cache / "mappings" / "jwst"
    ctx = read_context(cache)
    assert ctx.pmap == "jwst_0002.pmap" and set(ctx.instruments) == {"NIRCAM", "MIRI"}
    for instr, types in ctx.instruments.items():
        imap = ast.literal_eval(_parse_mapping(mapdir / ctx.imaps[instr])[1])
        assert {k.lower() for k in imap} == set(types)
        for reftype, spec in types.items():
            if spec == "N/A":
                assert imap[reftype.upper()] == "N/A"
                continue
            assert spec.name == imap[reftype.upper()] and spec.entries, reftype
            header, _ = _parse_mapping(mapdir / spec.name)
            assert rmap_text(spec, spec.name, header["derived_from"]) == \
                (mapdir / spec.name).read_text()
    assert read_context(cache / "nothing").pmap is None


def test_reference_named_by_the_cache_but_missing(cache, nrc, tmp_path):
    """Rules without their files: the simulator says which file is missing."""
    import shutil

    from jwpipe.simulate import instruments as I
    from jwpipe.simulate.detector import load_detector

    shutil.copytree(cache / "mappings", tmp_path / "mappings")
    shutil.copytree(cache / "config", tmp_path / "config")
    det = I.detector("NRCA1")
    with pytest.raises(ReferenceNotFoundError, match="reference .*_0001.fits is named by the "
                                                     "cache but missing"):
        load_detector(_params(nrc.uncal_path), det, I.subarray(det, "SUB160"),
                      I.filter_info(det, "F200W"), crds_path=tmp_path)


def test_references_open_as_the_right_models(cache):
    import stdatamodels.jwst.datamodels as sdm

    files = sorted((cache / "references" / "jwst").rglob("jwst_*"))
    assert len(files) > 25
    for path in files:
        if path.suffix == ".asdf" and "_sirskernel_" in path.name:
            with warnings.catch_warnings():
                warnings.simplefilter("error", category=UserWarning)
                m = sdm.SIRSKernelModel(path, strict_validation=True)
            m.validate()
            detector = m.meta.instrument.detector.lower()
            assert m[detector].gamma.shape == m[detector].zeta.shape == (4, 1025)
            continue
        if path.suffix == ".asdf" and "_emicorr_" in path.name:
            with warnings.catch_warnings():
                warnings.simplefilter("error", category=UserWarning)
                m = sdm.EmiModel(path, strict_validation=True)
            m.validate()
            assert m.frequencies.Hz390.frequency == 390.625
            assert len(m.frequencies.Hz390.phase_amplitudes) == 256
            continue
        if path.suffix == ".asdf":
            with warnings.catch_warnings():
                warnings.simplefilter("error", category=UserWarning)
                m = sdm.DistortionModel(path, strict_validation=True)
            assert m.meta.input_units == "pixel" and m.meta.output_units == "arcsec"
            v2, v3 = m.model(1023.5, 1023.5)
            assert abs(v2) < 1000 and abs(v3) < 1000
            x, y = m.model.inverse(v2, v3)
            assert abs(x - 1023.5) < 1e-3 and abs(y - 1023.5) < 1e-3
            continue
        header = fits.getheader(path)
        reftype = header["REFTYPE"]
        ours = dm.open(path)
        with sdm.open(path, strict_validation=True) as theirs:
            name = type(theirs).__name__
            if reftype == "DARK":
                assert name == ("DarkMIRIModel" if header["INSTRUME"] == "MIRI" else "DarkModel")
            elif reftype == "PHOTOM":
                assert name == {"NIRCAM": "NrcImgPhotomModel",
                                "MIRI": "MirImgPhotomModel"}[header["INSTRUME"]]
            else:
                assert name == SDM_CLASS[reftype], path.name
                assert type(ours).__name__ == name
            theirs.validate()
        assert header["USEAFTER"] == "2014-10-01T00:00:00"
        assert header["PEDIGREE"] and header["AUTHOR"] and header["DESCRIP"]
        for key in ("P_READPA", "P_EXP_TY", "P_FILTER", "P_PUPIL"):
            if key in header:
                assert header[key].endswith("|")


def test_reference_contents(cache):
    ref = {p.name: p for p in (cache / "references" / "jwst").rglob("*.fits")}

    def find(instr, reftype, sub=None):
        for p in ref.values():
            h = fits.getheader(p)
            if h["INSTRUME"] == instr and h["REFTYPE"] == reftype and \
                    (sub is None or h.get("SUBARRAY") == sub):
                return p
        raise AssertionError((instr, reftype, sub))

    mask = dm.open(find("NIRCAM", "MASK", "SUB160"))
    d = mask.dq
    assert d.shape == (160, 160)  # SUB160 at (1889, 1889): right and top edges are refpix
    assert np.all(d[:, -4:] & dq.REFERENCE_PIXEL) and np.all(d[-4:, :] & dq.REFERENCE_PIXEL)
    assert not np.any(d[:-4, :-4] & dq.REFERENCE_PIXEL)
    assert np.any(d & dq.HOT) and set(mask.dq_def.dtype.names) == {"BIT", "VALUE", "NAME",
                                                                   "DESCRIPTION"}
    miri_mask = dm.open(find("MIRI", "MASK", "SUB64")).dq  # SUB64 starts at column 1
    assert np.all(miri_mask[:, :4] & dq.REFERENCE_PIXEL)
    dark = dm.open(find("NIRCAM", "DARK", "SUB160"))
    assert np.all(dark.data[0] == 0) and np.all(np.diff(dark.data, axis=0) >= 0)
    mdark = dm.open(find("MIRI", "DARK", "SUB64"))
    assert mdark.data.ndim == 4 and mdark.data.shape[0] == 2 and mdark.dq.shape[:2] == (2, 1)
    sat = dm.open(find("NIRCAM", "SATURATION"))
    assert sat.data.shape == (2048, 2048) and fits.getheader(sat.path)["SUBARRAY"] == "GENERIC"
    bias = dm.open(find("NIRCAM", "SUPERBIAS", "SUB160")).data
    assert np.nanmin(sat.data[1888:, 1888:] - bias) > 30000
    cols = bias.mean(axis=0)
    assert np.std(cols[1::2] - cols[::2]) > 0  # column structure and odd/even offsets
    lin = dm.open(find("NIRCAM", "LINEARITY", "SUB160")).coeffs
    s = np.linspace(0, 45000, 50)[:, None, None]
    good = np.isfinite(lin).all(axis=0)
    corr = lin[0] + lin[1] * s + lin[2] * s ** 2 + lin[3] * s ** 3
    assert np.all(np.diff(corr[:, good], axis=0) > 0)  # monotonic: invertible
    assert 1.0 < np.median(corr[-1, good] / 45000) < 1.15  # mild non-linearity
    reset = dm.open(find("MIRI", "RESET", "SUB64"))
    assert reset.data.ndim == 4 and reset.data.shape[:2] == (2, 6)
    rscd = dm.open(find("MIRI", "RSCD"))
    assert set(rscd.rscd_table.dtype.names) == {"subarray", "readpatt", "group_skip1",
                                                "group_skip"}


# -- raw exposures --------------------------------------------------------------------------------

def test_uncal_layout_and_keywords(nrc):
    import stdatamodels.jwst.datamodels as sdm

    assert nrc.uncal_path.name == "jw09999001001_01101_00001_nrca1_uncal.fits"
    with sdm.open(nrc.uncal_path) as m:
        assert type(m).__name__ == "Level1bModel"
        assert m.data.dtype == np.uint16 and m.data.shape == (2, 6, 160, 160)
        assert m.zeroframe.shape == (2, 160, 160)
        e, s = m.meta.exposure, m.meta.subarray
        assert (e.nints, e.ngroups, e.nframes, e.groupgap) == (2, 6, 1, 0)
        assert (s.name, s.xstart, s.ystart, s.xsize, s.ysize) == ("SUB160", 1889, 1889, 160, 160)
        assert (s.fastaxis, s.slowaxis) == (-1, 2)
        assert e.frame_time == pytest.approx((160 + 12) * (160 + 2) * 1e-5)
        assert e.group_time == e.frame_time
        assert e.integration_time == pytest.approx(5 * e.group_time)
        assert e.readpatt == "RAPID" and e.type == "NRC_IMAGE" and e.zero_frame
        assert m.meta.observation.date == "2024-03-15"
        assert len(m.group) == 12 and len(m.int_times) == 2
        t = m.int_times
        assert np.all(t["int_start_MJD_UTC"] < t["int_mid_MJD_UTC"])
        assert np.all(np.diff(t["int_start_MJD_UTC"]) > 0)
        assert np.all(np.abs(t["int_mid_BJD_TDB"] - 2400000.5 - t["int_mid_MJD_UTC"]) < 0.01)
        w = m.meta.wcsinfo
        assert w.roll_ref == 37.0 and w.v2_ref and w.v3_ref and w.ra_ref and w.dec_ref
        assert m.meta.target.ra == 80.5 and m.meta.visit.tsovisit is False
        assert m.meta.exposure.integration_start == 1 and m.meta.exposure.integration_end == 2
    h0 = fits.getheader(nrc.uncal_path)
    assert h0["DATAMODL"] == "Level1bModel" and h0["EXSEGTOT"] == 1
    h1 = fits.getheader(nrc.uncal_path, "SCI")
    assert h1["BUNIT"] == "DN" and h1["S_REGION"].startswith("POLYGON ICRS")
    with fits.open(nrc.uncal_path) as hdul:
        assert {h.name for h in hdul} == {"PRIMARY", "SCI", "ZEROFRAME", "GROUP", "INT_TIMES",
                                          "ASDF"}
        assert hdul["INT_TIMES"].columns.names == [
            "integration_number", "int_start_MJD_UTC", "int_mid_MJD_UTC", "int_end_MJD_UTC",
            "int_start_BJD_TDB", "int_mid_BJD_TDB", "int_end_BJD_TDB"]
        assert "group_end_time" in hdul["GROUP"].columns.names


def _linear_signal(exp, raw):
    """The linear signal as the pipeline recovers it with the exposure's own references (float64).

    Near-IR: subtract the bias (superbias), undo IPC, apply the linearity polynomial P. MIRI (no
    superbias step): undo IPC on the raw DN, apply P to them, and subtract P of the pedestal seen
    the same way, so L = P(D(raw)) - P(D(bias)) (D: the IPC step's deconvolution).
    """
    r = exp.references
    t = np.load(exp.truth_path)
    k = dm.open(r["ipc"]).data.astype(np.float64)
    ref = t["refpix"]
    c = dm.open(r["linearity"]).coeffs.astype(np.float64)

    def deconvolve(sig):
        out = np.zeros_like(sig)
        ny, nx = sig.shape[-2:]
        src = np.where(ref, 0.0, sig)
        for j in range(3):
            for i in range(3):
                dy, dx = j - 1, i - 1
                out[..., max(dy, 0):ny + min(dy, 0), max(dx, 0):nx + min(dx, 0)] += \
                    k[j, i] * src[..., max(-dy, 0):ny + min(-dy, 0), max(-dx, 0):nx + min(-dx, 0)]
        return out

    def poly(v):
        return c[0] + c[1] * v + c[2] * v ** 2 + c[3] * v ** 3

    if r.get("superbias", "N/A") == "N/A":  # MIRI: linearity on raw DN, pedestal included
        bias = t["bias"].astype(np.float64)
        return poly(deconvolve(raw.astype(np.float64))) - poly(deconvolve(bias)), t
    return poly(deconvolve(raw.astype(np.float64) - t["bias"])), t


@pytest.mark.parametrize("detector", ["NRCA1", "MIRIMAGE"])
def test_noiseless_exposure_inverts_to_rate_times_time(cache, tmp_path, detector):
    """The documented noiseless identity (truth.py), non-linearity and IPC on. MIRI: the
    linearity polynomial applies to raw DN holding the ~1e4 DN pedestal (no superbias step), so
    a simulator solving the response on the signal above the bias fails by ~2-4% here."""
    kw = {} if detector == "NRCA1" else dict(detector="MIRIMAGE", subarray="SUB64",
                                             ngroups=10, miri_effects=False)
    exp = _noiseless(cache, tmp_path, **kw)
    raw = fits.getdata(exp.uncal_path)[0]
    L, t = _linear_signal(exp, raw)
    # After dark subtraction (the dark reference, group 0 subtracted; MIRI: its first
    # integration, with the first-integration transient): rate * group time + dark_rate * tframe.
    assert int(t["nframes"]) == 1
    dark = dm.open(exp.references["dark"]).data.astype(np.float64)
    dark = (dark[0] if dark.ndim == 4 else dark)[:raw.shape[0]]
    L = L - dark
    expect = t["rate"][None] * t["group_times"][:, None, None] + t["dark_rate"] * t["tframe"]
    good = ~t["refpix"] & (t["sat_margin_group"][0] < 0) & np.isfinite(L).all(axis=0)
    good[:3] = good[-3:] = False
    good[:, :3] = good[:, -3:] = False
    resid = (L - expect)[:, good]
    assert abs(resid.mean()) < 0.05                      # uint16 rounding only
    assert np.abs(resid).max() < 1.0 + 2e-4 * expect[:, good].max()
    bright = expect[-1, good] > 500
    assert bright.sum() > 20
    rel = resid[-1, bright] / expect[-1, good][bright]
    assert np.abs(rel).max() < 2e-3


def test_cosmic_rays_are_steps_in_the_ramp(cache, tmp_path):
    exp = _noiseless(cache, tmp_path, cosmic_rays=5e-3, ngroups=8, seed=11)
    t = np.load(exp.truth_path)
    crs = t["crs"]
    assert len(crs) > 100 and set(crs.dtype.names) >= {"int", "group", "frame", "y", "x",
                                                       "amp", "event", "kind"}
    L, _ = _linear_signal(exp, fits.getdata(exp.uncal_path)[0])
    steps = np.diff(L, axis=0) - (t["rate"] + t["dark_rate"])[None] * np.diff(t["group_times"])[
        :, None, None]
    deposit = np.zeros_like(L)
    np.add.at(deposit, (crs["group"], crs["y"], crs["x"]), crs["amp"])
    ok = ~t["refpix"] & (t["sat_margin_group"][0] < 0) & np.isfinite(L).all(axis=0)
    ok[:3] = ok[-3:] = False
    ok[:, :3] = ok[:, -3:] = False
    sel = (crs["group"] > 0) & (crs["amp"] > 30) & ok[crs["y"], crs["x"]]
    g, y, x = crs["group"][sel], crs["y"][sel], crs["x"][sel]
    measured = steps[g - 1, y, x]
    expected = deposit[g, y, x]
    assert sel.sum() > 30
    assert np.median(np.abs(measured - expected) / expected) < 0.01
    # Group 0 deposits are present from the first read on: no step anywhere.
    assert np.abs(steps[:, ok & (deposit.sum(axis=0) == 0)]).max() < 1.5


def test_saturation_truth_matches_the_reference_threshold(cache, tmp_path):
    scene = Scene(stars=[PointSource(80.5, -69.5, rate=1.0e6)], background=0.2)
    exp = _noiseless(cache, tmp_path, scene=scene, ngroups=8)
    t = np.load(exp.truth_path)
    raw = fits.getdata(exp.uncal_path)[0].astype(float)
    x0, y0 = int(t["xstart"]) - 1, int(t["ystart"]) - 1
    thr = dm.open(exp.references["saturation"]).data[y0:y0 + 160, x0:x0 + 160]  # full frame
    sat = t["sat_group"][0]
    assert (sat >= 0).sum() >= 3
    g = np.arange(raw.shape[0])[:, None, None]
    truth_sat = (g >= sat[None]) & (sat[None] >= 0)
    clear = np.abs(raw - thr[None]) > 1.0  # rounding to DN can flip values at the threshold
    assert np.array_equal((raw >= thr[None])[clear], truth_sat[clear])
    assert np.all(t["sat_margin_group"][0][sat >= 0] <= sat[sat >= 0])


def test_same_seed_same_exposure_any_thread_count(cache, tmp_path):
    kw = dict(detector="NRCA1", subarray="SUB160", ngroups=41, nints=1, crds_path=cache,
              seed=5, cosmic_rays=1e-3)  # 41 groups of 160x160: the kernels run in parallel
    a = simulate_exposure(output_dir=tmp_path / "a", nthreads=2, **kw)
    b = simulate_exposure(output_dir=tmp_path / "b", nthreads=1, **kw)
    c = simulate_exposure(output_dir=tmp_path / "c", nthreads=2, **dict(kw, seed=6))
    da, db, dc = (fits.getdata(e.uncal_path) for e in (a, b, c))
    assert np.array_equal(da, db)
    assert not np.array_equal(da, dc)
    ta, tb = np.load(a.truth_path), np.load(b.truth_path)
    assert np.array_equal(ta["crs"], tb["crs"]) and np.array_equal(ta["rate"], tb["rate"])


def test_sources_truth_and_wcs_agree_with_a_gwcs(cache, nrc):
    import asdf
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as am
    from astropy.table import Table
    from gwcs import coordinate_frames as cf
    from gwcs import geometry
    from gwcs import wcs as gw

    t = Table.read(nrc.sources_path, format="ascii.ecsv")
    for col in ("ra", "dec", "x", "y", "flux_jy", "flux_dns", "abmag", "kind", "on_detector"):
        assert col in t.colnames
    on = t[t["on_detector"]]
    assert len(on) > 0
    h = fits.getheader(nrc.uncal_path, "SCI")
    h0 = fits.getheader(nrc.uncal_path)
    with asdf.open(nrc.references["distortion"]) as af:
        dist = af.tree["model"]
    # The imaging WCS recipe: subarray offset, distortion to V2/V3 (arcsec), then the pointing.
    shift = am.Shift(h0["SUBSTRT1"] - 1) & am.Shift(h0["SUBSTRT2"] - 1)
    angles = [h["V2_REF"] / 3600, -h["V3_REF"] / 3600, h["ROLL_REF"], h["DEC_REF"], -h["RA_REF"]]
    v23sky = ((am.Scale(1 / 3600) & am.Scale(1 / 3600)) | geometry.SphericalToCartesian(
        wrap_lon_at=180) | am.RotationSequence3D(angles, axes_order="zyxyz")
        | geometry.CartesianToSpherical(wrap_lon_at=360))
    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    v2v3 = cf.Frame2D(name="v2v3", axes_order=(0, 1), unit=(u.arcsec, u.arcsec))
    world = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world")
    w = gw.WCS([(det, shift | dist), (v2v3, v23sky), (world, None)])
    ra, dec = w(np.asarray(on["x"]), np.asarray(on["y"]), with_bounding_box=False)
    sep = np.hypot((ra - on["ra"]) * np.cos(np.deg2rad(on["dec"])), dec - on["dec"]) * 3600
    assert sep.max() < 1e-4
    # The reference point lands on RA_REF/DEC_REF.
    r0, d0 = w(h["XREF_SCI"] - 1, h["YREF_SCI"] - 1, with_bounding_box=False)
    assert abs(r0 - h["RA_REF"]) < 1e-9 and abs(d0 - h["DEC_REF"]) < 1e-9
    truth = np.load(nrc.truth_path)
    assert np.allclose(on["flux_dns"] * truth["photmjsr"] * truth["pixar_sr"] * 1e6,
                       on["flux_jy"], rtol=1e-6)


def test_source_fluxes_in_the_truth_rate(cache, tmp_path):
    from astropy.table import Table

    exp = _noiseless(cache, tmp_path, scene=_scene(1e3, 1e4), ngroups=2)
    t = Table.read(exp.sources_path, format="ascii.ecsv")
    truth = np.load(exp.truth_path)
    stars = t[t["kind"] == "star"]
    assert len(stars) == 2 and np.all(stars["on_detector"])
    for s in stars:
        # The deposited rate is the unit-QE rate times the QE of the pixels the PSF covers.
        assert 0.85 < s["rate_on_detector"] / s["flux_dns"] < 1.1
        yc, xc = int(round(s["y"])), int(round(s["x"]))
        box = truth["rate"][yc - 6:yc + 7, xc - 6:xc + 7]
        sky = np.median(truth["rate"][yc - 12:yc + 13, xc - 12:xc + 13])
        assert box.sum() - sky * box.size == pytest.approx(s["rate_on_detector"], rel=0.01)
    assert truth["stars"]["rate"] == pytest.approx(np.asarray(stars["rate_on_detector"]))


def test_miri_exposure(cache, tmp_path):
    import stdatamodels.jwst.datamodels as sdm

    exp = simulate_exposure(detector="MIRIMAGE", subarray="SUB64", ngroups=12, nints=2,
                            crds_path=cache, output_dir=tmp_path, seed=3)
    assert exp.references["superbias"] == "N/A"
    assert exp.references["reset"].endswith(".fits") and exp.references["rscd"].endswith(".fits")
    with sdm.open(exp.uncal_path) as m:
        assert type(m).__name__ == "Level1bModel"
        assert m.data.shape == (2, 12, 64, 72)
        assert m.meta.exposure.readpatt == "FASTR1" and m.meta.exposure.type == "MIR_IMAGE"
        assert m.meta.exposure.frame_time == pytest.approx(0.08544)
        assert m.meta.instrument.filter == "F770W"
    t = np.load(exp.truth_path)
    raw = fits.getdata(exp.uncal_path).astype(float)
    sci = ~t["refpix"]
    # After the reset anomaly (first 6 groups) and before the last frame: rate + dark.
    dt = t["group_times"][-2] - t["group_times"][6]
    slope = np.median((raw[:, -2] - raw[:, 6])[:, sci]) / dt
    assert slope == pytest.approx(np.median(t["rate"][sci] + t["dark_rate"][sci]), rel=0.1)
    assert np.median(np.abs(raw[:, -1] - raw[:, 0])[:, t["refpix"]]) < 20  # refcols: no signal


def test_imaging_observation_and_associations(cache, tmp_path):
    obs = simulate_imaging_observation(detector="NRCA1", subarray="SUB160", ngroups=3,
                                       crds_path=cache, output_dir=tmp_path, dithers=2,
                                       seed=4, cosmic_rays=0.0)
    assert len(obs.exposures) == 2
    l2 = dm.load_asn(obs.asn_level2)
    l3 = dm.load_asn(obs.asn_level3)
    assert l2.asn_type == "image2" and l3.asn_type == "image3"
    assert [p.members[0].expname for p in l2.products] == [
        f"{e.root}_rate.fits" for e in obs.exposures]
    assert l3.products[0].name == obs.product_name == "jw09999-o001_t001_nircam_clear-f200w-sub160"
    assert [m.expname for m in l3.products[0].members] == [f"{e.root}_cal.fits"
                                                           for e in obs.exposures]
    h = [fits.getheader(e.uncal_path) for e in obs.exposures]
    assert [x["PATT_NUM"] for x in h] == [1, 2] and h[0]["NUMDTHPT"] == 2
    assert h[0]["EXPOSURE"] == "00001" and h[1]["EXPOSURE"] == "00002"
    assert h[1]["EXPSTART"] > h[0]["EXPEND"]
    s = [fits.getheader(e.uncal_path, "SCI") for e in obs.exposures]
    assert (s[0]["RA_REF"], s[0]["DEC_REF"]) != (s[1]["RA_REF"], s[1]["DEC_REF"])
    from astropy.table import Table

    cat = Table.read(obs.catalog_path, format="ascii.ecsv")
    t1 = Table.read(obs.exposures[0].sources_path, format="ascii.ecsv")
    t2 = Table.read(obs.exposures[1].sources_path, format="ascii.ecsv")
    assert len(cat) == len(t1) == len(t2) and np.array_equal(t1["ra"], t2["ra"])
    # Same sky, different pointing: pixel positions move by the dither step (~1" / 0.031").
    shift = np.hypot(t2["x"] - t1["x"], t2["y"] - t1["y"])
    assert np.all(np.abs(shift - np.median(shift)) < 0.1) and 25 < np.median(shift) < 40


def test_time_series_segments(cache, tmp_path):
    obs = simulate_time_series(crds_path=cache, output_dir=tmp_path, nints=7, ints_per_segment=3,
                               ngroups=3, subarray="SUB160", seed=2, cosmic_rays=0.0)
    exp = obs.exposures[0]
    assert [p.name for p in exp.uncal_paths] == [
        f"jw09999001001_01101_00001-seg{k:03d}_nrca1_uncal.fits" for k in (1, 2, 3)]
    starts, shapes = [], []
    for k, p in enumerate(exp.uncal_paths, start=1):
        h = fits.getheader(p)
        assert h["NINTS"] == 7 and h["EXSEGNUM"] == k and h["EXSEGTOT"] == 3
        assert h["TSOVISIT"] is True and h["EXP_TYPE"] == "NRC_TSIMAGE"
        starts.append((h["INTSTART"], h["INTEND"]))
        shapes.append(fits.getdata(p).shape[0])
    assert starts == [(1, 3), (4, 6), (7, 7)] and shapes == [3, 3, 1]
    from astropy.table import Table

    lc = Table.read(exp.lightcurve_path, format="ascii.ecsv")
    assert len(lc) == 7 and lc["flux_multiplier"].min() < 0.995 < lc["flux_multiplier"].max()
    seg2 = np.load(exp.truth_paths[1])
    assert np.allclose(seg2["lc"], lc["flux_multiplier"][3:6]) and int(seg2["intstart"]) == 4
    assert dm.load_asn(obs.asn_level2).asn_type == "tso-image2"
    l3 = dm.load_asn(obs.asn_level3)
    assert l3.asn_type == "tso3" and len(l3.products[0].members) == 3


def test_command_line(cache, tmp_path, capsys):
    from jwpipe.simulate.command import main

    code = main(["exposure", "--crds-path", str(cache), "--detector", "NRCA1", "--subarray",
                 "SUB160", "--ngroups", "3", "--nints", "1", "-o", str(tmp_path), "--seed", "1"])
    assert code == 0
    assert (tmp_path / "jw09999001001_01101_00001_nrca1_uncal.fits").exists()
    assert "wrote" in capsys.readouterr().out
    assert main(["exposure", "--crds-path", str(cache), "--detector", "NRCB9"]) == 2
    assert "NRCB9" in capsys.readouterr().err


# -- the compiled kernels against slow references -------------------------------------------------

def _ramp_reference(rate_e, gain, coeffs, well, dt, group, weight, events):
    """Noiseless ramp, one pixel at a time, in float64 (Newton by numpy.roots-free bisection)."""
    ny, nx = rate_e.shape
    ngroups = group.max() + 1
    out = np.zeros((ngroups, ny, nx))
    for y in range(ny):
        for x in range(nx):
            q = 0.0
            c = coeffs[:, y, x].astype(float)
            w = float(well[y, x])
            lw = np.polyval(c[::-1], w)
            for r in range(dt.size):
                q += rate_e[y, x] * dt[r]
                q += sum(a for (yy, xx, rr, a) in events if (yy, xx, rr) == (y, x, r))
                L = q / gain[y, x]
                if L >= lw:
                    s = w
                else:
                    lo, hi = -1.0, max(L, 0.0) + 1.0
                    for _ in range(200):
                        mid = 0.5 * (lo + hi)
                        lo, hi = (mid, hi) if np.polyval(c[::-1], mid) < L else (lo, mid)
                    s = 0.5 * (lo + hi)
                out[group[r], y, x] += weight[r] * s
    return out


@pytest.mark.parametrize("nframes", [1, 2])
def test_ramp_kernel_parity(nframes):
    from jwpipe._ext import _simulate

    rng = np.random.default_rng(0)
    ny, nx, ngroups = 5, 7, 4
    rate_e = rng.uniform(0, 5e4, (ny, nx)).astype(np.float32)
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    coeffs = np.zeros((4, ny, nx), np.float32)
    coeffs[1] = 1
    coeffs[2] = rng.uniform(0.5e-6, 1.5e-6, (ny, nx))
    coeffs[3] = rng.uniform(0.5e-11, 1.5e-11, (ny, nx))
    well = rng.uniform(3e4, 5e4, (ny, nx)).astype(np.float32)
    nread = ngroups * nframes
    dt = np.full(nread, 0.7)
    dt[nframes::nframes] = 0.7 * 2  # one dropped frame between groups
    group = np.repeat(np.arange(ngroups, dtype=np.int32), nframes)
    weight = np.full(nread, 1.0 / nframes, np.float32)
    events = [(1, 2, 1, 8000.0), (3, 3, 0, 500.0), (3, 3, 2, 700.0), (4, 6, nread - 1, 1e5)]
    ev = np.array(sorted(events), dtype=float)
    rowptr = np.searchsorted(ev[:, 0], np.arange(ny + 1)).astype(np.int64)
    out = np.empty((ngroups, ny, nx), np.float32)
    _simulate.sim_ramp(rate_e, gain, coeffs, well, None, dt, group, weight, rowptr,
                       ev[:, 1].astype(np.int32), ev[:, 2].astype(np.int32),
                       ev[:, 3].astype(np.float32), out, None, 0, 1, True, 100.0, 1)
    ref = _ramp_reference(rate_e, gain, coeffs, well, dt, group, weight, events)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=2e-3)


def test_ramp_kernel_noise_statistics():
    from jwpipe._ext import _simulate

    ny, nx = 400, 500
    for lam in (0.7, 9.0, 60.0, 400.0):  # exact below 100 e, Gaussian approximation above
        rate = np.full((ny, nx), lam, np.float32)
        ones = np.ones((ny, nx), np.float32)
        out = np.empty((2, ny, nx), np.float32)
        _simulate.sim_ramp(rate, ones, None, None, None, np.array([1.0, 1.0]),
                           np.array([0, 1], np.int32), np.ones(2, np.float32), None, None, None,
                           None, out, None, 123, 1, False, 100.0, 2)
        inc = out[1] - out[0]
        assert np.all(inc == np.round(inc)) and inc.min() >= 0
        assert inc.mean() == pytest.approx(lam, rel=0.01)
        assert inc.var() == pytest.approx(lam, rel=0.03)
    sig = np.zeros((1, ny, nx), np.float32)
    data = np.empty((1, ny, nx), np.uint16)
    bias = np.full((ny, nx), 1000.0, np.float32)
    sigma = np.full((ny, nx), 7.0, np.float32)
    _simulate.sim_readout(sig, bias, sigma, None, None, None, None, None, None, None, None, data,
                          9, 2, False, 2)
    assert data.mean() == pytest.approx(1000.0, abs=0.05)
    assert data.astype(float).std() == pytest.approx(np.sqrt(49 + 1 / 12), rel=0.01)


def test_ipc_kernel_parity():
    from scipy.signal import convolve2d

    from jwpipe._ext import _simulate
    from jwpipe.simulate.detector import inverse_kernel
    from jwpipe.simulate.refs import ipc_kernel

    rng = np.random.default_rng(1)
    planes = rng.uniform(0, 1000, (3, 20, 17)).astype(np.float32)
    refpix = np.zeros((20, 17), bool)
    refpix[:4] = refpix[:, -4:] = True
    planes[:, refpix] = 0.0  # the simulation never puts charge in reference pixels
    kernel = inverse_kernel(ipc_kernel(0.01))
    assert kernel.shape == (5, 5) and kernel.sum() == pytest.approx(1.0, abs=1e-6)
    out = np.empty_like(planes)
    _simulate.sim_ipc(planes, out, kernel, refpix.view(np.uint8), 2)
    for p in range(3):
        ref = convolve2d(planes[p].astype(float), kernel.astype(float), mode="same")
        ref[refpix] = 0.0
        np.testing.assert_allclose(out[p], ref, rtol=1e-6, atol=1e-3)
    # Deconvolving with the reference kernel gives the input back: the second-order inverse
    # leaves errors of order (8 alpha)^3 of the neighbours' level (here white noise, worst case).
    back = convolve2d(out[0].astype(float), ipc_kernel(0.01).astype(float), mode="same")
    inner = (slice(6, 14), slice(2, 11))
    np.testing.assert_allclose(back[inner], planes[0][inner], rtol=0, atol=1e-3 * 1000)
    assert np.abs(back[inner] - planes[0][inner]).mean() < 0.05
