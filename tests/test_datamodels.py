"""Data models: reading real products, round trips, lazy blocks, atomic writes, metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from conftest import sha256

import jwpipe.datamodels as dm
from jwpipe.datamodels import keywords
from jwpipe.errors import DataShapeError, NotFitsError, ProductTypeError


def test_open_oracle_uncal_lazily(nircam_oracle):
    raw = dm.open(nircam_oracle["uncal"])
    assert isinstance(raw, dm.Level1bModel)
    lazy = raw.lazy("data")
    assert isinstance(lazy, dm.LazyArray)  # nothing read yet
    assert raw.shape == (3, 10, 160, 160)
    assert raw.meta.exposure.ngroups == 10 and raw.meta.exposure.nints == 3
    assert raw.meta.subarray.name == "SUB160" and raw.meta.subarray.xstart == 1889
    assert raw.meta.instrument.detector == "NRCA1"
    block = lazy.read(slice(1, 2), np.float32)
    reference = fits.getdata(nircam_oracle["uncal"], "SCI")  # astropy applies BZERO
    assert block.dtype == np.float32 and block.shape == (1, 10, 160, 160)
    np.testing.assert_array_equal(block[0], reference[1].astype(np.float32))
    assert raw.data.dtype == np.uint16
    np.testing.assert_array_equal(raw.data, reference)
    assert raw.int_times.shape == (3,) and "int_mid_MJD_UTC" in raw.int_times.dtype.names
    assert raw.group.shape == (30,)


def test_keyword_table_agrees_with_reference_products(oracle):
    """Every meta path the reference ecosystem wrote for a FITS keyword we map must be ours too."""
    import asdf

    checked = 0
    for path in sorted(oracle.glob("*/reference_outputs/*_rate*.fits")):
        with fits.open(path) as hdul:
            tree = asdf.open(io.BytesIO(hdul["ASDF"].data["ASDF_METADATA"][0].tobytes()),
                             _force_raw_types=True).tree["meta"]
            header = hdul[0].header
            sci = hdul["SCI"].header
        model = dm.open(path)
        for meta_path, keyword, hdu, _ in keywords.KEYWORDS:
            head = header if hdu == "PRIMARY" else sci
            if keyword not in head:
                continue
            node = tree
            for part in meta_path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                continue
            checked += 1
            ours = model.meta.get(meta_path)
            if isinstance(node, float):
                assert ours == pytest.approx(node), meta_path
            else:
                assert ours == node, (meta_path, keyword)
    assert checked > 80


def test_round_trip_rate(tmp_path, nircam_oracle):
    rate = dm.open(nircam_oracle["rate"])
    before = sha256(nircam_oracle["rate"])
    out = rate.save(tmp_path / "x_rate.fits")
    assert sha256(nircam_oracle["rate"]) == before  # the input is never modified
    again = dm.open(out)
    assert isinstance(again, dm.ImageModel)
    for name in ("data", "err", "dq", "var_poisson", "var_rnoise"):
        np.testing.assert_array_equal(getattr(again, name), getattr(rate, name))
        assert getattr(again, name).dtype == getattr(rate, name).dtype
    assert again.meta.cal_step.jump == "COMPLETE"
    assert again.meta.ref_file.gain.name == rate.meta.ref_file.gain.name
    assert again.meta.exposure.group_time == pytest.approx(rate.meta.exposure.group_time)
    # unknown keywords survive
    assert any(c.keyword == "APERNAME" or c.keyword == "PRIMECRS" for c in sum(
        again.extra_fits.values(), [])) or again.meta.aperture.name == "NRCA1_SUB160"


def test_products_open_in_reference_ecosystem(tmp_path, nircam_oracle):
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    raw = dm.open(nircam_oracle["uncal"])
    raw.save(tmp_path / "a_uncal.fits")
    ramp = dm.RampModel(np.ones((2, 3, 4, 5), np.float32))
    ramp.meta.instrument.name = "NIRCAM"
    ramp.meta.exposure.ngroups = 3
    ramp.save(tmp_path / "a_ramp.fits")
    cube = dm.CubeModel(np.ones((2, 4, 5), np.float32))
    cube.save(tmp_path / "a_rateints.fits")
    image = dm.ImageModel(np.ones((4, 5), np.float32), err=np.ones((4, 5)))
    image.meta.cal_step.ramp_fit = "COMPLETE"
    image.save(tmp_path / "a_rate.fits")
    expect = {"a_uncal.fits": "Level1bModel", "a_ramp.fits": "RampModel",
              "a_rateints.fits": "CubeModel", "a_rate.fits": "ImageModel"}
    for name, model_type in expect.items():
        with sdm.open(tmp_path / name) as opened:
            assert type(opened).__name__ == model_type
    with sdm.open(tmp_path / "a_uncal.fits") as opened:
        np.testing.assert_array_equal(opened.data, raw.data)
        assert opened.meta.exposure.ngroups == 10
    with sdm.open(tmp_path / "a_rate.fits") as opened:
        assert opened.meta.cal_step.ramp_fit == "COMPLETE"
        assert opened.dq.dtype == np.uint32


def test_unsigned_and_big_endian_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 65535, (2, 3, 8, 9), dtype=np.uint16)
    raw = dm.Level1bModel(data=data.astype(">u2"))
    raw.save(tmp_path / "u_uncal.fits")
    again = dm.open(tmp_path / "u_uncal.fits")
    np.testing.assert_array_equal(again.data, data)
    assert again.data.dtype == np.uint16
    img = dm.ImageModel(np.zeros((3, 3), ">f4"), dq=np.array([[0, 1, 2**31]] * 3, np.uint32))
    img.save(tmp_path / "d.fits")
    assert dm.open(tmp_path / "d.fits").dq[0, 2] == 2**31


def test_large_arrays_are_written_in_chunks(tmp_path, monkeypatch):
    from jwpipe.datamodels import fits_io

    monkeypatch.setattr(fits_io, "_CHUNK_BYTES", 1000)  # force many chunks
    data = np.arange(4 * 5 * 6 * 7, dtype=np.float32).reshape(4, 5, 6, 7)
    ramp = dm.RampModel(data)
    ramp.save(tmp_path / "c_ramp.fits")
    np.testing.assert_array_equal(dm.open(tmp_path / "c_ramp.fits").data, data)
    np.testing.assert_array_equal(fits.getdata(tmp_path / "c_ramp.fits", "SCI"), data)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    img = dm.ImageModel(np.zeros((3, 3), np.float32))
    target = tmp_path / "never_rate.fits"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dm.ImageModel, "_asdf_tree_bytes", boom)
    with pytest.raises(RuntimeError):
        img.save(target)
    assert list(tmp_path.iterdir()) == []


def test_meta_typos_are_errors_and_known_paths_read_none():
    model = dm.ImageModel()
    assert model.meta.exposure.ngroups is None
    model.meta.exposure.ngroups = 4
    assert model.meta.exposure.ngroups == 4
    with pytest.raises(AttributeError, match="ngroup"):
        model.meta.exposure.ngroup  # noqa: B018
    model.meta.cal_step.anything = "COMPLETE"
    model.meta.ref_file.gain.name = "crds://x.fits"
    assert model.meta.ref_file.gain.name == "crds://x.fits"


def test_wrong_shapes_and_files_are_clear_errors(tmp_path):
    with pytest.raises(DataShapeError, match="RampModel.data"):
        dm.RampModel(np.zeros((3, 3), np.float32))
    bogus = tmp_path / "not_fits.fits"
    bogus.write_text("hello")
    with pytest.raises(NotFitsError, match="not_fits.fits"):
        dm.open(bogus)
    img = dm.ImageModel(np.zeros((3, 3), np.float32))
    img.save(tmp_path / "i_rate.fits")
    with pytest.raises(ProductTypeError, match="ImageModel"):
        dm.open(tmp_path / "i_rate.fits", dm.RampModel)


# astropy warns of the truncation as it opens the file; the test is of the error that follows.
@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_file_names_extension(tmp_path, nircam_oracle):
    data = nircam_oracle["uncal"].read_bytes()
    cut = tmp_path / "cut_uncal.fits"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match="cut_uncal.fits"):
        dm.open(cut).data  # noqa: B018


def test_copy_is_deep_and_lazy_stays_lazy(nircam_oracle):
    raw = dm.open(nircam_oracle["uncal"])
    twin = raw.copy()
    assert isinstance(twin.lazy("data"), dm.LazyArray)
    twin.meta.exposure.ngroups = 99
    assert raw.meta.exposure.ngroups == 10


def test_asdf_extension_round_trips_wcs(tmp_path):
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    transform = models.Shift(1) & models.Shift(2)
    frame = cf.Frame2D(name="detector")
    out = cf.Frame2D(name="shifted")
    model = dm.ImageModel(np.zeros((4, 4), np.float32))
    model.meta.wcs = wcs.WCS([(frame, transform), (out, None)])
    model.save(tmp_path / "w_cal.fits")
    again = dm.open(tmp_path / "w_cal.fits")
    assert again.get_wcs()(0, 0) == (1, 2)


def test_unsigned_table_columns_keep_their_values(tmp_path, nircam_oracle):
    """DQ_DEF VALUE is uint32 stored with TZERO; values must come back physical, both ways."""
    mask = dm.open(nircam_oracle["refs"]["mask"])
    values = mask.dq_def["VALUE"]
    bits = mask.dq_def["BIT"]
    np.testing.assert_array_equal(values.astype(np.int64), 2 ** bits.astype(np.int64))
    mask.save(tmp_path / "m.fits")
    again = dm.open(tmp_path / "m.fits")
    np.testing.assert_array_equal(again.dq_def["VALUE"], values)
    assert again.dq_def["NAME"][0] == mask.dq_def["NAME"][0]
