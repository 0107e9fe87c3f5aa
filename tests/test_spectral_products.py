"""Spectral products (_x1d MultiSpecModel, _x1dints TSOMultiSpecModel): round trips, agreement
with the reference data models both ways, atomic writes and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from conftest import sha256

import jwpipe.datamodels as dm
from jwpipe.datamodels import spectra
from jwpipe.errors import JwpipeError, TableFormatError

SPEC_NAMES = [name for name, *_ in spectra.SPEC_COLUMNS]
TSO_NAMES = [name for name, *_ in spectra.TSO_COLUMNS]


def _filled(table: np.ndarray, seed: int) -> np.ndarray:
    """Distinct values in every column (DQ near 2**32 to exercise the unsigned storage)."""
    rng = np.random.default_rng(seed)
    for name in table.dtype.names:
        column = table[name]
        if column.dtype.kind == "f":
            column[...] = rng.normal(size=column.shape)
        elif name == "DQ":
            column[...] = rng.integers(2**31, 2**32, size=column.shape, dtype=np.uint32)
        else:
            column[...] = rng.integers(1, 1000, size=column.shape)
    return table


def _multispec() -> dm.MultiSpecModel:
    model = dm.MultiSpecModel()
    model.meta.instrument.name = "NIRSPEC"
    model.meta.instrument.detector = "NRS1"
    model.meta.instrument.grating = "G395H"
    model.meta.exposure.type = "NRS_FIXEDSLIT"
    for index, n_rows in enumerate((7, 1, 12)):
        spectrum = dm.Spectrum(_filled(dm.empty_spec_table(n_rows), seed=index),
                               name=f"S200A{index}", source_id=100 + index,
                               spectral_order=index + 1, source_type="POINT",
                               extraction_xstart=1.5 + index, extraction_xstop=40.0,
                               extraction_ystart=10.25, extraction_ystop=15.75,
                               wavelength_corrected=bool(index % 2), source_ra=53.1 + index)
        model.spec.append(spectrum)
    model.spec[1].units["FLUX"] = "MJy"  # a non-standard unit must survive as written
    model.spec[2].extra_cards.append(fits.Card("MYKEY", 42, "not in the schema"))
    return model


def _tsomultispec(nints: int = 4) -> dm.TSOMultiSpecModel:
    model = dm.TSOMultiSpecModel()
    model.meta.instrument.name = "NIRISS"
    model.meta.exposure.type = "NIS_SOSS"
    model.meta.exposure.nints = nints
    for order, n_elements in ((1, 9), (2, 5)):
        table = _filled(dm.empty_spec_table(nints, n_elements=n_elements), seed=order)
        table["INT_NUM"] = np.arange(1, nints + 1)
        model.spec.append(dm.Spectrum(table, spectral_order=order, detector="NIS",
                                      source_type="POINT"))
    int_times = np.zeros(nints, dtype=[("integration_number", ">i4"),
                                       ("int_start_MJD_UTC", ">f8"), ("int_mid_MJD_UTC", ">f8"),
                                       ("int_end_MJD_UTC", ">f8"), ("int_start_BJD_TDB", ">f8"),
                                       ("int_mid_BJD_TDB", ">f8"), ("int_end_BJD_TDB", ">f8")])
    int_times["integration_number"] = np.arange(1, nints + 1)
    int_times["int_mid_MJD_UTC"] = 60000.0 + np.arange(nints) / 1440
    model.int_times = int_times
    return model


def _assert_same_spectra(got, expected) -> None:
    assert len(got.spec) == len(expected.spec)
    for ours, theirs in zip(got.spec, expected.spec, strict=True):
        assert ours.spec_table.dtype.names == theirs.spec_table.dtype.names
        for name in theirs.spec_table.dtype.names:
            expected_dtype = theirs.spec_table[name].dtype.newbyteorder("=")
            assert ours.spec_table[name].dtype == expected_dtype, name
            np.testing.assert_array_equal(ours.spec_table[name], theirs.spec_table[name],
                                          err_msg=name)
        assert ours.metadata() == theirs.metadata()
        present = set(theirs.spec_table.dtype.names)
        assert ours.units == {k: v for k, v in theirs.units.items() if k in present}


def test_empty_table_has_schema_dtype_and_empty_values():
    table = dm.empty_spec_table(4)
    assert table.dtype.names == tuple(SPEC_NAMES)
    assert table["DQ"].dtype == np.uint32 and table["WAVELENGTH"].dtype == np.float64
    assert np.isnan(table["FLUX"]).all() and (table["DQ"] == 1).all()
    assert (table["NPIXELS"] == 0).all()
    tso = dm.empty_spec_table(3, n_elements=6)
    assert tso.dtype.names == tuple(TSO_NAMES)
    assert tso["FLUX"].shape == (3, 6) and tso["INT_NUM"].shape == (3,)
    assert tso["N_ALONGDISP"].dtype == np.uint32 and np.isnan(tso["MJD-AVG"]).all()


def test_table_dtypes_agree_with_reference_schemas():
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    assert dm.spec_dtype() == sdm.SpecModel().get_dtype("spec_table").newbyteorder("=")
    reference = sdm.TSOSpecModel().get_dtype("spec_table")
    ours = dm.spec_dtype(n_elements=5)
    assert ours.names == reference.names
    for name in ours.names:
        assert ours[name].base == reference[name].base.newbyteorder("="), name


def test_multispec_round_trip(tmp_path):
    model = _multispec()
    path = model.save(tmp_path / "jw_x1d.fits")
    again = dm.open(path)
    assert type(again) is dm.MultiSpecModel
    _assert_same_spectra(again, model)
    assert [len(s.spec_table) for s in again.spec] == [7, 1, 12]
    assert again.spec[1].units["FLUX"] == "MJy" and again.spec[0].units["FLUX"] == "Jy"
    assert again.spec[1].wavelength_corrected is True and again.spec[0].source_id == 100
    assert [(c.keyword, c.value) for c in again.spec[2].extra_cards] == [("MYKEY", 42)]
    assert again.meta.instrument.grating == "G395H"
    with fits.open(path) as hdul:
        tables = [hdu for hdu in hdul if hdu.name == "EXTRACT1D"]
        assert [hdu.ver for hdu in tables] == [1, 2, 3]
        header = tables[0].header
        assert header["SLTNAME"] == "S200A0" and header["SPORDER"] == 1
        assert header["EXTRXSTR"] == 1.5 and header["SRCTYPE"] == "POINT"
        assert tables[0].columns["WAVELENGTH"].unit == "um"
        assert tables[0].columns["SB_VAR_FLAT"].unit == "(MJy/sr)^2"
        assert tables[0].columns["DQ"].unit is None
        np.testing.assert_array_equal(tables[2].data["DQ"], model.spec[2].spec_table["DQ"])
    twin = again.copy()
    twin.spec[0].spec_table["FLUX"][0] = 99.0
    twin.spec[0].name = "other"
    assert again.spec[0].spec_table["FLUX"][0] == model.spec[0].spec_table["FLUX"][0]
    assert again.spec[0].name == "S200A0" and len(twin.spec) == 3
    # and again: a file read and written by jwpipe is unchanged in content
    again.save(tmp_path / "again_x1d.fits")
    _assert_same_spectra(dm.open(tmp_path / "again_x1d.fits"), model)


def test_tsomultispec_round_trip(tmp_path):
    model = _tsomultispec()
    path = model.save(tmp_path / "jw_x1dints.fits")
    again = dm.open(path)
    assert type(again) is dm.TSOMultiSpecModel
    _assert_same_spectra(again, model)
    assert again.spec[0].spec_table["FLUX"].shape == (4, 9)
    assert again.spec[1].spec_table["FLUX"].shape == (4, 5)
    assert again.spec[0].units["MJD-BEG"] == "d"
    np.testing.assert_array_equal(again.int_times, model.int_times)
    with fits.open(path) as hdul:
        raw = hdul["ASDF"].data["ASDF_METADATA"][0].tobytes().decode()
    # The tree references each table the way the reference data models do.
    assert "source: fits:EXTRACT1D,2" in raw and "source: fits:INT_TIMES,1" in raw


def test_spectra_open_in_reference_ecosystem(tmp_path):
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    for ours in (_multispec(), _tsomultispec()):
        path = ours.save(tmp_path / f"{ours.model_type}.fits")
        with sdm.open(path) as theirs:
            assert type(theirs).__name__ == ours.model_type
            assert len(theirs.spec) == len(ours.spec)
            assert theirs.meta.instrument.name == ours.meta.instrument.name
            for mine, spectrum in zip(ours.spec, theirs.spec, strict=True):
                table = spectrum.spec_table
                for name in mine.spec_table.dtype.names:
                    np.testing.assert_array_equal(table[name], mine.spec_table[name],
                                                  err_msg=name)
                    assert (table.columns[name].unit or None) == mine.units.get(name), name
                for attr, value in mine.metadata().items():
                    assert getattr(spectrum, attr) == value, attr
        if isinstance(ours, dm.TSOMultiSpecModel):
            with sdm.open(path) as theirs:
                np.testing.assert_array_equal(theirs.int_times["int_mid_MJD_UTC"],
                                              ours.int_times["int_mid_MJD_UTC"])


def _reference_multispec(sdm, path):
    model = sdm.MultiSpecModel()
    model.meta.instrument.name = "MIRI"
    model.meta.exposure.type = "MIR_LRS-FIXEDSLIT"
    for index, n_rows in enumerate((6, 3)):
        spectrum = sdm.SpecModel()
        spectrum.spec_table = _filled(np.zeros(n_rows, spectrum.get_dtype("spec_table")), index)
        spectrum.spec_table.columns["WAVELENGTH"].unit = "um"
        spectrum.spec_table.columns["FLUX"].unit = "Jy"
        spectrum.name = f"slit{index}"
        spectrum.source_id = 5 + index
        spectrum.spectral_order = 1
        spectrum.extraction_ystop = 30.5
        model.spec.append(spectrum)
    model.save(path)


def test_reference_ecosystem_spectra_read_by_jwpipe(tmp_path):
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    _reference_multispec(sdm, tmp_path / "ref_x1d.fits")
    ours = dm.open(tmp_path / "ref_x1d.fits")
    assert type(ours) is dm.MultiSpecModel and len(ours.spec) == 2
    assert ours.meta.instrument.name == "MIRI"
    with sdm.open(tmp_path / "ref_x1d.fits") as theirs:
        for mine, spectrum in zip(ours.spec, theirs.spec, strict=True):
            for name in SPEC_NAMES:
                np.testing.assert_array_equal(mine.spec_table[name], spectrum.spec_table[name])
            assert mine.units == {"WAVELENGTH": "um", "FLUX": "Jy"}
            assert (mine.name, mine.source_id, mine.extraction_ystop) == (
                spectrum.name, spectrum.source_id, 30.5)
    # jwpipe rewrites it; the reference models read the same spectra back
    ours.save(tmp_path / "rewritten_x1d.fits")
    with sdm.open(tmp_path / "rewritten_x1d.fits") as theirs:
        assert type(theirs).__name__ == "MultiSpecModel"
        assert [s.name for s in theirs.spec] == ["slit0", "slit1"]
        np.testing.assert_array_equal(theirs.spec[1].spec_table["DQ"],
                                      ours.spec[1].spec_table["DQ"])

    tso = sdm.TSOMultiSpecModel()
    spectrum = sdm.TSOSpecModel()
    names = sdm.TSOSpecModel().get_dtype("spec_table")
    dtype = [(n, names[n], (4,)) if n in SPEC_NAMES else (n, names[n]) for n in names.names]
    spectrum.spec_table = _filled(np.zeros(3, dtype), seed=9)
    spectrum.spec_table.columns["MJD-AVG"].unit = "d"
    spectrum.spectral_order = 2
    tso.spec.append(spectrum)
    tso.save(tmp_path / "ref_x1dints.fits")
    ours = dm.open(tmp_path / "ref_x1dints.fits")
    assert type(ours) is dm.TSOMultiSpecModel
    table = ours.spec[0].spec_table
    assert table["FLUX"].shape == (3, 4) and ours.spec[0].spectral_order == 2
    assert ours.spec[0].units == {"MJD-AVG": "d"}
    with sdm.open(tmp_path / "ref_x1dints.fits") as theirs:
        for name in TSO_NAMES:
            np.testing.assert_array_equal(table[name], theirs.spec[0].spec_table[name])


def test_layout_picks_the_class_without_datamodl(tmp_path):
    for model, cls in ((_multispec(), dm.MultiSpecModel), (_tsomultispec(), dm.TSOMultiSpecModel)):
        path = model.save(tmp_path / f"{cls.model_type}.fits")
        with fits.open(path, mode="update") as hdul:
            del hdul[0].header["DATAMODL"]
        assert type(dm.open(path)) is cls


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "jw_x1d.fits"
    _multispec().save(target)
    before = sha256(target)

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(spectra, "_spectrum_hdu", disk_full)
    with pytest.raises(OSError, match="disk full"):
        _multispec().save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jw_x1d.fits"]
    assert sha256(target) == before


def test_incomplete_models_are_not_written(tmp_path):
    with pytest.raises(TableFormatError, match="spec is empty"):
        dm.MultiSpecModel().save(tmp_path / "empty_x1d.fits")
    model = _multispec()
    model.spec[1].spec_table = model.spec[1].spec_table[["WAVELENGTH", "FLUX"]]
    with pytest.raises(TableFormatError, match=r"spec\[1\].spec_table: no column FLUX_ERROR"):
        model.save(tmp_path / "partial_x1d.fits")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AttributeError, match="sourceid"):
        dm.Spectrum(sourceid=3)


def test_missing_extract1d_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "nospec_x1d.fits"
    primary = fits.PrimaryHDU(header=fits.Header([("DATAMODL", "MultiSpecModel")]))
    fits.HDUList([primary]).writeto(path)
    with pytest.raises(TableFormatError, match=r"nospec_x1d.fits: no EXTRACT1D extension") as info:
        dm.open(path)
    assert isinstance(info.value, JwpipeError) and isinstance(info.value, ValueError)


def test_missing_column_is_an_error_naming_file_extension_and_column(tmp_path):
    path = _multispec().save(tmp_path / "cut_x1d.fits")
    with fits.open(path) as hdul:
        table = hdul[2]
        columns = [c for c in table.columns if c.name != "SB_ERROR"]
        hdul[2] = fits.BinTableHDU.from_columns(columns, header=table.header)
        hdul.writeto(tmp_path / "bad_x1d.fits")
    with pytest.raises(TableFormatError,
                       match=r"bad_x1d.fits: extension EXTRACT1D \(EXTVER 2\): no column SB_ERROR"):
        dm.open(tmp_path / "bad_x1d.fits")
    path = _tsomultispec().save(tmp_path / "cut_x1dints.fits")
    with fits.open(path) as hdul:
        table = hdul["EXTRACT1D", 1]
        columns = [c for c in table.columns if c.name != "SEGMENT"]
        hdul["EXTRACT1D", 1] = fits.BinTableHDU.from_columns(columns, header=table.header)
        hdul.writeto(tmp_path / "bad_x1dints.fits")
    with pytest.raises(TableFormatError, match=r"EXTVER 1\): no column SEGMENT"):
        dm.open(tmp_path / "bad_x1dints.fits")
