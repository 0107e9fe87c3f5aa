"""The direct binary-table writer (FitsAssembler.record_table) against astropy's reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits

from jwpipe.datamodels.fits_io import FitsAssembler

INT_TIMES = np.dtype([("integration_number", ">i4"), ("int_start_MJD_UTC", "<f8"),
                      ("int_mid_MJD_UTC", ">f8"), ("int_end_MJD_UTC", "<f8"),
                      ("int_start_BJD_TDB", "<f8")])
MIXED = np.dtype([("u16", "<u2"), ("u32", "<u4"), ("u64", "<u8"), ("i16", "<i2"),
                  ("i64", "<i8"), ("f32", "<f4"), ("flag", "?"), ("byte", "u1"),
                  ("name", "S12"), ("vec", "<f8", (3,)), ("img", "<i4", (2, 3))])


def _write(records):
    buf = io.BytesIO()
    out = FitsAssembler(buf)
    out.primary([])
    written = out.record_table("TAB", records)
    return written, buf.getvalue()


@pytest.mark.parametrize("dtype", [INT_TIMES, MIXED])
def test_round_trip_through_astropy(dtype):
    rng = np.random.default_rng(3)
    records = np.zeros(7, dtype)
    for name in dtype.names:
        field = dtype.fields[name][0]
        if field.base.kind in "iu":
            info = np.iinfo(field.base)
            records[name] = rng.integers(info.min, info.max, records[name].shape,
                                         dtype=field.base.newbyteorder("="), endpoint=True)
        elif field.base.kind == "f":
            records[name] = rng.normal(size=records[name].shape)
        elif field.base.kind == "b":
            records[name] = rng.random(records[name].shape) < 0.5
        else:
            records[name] = [b"g%d" % i for i in range(7)]
    written, data = _write(records)
    assert written and len(data) % 2880 == 0
    with fits.open(io.BytesIO(data)) as hdul:
        table = hdul["TAB"].data
        assert hdul["TAB"].header["NAXIS2"] == 7
        for name in dtype.names:
            got = np.asarray(table[name])
            if records[name].dtype.kind == "S":  # astropy hands strings back decoded
                got = np.char.encode(got, "ascii")
            np.testing.assert_array_equal(got, records[name], err_msg=name)
            assert got.dtype.kind == records[name].dtype.kind, name


def test_byte_identical_to_astropy_data():
    """The data section is what astropy itself writes for the same table."""
    records = np.zeros(4, INT_TIMES)
    records["integration_number"] = np.arange(1, 5)
    records["int_mid_MJD_UTC"] = 60000.5 + np.arange(4) / 86400
    _, ours = _write(records)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(records, name="TAB")]).writeto(buf)
    theirs = buf.getvalue()
    with fits.open(io.BytesIO(ours)) as a, fits.open(io.BytesIO(theirs)) as b:
        assert a["TAB"].data.tobytes() == b["TAB"].data.tobytes()
        for key in ("NAXIS1", "NAXIS2", "TFIELDS", "TTYPE1", "TFORM1", "TFORM5"):
            assert a["TAB"].header[key] == b["TAB"].header[key], key


def test_unsupported_columns_fall_back():
    for dtype in ([("s", "i1")], [("c", "c8")], [("u", "U4")], [("s", "S4", (2,))]):
        written, data = _write(np.zeros(2, dtype))
        assert not written
        assert len(data) == 2880  # the primary header only: nothing half-written
