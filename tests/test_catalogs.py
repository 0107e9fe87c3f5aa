"""ECSV catalogs (_cat, _phot, _whtlt): round trip with product meta, atomic writes, bad files."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable, Table
from conftest import sha256

import jwpipe.datamodels as dm
from jwpipe.datamodels import fits_io
from jwpipe.errors import InputFileError, TableFormatError


def _catalog() -> QTable:
    table = QTable({"label": np.array([1, 2, 3], np.int32),
                    "aper_total_flux": [1.5, 2.25, np.nan] * u.Jy,
                    "is_extended": [True, False, True],
                    "name": ["a", "bb", "ccc"]})
    table.meta["aperture_radius"] = 3.5
    return table


def _product() -> dm.ImageModel:
    model = dm.ImageModel(np.zeros((2, 2), np.float32))
    model.meta.filename = "jw01_nrca1_i2d.fits"
    model.meta.instrument.name = "NIRCAM"
    model.meta.instrument.detector = "NRCA1"
    model.meta.instrument.filter = "F200W"
    model.meta.instrument.pupil = "CLEAR"
    return model


def test_catalog_round_trip_with_product_meta(tmp_path):
    table = _catalog()
    path = dm.write_catalog(table, tmp_path / "jw01_cat.ecsv", model=_product())
    again = dm.read_catalog(path, required_columns=("label", "aper_total_flux"))
    assert again.colnames == table.colnames
    np.testing.assert_array_equal(again["label"], table["label"])
    assert again["aper_total_flux"].unit == u.Jy
    np.testing.assert_array_equal(again["aper_total_flux"].value, table["aper_total_flux"].value)
    assert list(again["name"]) == ["a", "bb", "ccc"]
    assert again["is_extended"].dtype == bool and list(again["is_extended"]) == [True, False, True]
    assert again.meta["filename"] == "jw01_cat.ecsv"
    assert again.meta["source_file"] == "jw01_nrca1_i2d.fits"
    assert (again.meta["instrument"], again.meta["detector"], again.meta["filter"],
            again.meta["pupil"]) == ("NIRCAM", "NRCA1", "F200W", "CLEAR")
    assert again.meta["aperture_radius"] == 3.5 and "jwpipe_version" in again.meta
    assert "grating" not in again.meta  # only values the product has
    assert dict(table.meta) == {"aperture_radius": 3.5}  # the caller's table is not touched
    assert Table.read(path, format="ascii.ecsv")["label"].dtype == np.int32  # plain ECSV


def test_failed_catalog_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "jw01_phot.ecsv"
    dm.write_catalog(_catalog(), target)
    before = sha256(target)
    bad = _catalog()
    bad.meta["unserialisable"] = object()
    with pytest.raises(Exception, match="represent"):
        dm.write_catalog(bad, target)

    def rename_fails(*args):
        raise OSError("rename failed")

    monkeypatch.setattr(fits_io.os, "replace", rename_fails)
    with pytest.raises(OSError, match="rename failed"):
        dm.write_catalog(_catalog(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jw01_phot.ecsv"]
    assert sha256(target) == before
    with pytest.raises(FileExistsError):
        dm.write_catalog(_catalog(), target, overwrite=False)


def test_bad_catalog_files_name_the_file_and_column(tmp_path):
    with pytest.raises(InputFileError, match="absent_cat.ecsv: no such file"):
        dm.read_catalog(tmp_path / "absent_cat.ecsv")
    plain = tmp_path / "plain_cat.ecsv"
    plain.write_text("label,flux\n1,2.0\n")
    with pytest.raises(TableFormatError, match="plain_cat.ecsv: not a readable ECSV table"):
        dm.read_catalog(plain)
    good = dm.write_catalog(_catalog(), tmp_path / "good_cat.ecsv")
    cut = tmp_path / "cut_cat.ecsv"
    text = good.read_text()
    cut.write_text(text[: text.index("datatype:") + 20])  # header cut mid-way
    with pytest.raises(TableFormatError, match="cut_cat.ecsv"):
        dm.read_catalog(cut)
    with pytest.raises(TableFormatError, match="good_cat.ecsv: no column xcentroid"):
        dm.read_catalog(good, required_columns=("label", "xcentroid"))
    with pytest.raises(TypeError, match="astropy Table"):
        dm.write_catalog({"label": [1]}, tmp_path / "dict_cat.ecsv")
