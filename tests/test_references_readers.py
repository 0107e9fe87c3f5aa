"""Reference readers: open_reference, cut_to_subarray, translate_dq."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from jwpipe import dq as dqflags
from jwpipe.datamodels import LazyArray
from jwpipe.errors import ReferenceFileError
from jwpipe.references import (
    AsdfReference,
    ReferenceFileWarning,
    cut_to_subarray,
    open_reference,
    translate_dq,
)


def _find_shared() -> Path | None:
    env = os.environ.get("JWPIPE_SHARED")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for parent in Path(__file__).resolve().parents:
        for candidate in (parent / "shared", parent.parent / "shared"):
            if (candidate / "data").is_dir():
                return candidate
    return None


SHARED = _find_shared()
REFS = SHARED / "data" / "real" / "crds_refs" if SHARED else None
ORACLE = SHARED / "data" / "oracle" if SHARED else None
needs_real = pytest.mark.skipif(REFS is None or not REFS.is_dir(),
                                reason="../shared/data/real is not present")

MASK = "nircam/jwst_nircam_mask_0026_newhdr__from_stdatamodels_jwst_nircam_mask_ref.fits"


def write_ref(path: Path, reftype: str, **extensions) -> Path:
    """A small FITS reference: PRIMARY with REFTYPE + the given image/table extensions."""
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["REFTYPE"] = reftype
    hdus[0].header["INSTRUME"] = "NIRCAM"
    for name, value in extensions.items():
        if isinstance(value, np.ndarray) and value.dtype.names:
            hdus.append(fits.BinTableHDU(value, name=name))
        else:
            hdus.append(fits.ImageHDU(value, name=name))
    fits.HDUList(hdus).writeto(path)
    return path


# -- open_reference: FITS --------------------------------------------------------------------------

@needs_real
@pytest.mark.parametrize("name, reftype, cls, attr, shape", [
    ("nirspec/jwst_nirspec_superbias_0075.fits", "superbias", "SuperBiasModel", "data", (32, 512)),
    ("nirspec/jwst_nirspec_dark_0046.fits", "dark", "DarkModel", "data", (10, 32, 512)),
    (MASK, "mask", "MaskModel", "dq", (2048, 2048)),
    ("nirspec/jwst_nirspec_ipc_with_asdf_extension.fits", "ipc", "IPCModel", "data", (3, 3)),
])
def test_open_real_fits_references(name, reftype, cls, attr, shape):
    for want in (reftype, reftype.upper(), None):
        model = open_reference(REFS / name, want)
        assert type(model).__name__ == cls
    lazy = model.lazy(attr)
    assert isinstance(lazy, LazyArray) and lazy.shape == shape  # still memory-mapped
    array = getattr(model, attr)
    assert array.shape == shape
    assert array.dtype == (np.uint32 if attr == "dq" else np.float32)
    assert model.meta.reftype == reftype.upper()


@needs_real
def test_open_real_table_references():
    photom = open_reference(REFS / "nircam" / "jwst_nircam_photom_0064.fits", "photom")
    assert type(photom).__name__ == "PhotomModel" and len(photom.phot_table) == 48
    area = open_reference(REFS / "nirspec" / "jwst_nirspec_area_0020.fits", "area")
    assert type(area).__name__ == "PixelAreaModel"
    assert len(area.extension("AREA").data) == 5


@needs_real
def test_wrong_reftype_names_file_extension_keyword():
    path = REFS / "nirspec" / "jwst_nirspec_superbias_0075.fits"
    with pytest.raises(ReferenceFileError) as info:
        open_reference(path, "dark")
    text = str(info.value)
    assert str(path) in text and "PRIMARY" in text and "REFTYPE = 'SUPERBIAS'" in text
    assert "DARK reference is needed" in text


@needs_real
def test_prelaunch_photom_layout_lacks_photom_extension():
    path = REFS / "niriss" / "niriss_ref_photom.fits"   # its table is called SCI
    with pytest.raises(ReferenceFileError) as info:
        open_reference(path, "photom")
    assert str(path) in str(info.value)
    assert "needs extension PHOTOM (table); the file has SCI (table)" in str(info.value)


@pytest.mark.skipif(ORACLE is None or not ORACLE.is_dir(), reason="../shared/data/oracle absent")
def test_oracle_reference_sets_open_as_their_types():
    seen = set()
    for path in sorted(ORACLE.glob("*/refs/*.fits")):
        reftype = path.name.split("_")[2]
        model = open_reference(path, reftype)
        assert type(model).__name__ != "DataModel", path.name
        assert model.meta.reftype.lower() == reftype
        seen.add(reftype)
    assert {"gain", "readnoise", "mask", "saturation", "linearity", "dark", "ipc"} <= seen


def test_missing_needed_extension(tmp_path):
    path = write_ref(tmp_path / "g.fits", "GAIN", ERR=np.zeros((4, 4), np.float32))
    with pytest.raises(ReferenceFileError) as info:
        open_reference(path, "gain")
    assert str(path) in str(info.value)
    assert "a GAIN reference needs extension SCI (image); the file has ERR (image)" in \
        str(info.value)


def test_wrong_dimensions_are_reported(tmp_path):
    path = write_ref(tmp_path / "g3.fits", "GAIN", SCI=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ReferenceFileError) as info:
        open_reference(path, "gain")
    assert str(path) in str(info.value) and "SCI" in str(info.value)
    assert "as a GAIN reference" in str(info.value)


def test_no_reftype_keyword_uses_requested_class(tmp_path):
    path = tmp_path / "plain.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 5), np.float32), name="SCI")]
                 ).writeto(path)
    gain = open_reference(path, "gain")
    assert type(gain).__name__ == "GainModel" and gain.data.shape == (4, 5)


def test_miri_dark_opens_as_4d_model(tmp_path):
    path = write_ref(tmp_path / "md.fits", "DARK", SCI=np.zeros((2, 3, 4, 4), np.float32),
                     DQ=np.zeros((4, 4), np.uint32))
    assert type(open_reference(path, "dark")).__name__ == "DarkMIRIModel"


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")
@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    (b"hello, this is not a reference file", "neither FITS nor ASDF"),
    (b"SIMPLE  =                    T / truncated" + b" " * 20, "not a readable FITS file"),
    (b"#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n--- !<bad\n  [::\n",
     "cannot be read as an ASDF"),
])
def test_unreadable_files(tmp_path, content, words):
    path = tmp_path / "broken.fits"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReferenceFileError) as info:
        open_reference(path, "gain")
    assert str(path) in str(info.value) and words in str(info.value)
    with pytest.raises(ReferenceFileError, match="is a directory"):
        open_reference(tmp_path, "gain")


# -- open_reference: ASDF --------------------------------------------------------------------------

@needs_real
def test_open_asdf_reference():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = open_reference(REFS / "miri" / "jwst_miri_distortion_0022.asdf", "distortion")
    assert isinstance(ref, AsdfReference)
    assert ref.reftype == "distortion"
    assert ref.meta.instrument.detector == "MIRIFUSHORT"
    assert ref.meta.exposure.type == "MIR_MRS"
    from astropy.modeling import Model
    assert all(isinstance(m, Model) for m in ref["x_model"]) and "slices" in ref
    with pytest.raises(KeyError, match="has no 'model' entry"):
        ref["model"]
    with open_reference(REFS / "nirspec" / "jwst_nirspec_fpa_0005.asdf") as fpa:
        assert fpa.reftype == "fpa" and isinstance(fpa["nrs1_model"], Model)


@needs_real
def test_asdf_reftype_mismatch():
    path = REFS / "nirspec" / "jwst_nirspec_camera_0004.asdf"
    with pytest.raises(ReferenceFileError) as info:
        open_reference(path, "collimator")
    assert str(path) in str(info.value) and "meta.reftype = 'camera'" in str(info.value)


@needs_real
def test_corrupted_asdf_version_warns_naming_the_file():
    path = REFS / "fgs" / "jwst_fgs_distortion_bad_asdf_version.asdf"
    with pytest.warns(ReferenceFileWarning) as record:
        ref = open_reference(path, "distortion")
    assert any(str(path) in str(w.message) for w in record)
    assert any("ASDF reader reports" in str(w.message) for w in record)
    assert ref.meta.instrument.detector == "GUIDER2"


# -- cut_to_subarray -------------------------------------------------------------------------------

def sub(xstart, ystart, xsize, ysize, name=None):
    out = {"subarray": {"xstart": xstart, "ystart": ystart, "xsize": xsize, "ysize": ysize}}
    if name:
        out["subarray"]["name"] = name
    return out


def test_cut_full_frame_to_subarray_is_a_view():
    full = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    cut = cut_to_subarray(full, sub(1, 1, 64, 64), sub(9, 17, 10, 8), name="ref.fits")
    assert cut.shape == (8, 10)
    assert np.shares_memory(cut, full)
    np.testing.assert_array_equal(cut, full[16:24, 8:18])


def test_cut_same_subarray_is_a_no_op():
    ref = np.zeros((8, 10), np.float32)
    assert cut_to_subarray(ref, sub(9, 17, 10, 8), sub(9, 17, 10, 8), name="r") is ref


def test_cut_nd_arrays_on_last_two_axes_and_defaults():
    ref = np.arange(2 * 3 * 16 * 16, dtype=np.float32).reshape(2, 3, 16, 16)
    cut = cut_to_subarray(ref, None, sub(5, 3, 4, 2), name="r")   # no ref metadata: starts at 1
    assert cut.shape == (2, 3, 2, 4)
    np.testing.assert_array_equal(cut, ref[..., 2:4, 4:8])


def test_cut_accepts_flat_fits_keyword_dicts_and_lazy_arrays(tmp_path):
    dq = np.arange(100, dtype=np.uint32).reshape(10, 10)
    path = write_ref(tmp_path / "m.fits", "MASK", DQ=dq)
    mask = open_reference(path, "mask")
    sci = {"SUBSTRT1": 3, "SUBSTRT2": 4, "SUBSIZE1": 5, "SUBSIZE2": 2}
    cut = cut_to_subarray(mask.lazy("dq"), mask.meta, sci, name=path.name)
    assert isinstance(cut, np.ndarray) and cut.dtype == np.uint32
    np.testing.assert_array_equal(cut, np.arange(100).reshape(10, 10)[3:5, 2:7])


def test_cut_reference_larger_than_subarray_with_offset():
    ref = np.arange(40 * 60).reshape(40, 60)       # covers columns 101-160, rows 201-240
    cut = cut_to_subarray(ref, sub(101, 201, 60, 40), sub(111, 205, 20, 30), name="r")
    np.testing.assert_array_equal(cut, ref[4:34, 10:30])


@pytest.mark.parametrize("science", [sub(1, 1, 70, 8), sub(60, 1, 10, 8), sub(1, 60, 8, 10),
                                     sub(0, 1, 8, 8)])
def test_cut_subarray_outside_reference(science):
    ref = np.zeros((64, 64), np.float32)
    science["subarray"]["name"] = "SUBXX"
    with pytest.raises(ReferenceFileError) as info:
        cut_to_subarray(ref, sub(1, 1, 64, 64), science, name="jwst_nircam_gain_0097.fits")
    text = str(info.value)
    assert text.startswith("jwst_nircam_gain_0097.fits: the reference covers detector columns "
                           "1-64 and rows 1-64")
    for key in ("SUBSTRT1=", "SUBSTRT2=", "SUBSIZE1=", "SUBSIZE2=", "SUBXX"):
        assert key in text


def test_cut_missing_or_bad_keywords():
    ref = np.zeros((8, 8))
    with pytest.raises(ReferenceFileError, match="lacks SUBSIZE1, SUBSIZE2"):
        cut_to_subarray(ref, None, {"subarray": {"xstart": 1, "ystart": 1}}, name="r.fits")
    with pytest.raises(ReferenceFileError, match="SUBSTRT1 = 'abc' is not an integer"):
        cut_to_subarray(ref, None, {"SUBSTRT1": "abc", "SUBSTRT2": 1, "SUBSIZE1": 2,
                                    "SUBSIZE2": 2}, name="r.fits")
    with pytest.raises(ReferenceFileError, match="at least 2 dimensions"):
        cut_to_subarray(np.zeros(8), None, sub(1, 1, 2, 2), name="r.fits")


@needs_real
def test_cut_real_nirspec_subarray_reference():
    bias = open_reference(REFS / "nirspec" / "jwst_nirspec_superbias_0075.fits", "superbias")
    same = dict(bias.meta.subarray.to_dict())
    assert cut_to_subarray(bias.data, bias.meta, {"subarray": same}, name="sb") is bias.data
    cut = cut_to_subarray(bias.data, bias.meta, sub(1100, 960, 100, 16), name="sb")
    np.testing.assert_array_equal(cut, bias.data[3:19, 75:175])
    with pytest.raises(ReferenceFileError, match="columns 1025-1536 and rows 957-988"):
        cut_to_subarray(bias.data, bias.meta, sub(1, 1, 2048, 2048), name="sb")


# -- translate_dq ----------------------------------------------------------------------------------

def slow_translate(dq, rows):
    """Pixel-by-pixel reading of the DQ_DEF rule (unknown names skipped)."""
    names = {name: 1 << bit for bit, name, _ in dqflags.FLAGS}
    out = np.zeros(dq.shape, np.uint32)
    for index in np.ndindex(dq.shape):
        flags = 0
        for value, name in rows:
            if name in names and int(dq[index]) & value:
                flags |= names[name]
        out[index] = flags
    return out


def dq_def(rows, names=("BIT", "VALUE", "NAME", "DESCRIPTION")):
    dtype = [(names[0], ">i4"), (names[1], ">i4"), (names[2], "S40"), (names[3], "S80")]
    return np.array([(int(np.log2(v)) if v else 0, v, n.encode(), b"") for v, n in rows], dtype)


def test_translate_remaps_bits():
    rng = np.random.default_rng(1)
    dq = rng.integers(0, 64, size=(7, 9)).astype(np.uint32)
    rows = [(1, "DO_NOT_USE"), (2, "HOT"), (4, "WARM"), (8, "UNRELIABLE_SLOPE"), (16, "DEAD"),
            (32, "NO_FLAT_FIELD")]
    out = translate_dq(dq, dq_def(rows))
    assert out.dtype == np.uint32 and out.shape == dq.shape
    np.testing.assert_array_equal(out, slow_translate(dq, rows))
    assert out[dq == 2].tolist() == [dqflags.HOT] * int((dq == 2).sum())


def test_translate_identity_rows_keep_only_described_bits():
    dq = np.array([[0, 1, 2, 3], [512, 513, 1 << 31, 7]], np.uint32)
    rows = [(1, "DO_NOT_USE"), (512, "NON_SCIENCE")]
    out = translate_dq(dq, dq_def(rows))
    np.testing.assert_array_equal(out, dq & np.uint32(513))
    np.testing.assert_array_equal(out, slow_translate(dq, rows))


def test_translate_unknown_name_warns_and_is_ignored():
    dq = np.array([1, 2, 3, 4], np.uint8)
    rows = [(1, "DO_NOT_USE"), (2, "WEIRD"), (4, "hot ")]
    with pytest.warns(ReferenceFileWarning, match=r"mask\.fits: extension DQ_DEF names flag "
                                                  r"'WEIRD' \(VALUE 2\)"):
        out = translate_dq(dq, dq_def(rows), name="mask.fits")
    assert out.tolist() == [1, 0, 1, dqflags.HOT]


def test_translate_without_table_and_container_forms():
    dq = np.array([[5, 6]], np.uint16)
    for empty in (None, [], np.zeros(0, dq_def([]).dtype)):
        out = translate_dq(dq, empty)
        assert out.dtype == np.uint32 and out.tolist() == [[5, 6]]
    as_tuples = [(0, 1, "DO_NOT_USE", ""), (1, 2, "SATURATED", "")]
    as_dicts = [{"Bit": 0, "Value": 1, "Name": "DO_NOT_USE"}, {"bit": 2, "name": "HOT"}]
    lower = dq_def([(1, "DO_NOT_USE"), (4, "HOT")], ("bit", "value", "name", "description"))
    assert translate_dq(dq, as_tuples).tolist() == [[1, 2]]
    assert translate_dq(dq, as_dicts).tolist() == [[1 | dqflags.HOT, dqflags.HOT]]
    assert translate_dq(dq, lower).tolist() == [[1 | dqflags.HOT, dqflags.HOT]]
    from astropy.table import Table
    assert translate_dq(dq, Table(lower)).tolist() == [[1 | dqflags.HOT, dqflags.HOT]]
    assert dq.tolist() == [[5, 6]]                    # input untouched


@needs_real
def test_translate_real_dq_def_tables():
    dark = open_reference(REFS / "nirspec" / "jwst_nirspec_dark_0046.fits", "dark")
    raw = dark.lazy("dq").read()                        # uint8 as stored
    out = translate_dq(raw, dark.dq_def, name="dark")
    assert out[raw == 2].max() == dqflags.WARM and out[raw == 4].max() == dqflags.HOT
    assert set(np.unique(out[raw == 12]).tolist()) == {dqflags.HOT | dqflags.UNRELIABLE_SLOPE}
    mask = open_reference(REFS / MASK, "mask")
    with pytest.warns(ReferenceFileWarning) as record:
        translated = translate_dq(mask.dq, mask.dq_def, name=MASK)
    assert {"NOISY", "WEIRD"} <= {str(w.message).split("'")[1] for w in record}
    small = mask.dq[::37, ::41]
    rows = [(int(r["VALUE"]), r["NAME"].decode().strip()) for r in mask.dq_def]
    np.testing.assert_array_equal(translated[::37, ::41], slow_translate(small, rows))
    # the superbias DQ holds 4194304 but its DQ_DEF only describes 1 and 2: nothing survives,
    # exactly as in the reference pipeline
    bias = open_reference(REFS / "nirspec" / "jwst_nirspec_superbias_0075.fits", "superbias")
    assert bias.dq.max() == 4194304 and translate_dq(bias.dq, bias.dq_def).max() == 0
