"""LazyArray's positional reads and the chunked writer give exactly what the memory map gives."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from jwpipe.datamodels import fits_io
from jwpipe.datamodels.fits_io import FitsAssembler, LazyArray, lazy_image, open_hdulist

SHAPE = (3, 4, 37, 29)

KEYS = [
    slice(None), slice(1, 3), slice(2, 2), slice(-2, None), 0, -1, 2,
    (slice(0, 2), slice(1, 3)), (1, 2), (1, 2, 5), (1, 2, 5, 7),
    (Ellipsis, slice(3, 20), slice(2, 9)),
    (slice(None), 0, Ellipsis), (Ellipsis, slice(5, 6), slice(None)), (0, Ellipsis, slice(0, 1)),
    (slice(1, 2), slice(None), slice(10, 30), slice(0, 29)), (Ellipsis,), (0, slice(None), 3),
    # handled by the memory-map path
    slice(None, None, 2), (slice(None), [0, 2]), (Ellipsis, None),
]


def _write(path, arrays):
    hdus = [fits.PrimaryHDU()]
    for name, array in arrays.items():
        hdu = fits.ImageHDU(array, name=name)
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    rng = np.random.default_rng(5)
    arrays = {
        "U16": rng.integers(0, 65536, SHAPE).astype(np.uint16),
        "I16": rng.integers(-32768, 32768, SHAPE).astype(np.int16),
        "F32": rng.normal(0, 1e3, SHAPE).astype(np.float32),
        "F64": rng.normal(0, 1e3, SHAPE[1:]).astype(np.float64),
        "U32": rng.integers(0, 2**32, SHAPE[1:], dtype=np.uint64).astype(np.uint32),
        "I32": rng.integers(-2**31, 2**31, SHAPE).astype(np.int32),
        "U8": rng.integers(0, 256, SHAPE).astype(np.uint8),
    }
    arrays["F32"][0, 0, 0, :3] = [np.nan, np.inf, -0.0]
    path = tmp_path_factory.mktemp("fitsio") / "arrays.fits"
    _write(path, arrays)
    hdul = open_hdulist(path)
    lazies = {hdu.name: lazy_image(hdul, i, path) for i, hdu in enumerate(hdul) if i}
    hdul.close()
    return arrays, lazies


def _old(lazy: LazyArray, key, dtype):
    return lazy.convert(lazy._memmap()[key], dtype)


@pytest.mark.parametrize("name", ["U16", "I16", "F32", "F64", "U32", "I32", "U8"])
@pytest.mark.parametrize("dtype", [None, np.float32, np.float64, np.uint16, np.uint32])
def test_reads_match_the_stored_values(stored, name, dtype):
    arrays, lazies = stored
    lazy = lazies[name]
    if lazy.dtype.kind == "f" and np.dtype(dtype or lazy.dtype).kind != "f":
        pytest.skip("NaN/inf to integer casts are undefined")
    for key in KEYS:
        try:
            truth = np.asarray(arrays[name][key])
        except IndexError:
            with pytest.raises(IndexError):
                lazy.read(key, dtype)
            continue
        expected = truth.astype(dtype or lazy.dtype)
        got = lazy.read(key, dtype)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (name, key)
        np.testing.assert_array_equal(got, expected, err_msg=f"{name} {key}")
        if lazy._plan(key) is not None:
            assert got.flags.c_contiguous and got.flags.writeable
        if truth.ndim:  # the memory-map path (numpy scalars lose the stored byte order)
            np.testing.assert_array_equal(_old(lazy, key, dtype), expected)


def test_small_read_chunks_and_no_resident_map(stored, monkeypatch):
    arrays, lazies = stored
    monkeypatch.setattr(fits_io, "_READ_CHUNK", 40)  # many pieces per run, odd sizes
    for key in (slice(None), (Ellipsis, slice(3, 20), slice(2, 9)), (1, slice(None), 5)):
        np.testing.assert_array_equal(lazies["U16"].read(key, np.float32),
                                      arrays["U16"][key].astype(np.float32))
    fresh = LazyArray(lazies["F32"].path, lazies["F32"].offset, SHAPE, ">f4")
    fresh.read(slice(0, 2))
    assert fresh._mm is None


def test_out_of_range_index(stored):
    _, lazies = stored
    with pytest.raises(IndexError):
        lazies["F32"].read(3)
    with pytest.raises(IndexError):
        lazies["F32"].read((0, 0, 37))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32, np.float64, np.uint32,
                                   np.uint8, np.int8, np.int32])
def test_writer_round_trip_in_small_chunks(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(fits_io, "_CHUNK_BYTES", 100)
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    data = (rng.integers(info.min, info.max, SHAPE, endpoint=True).astype(dtype) if info
            else rng.normal(0, 1, SHAPE).astype(dtype))
    path = tmp_path / "w.fits"
    with open(path, "wb") as fh:
        out = FitsAssembler(fh)
        out.primary([])
        out.image(data, dtype, [fits.Card("EXTNAME", "SCI")])
        out.image(data[:, 1], dtype, [fits.Card("EXTNAME", "NONCONTIG")])
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul["SCI"].data, data)
        np.testing.assert_array_equal(hdul["NONCONTIG"].data, data[:, 1])


def test_read_into_a_given_array(stored):
    arrays, lazies = stored
    lazy = lazies["F32"]
    for key in ((slice(0, 2), slice(1, 3)), (1, 2), (Ellipsis, slice(3, 20), slice(2, 9)),
                slice(None, None, 2)):
        expected = arrays["F32"][key]
        out = np.full(expected.shape, -1.0, np.float32)
        got = lazy.read(key, np.float32, out=out)
        assert got is out
        np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError):
        lazy.read(0, np.float32, out=np.empty((2, 2), np.float32))


@pytest.mark.parametrize("size", [1, 2879, 2880, 5001])
def test_bytes_table_is_what_astropy_writes(size):
    import io

    payload = (b"#ASDF 1.0.0\n" + bytes(range(256)) * 30)[:size]
    column = fits.Column(name="ASDF_METADATA", format=f"{size}B",
                         array=np.frombuffer(payload, np.uint8)[np.newaxis])
    expected, got = io.BytesIO(), io.BytesIO()
    FitsAssembler(expected).hdu(fits.BinTableHDU.from_columns([column], name="ASDF"))
    FitsAssembler(got).bytes_table("ASDF", "ASDF_METADATA", payload)
    assert got.getvalue() == expected.getvalue()
