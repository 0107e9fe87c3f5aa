"""Staged products (written in place as a stream produces them) against the ordinary writer:
same file but for DATE, readable by astropy and stdatamodels, fallbacks, nothing left behind."""

from __future__ import annotations

import gc
import re

import numpy as np
import pytest
from astropy.io import fits

import jwpipe.datamodels as dm
from jwpipe.datamodels import fits_io, staging
from jwpipe.datamodels.staging import StagedProduct

FIELDS = ("data", "err", "dq", "var_poisson", "var_rnoise")


def _same_but_date(a, b) -> None:
    """Files ``a`` and ``b`` hold the same bytes once the DATE values are masked."""
    mask = re.compile(rb"DATE    = '[^']*'")
    one, two = a.read_bytes(), b.read_bytes()
    assert len(one) == len(two)
    assert mask.sub(b"DATE", one) == mask.sub(b"DATE", two)


def _same_content(a, b) -> None:
    """Files ``a`` and ``b`` hold the same HDUs, cards (but DATE and blank records) and data."""
    def cards(header):
        return [(c.keyword, c.value, c.comment) for c in header.cards
                if c.keyword != "DATE" and (c.keyword or str(c.value).strip())]

    with fits.open(a, checksum=True) as one, fits.open(b, checksum=True) as two:
        one.verify("exception")
        two.verify("exception")
        assert [h.name for h in one] == [h.name for h in two]
        for x, y in zip(one, two, strict=True):
            assert cards(x.header) == cards(y.header), x.name
            if isinstance(x, fits.BinTableHDU):
                assert x.data.tobytes() == y.data.tobytes(), x.name
            elif x.data is not None:
                assert x.data.dtype == y.data.dtype, x.name
                np.testing.assert_array_equal(x.data, y.data, err_msg=x.name)


def _cube(nints=5, ny=6, nx=7, seed=0) -> dm.CubeModel:
    """A CubeModel with metadata, every staged array, and an INT_TIMES table."""
    rng = np.random.default_rng(seed)
    shape = (nints, ny, nx)
    model = dm.CubeModel()
    model.meta.instrument.name = "NIRISS"
    model.meta.exposure.type = "NIS_SOSS"
    model.meta.exposure.nints = nints
    model.meta.bunit_data = "DN/s"
    model.data = rng.normal(0, 1, shape).astype(np.float32)
    model.data[0, 0, 0] = np.nan
    model.err = rng.random(shape).astype(np.float32)
    model.dq = rng.integers(0, 2**32, shape, dtype=np.uint32)
    model.dq[1, 1, 1] = 2**31  # the BZERO sign bit
    model.var_poisson = rng.random(shape).astype(np.float32)
    model.var_rnoise = rng.random(shape).astype(np.float32)
    columns = [f"int_{when}_{scale}" for scale in ("MJD_UTC", "BJD_TDB")
               for when in ("start", "mid", "end")]
    times = np.zeros(nints, [("integration_number", ">i4")] + [(c, ">f8") for c in columns])
    times["integration_number"] = np.arange(1, nints + 1)
    for n, column in enumerate(columns):
        times[column] = 60000.0 + n + np.arange(nints) / 1000.0
    model.int_times = times
    return model


def _staged_copy(model, path, blocks=((0, 2), (2, 5))) -> dm.CubeModel:
    """``model`` rebuilt through a staged file at ``path``, written block by block."""
    layout = dm.CubeModel()
    layout.__dict__["_tree"] = dict(model._tree)
    staged = StagedProduct(layout, path, {name: model.shape for name in FIELDS})
    for start, stop in reversed(blocks):  # any order
        for name in FIELDS:
            staged.arrays[name][start:stop] = getattr(model, name)[start:stop]
    out = dm.CubeModel()
    out.__dict__["_tree"] = model._tree
    out.int_times = model.int_times
    staged.attach(out)
    return out


def test_staged_product_is_the_ordinary_file(tmp_path, monkeypatch):
    # No spare header room: this small header would get a blank block (see the test below).
    monkeypatch.setattr(staging, "SPARE_PRIMARY", 0)
    model = _cube()
    model.meta.filename = "x_rateints.fits"
    model.save(tmp_path / "plain" / "x_rateints.fits")
    target = tmp_path / "x_rateints.fits"
    staged = _staged_copy(model, target)
    assert not target.exists()  # nothing under the final name before the save
    assert staged.save(target) == target
    _same_but_date(tmp_path / "plain" / "x_rateints.fits", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "x_rateints.fits"]
    with fits.open(target, checksum=True) as hdul:
        hdul.verify("exception")
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "DQ", "VAR_POISSON",
                                          "VAR_RNOISE", "INT_TIMES", "ASDF"]
        assert all(card.keyword for card in hdul[0].header.cards)  # no blank records needed
        np.testing.assert_array_equal(hdul["DQ"].data, model.dq)
    again = dm.open(target)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(again, name), getattr(model, name))
    # The model's arrays now read the product itself.
    np.testing.assert_array_equal(np.asarray(staged.data), model.data)


def test_staged_product_opens_in_stdatamodels(tmp_path):
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    model = _cube()
    _staged_copy(model, tmp_path / "s_rateints.fits").save(tmp_path / "s_rateints.fits")
    with sdm.open(tmp_path / "s_rateints.fits") as opened:
        assert type(opened).__name__ == "CubeModel"
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(opened, name), getattr(model, name))
        assert opened.dq.dtype == np.uint32
        np.testing.assert_array_equal(opened.int_times["integration_number"], [1, 2, 3, 4, 5])
        assert opened.meta.instrument.name == "NIRISS"


def test_headers_that_outgrow_their_room_fall_back_to_a_full_write(tmp_path, monkeypatch):
    model = _cube()
    monkeypatch.setattr(staging, "SPARE_PRIMARY", 0)
    staged = _staged_copy(model, tmp_path / "g_rateints.fits")
    for n in range(60):  # more keywords than fit in the primary header's last block
        staged.extra_fits.setdefault("PRIMARY", []).append(fits.Card(f"EXTRA{n}", n))
    staged.save(tmp_path / "g_rateints.fits")
    with fits.open(tmp_path / "g_rateints.fits") as hdul:
        assert hdul[0].header["EXTRA59"] == 59
        np.testing.assert_array_equal(hdul["SCI"].data, model.data)
    staged._staged.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["g_rateints.fits"]


def test_spare_header_room_is_kept_as_blank_records(tmp_path, monkeypatch):
    model = _cube()
    monkeypatch.setattr(staging, "SPARE_PRIMARY", 100)  # more room than the header needs
    model.save(tmp_path / "plain.fits")
    _staged_copy(model, tmp_path / "b_rateints.fits").save(tmp_path / "b_rateints.fits")
    with fits.open(tmp_path / "b_rateints.fits", checksum=True) as a, \
            fits.open(tmp_path / "plain.fits") as b:
        a.verify("exception")
        assert sum(card.keyword == "" for card in a[0].header.cards) > 36
        cards = [(c.keyword, c.value) for c in a[0].header.cards
                 if c.keyword not in ("", "DATE", "FILENAME")]
        assert cards == [(c.keyword, c.value) for c in b[0].header.cards
                         if c.keyword not in ("DATE", "FILENAME")]
        np.testing.assert_array_equal(a["SCI"].data, b["SCI"].data)


def test_replaced_arrays_and_other_paths_are_written_in_full(tmp_path):
    model = _cube()
    staged = _staged_copy(model, tmp_path / "r_rateints.fits")
    other = tmp_path / "elsewhere" / "r_rateints.fits"
    staged.save(other)  # another folder: an ordinary write, reading the staged data
    np.testing.assert_array_equal(dm.open(other).err, model.err)
    staged.data = np.ones(model.shape, np.float32)  # what a later step might do
    staged.save(tmp_path / "r_rateints.fits")
    np.testing.assert_array_equal(dm.open(tmp_path / "r_rateints.fits").data, 1.0)
    np.testing.assert_array_equal(dm.open(tmp_path / "r_rateints.fits").dq, model.dq)
    staged._staged.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "r_rateints.fits"]


def test_unsaved_staged_files_are_removed(tmp_path):
    staged = StagedProduct(_cube(), tmp_path / "u_rateints.fits",
                           {name: (5, 6, 7) for name in FIELDS})
    staged.arrays["data"][0:1] = np.zeros((1, 6, 7), np.float32)
    assert len(list(tmp_path.iterdir())) == 1  # the staged file, under a temporary name
    staged.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="already saved or discarded"):
        staged.arrays["data"][0:1] = np.zeros((1, 6, 7), np.float32)
    StagedProduct(_cube(), tmp_path / "v_rateints.fits", {name: (5, 6, 7) for name in FIELDS})
    gc.collect()  # dropped without a save
    assert list(tmp_path.iterdir()) == []


def test_failed_save_of_a_staged_product_leaves_nothing(tmp_path, monkeypatch):
    staged = _staged_copy(_cube(), tmp_path / "f_rateints.fits")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dm.CubeModel, "_asdf_tree_bytes", boom)
    with pytest.raises(RuntimeError):
        staged.save(tmp_path / "f_rateints.fits")
    assert list(tmp_path.iterdir()) == []


def test_staging_checks_its_layout_and_rows(tmp_path):
    with pytest.raises(ValueError, match="leading arrays"):
        StagedProduct(_cube(), tmp_path / "l.fits", {"data": (5, 6, 7), "dq": (5, 6, 7)})
    staged = StagedProduct(_cube(), tmp_path / "l.fits", {"data": (5, 6, 7)})
    with pytest.raises(ValueError, match="need shape"):
        staged.arrays["data"][0:2] = np.zeros((1, 6, 7), np.float32)
    with pytest.raises(TypeError):
        staged.arrays["data"][::2] = np.zeros((3, 6, 7), np.float32)
    staged.arrays["data"][-1] = np.full((6, 7), 3, np.float32)
    np.testing.assert_array_equal(staged.arrays["data"][4], 3.0)
    np.testing.assert_array_equal(staged.arrays["data"][0], 0.0)  # never written: zeros
    with pytest.raises(TypeError, match="staged for a CubeModel"):
        staged.attach(dm.ImageModel())
    staged.discard()


def test_header_bytes_pads_with_blank_records_before_end():
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("OBJECT", "x")])
    assert fits_io.header_bytes(header) == header.tostring().encode("ascii")
    room = fits_io.header_bytes(header, 3 * fits_io.BLOCK)
    assert len(room) == 3 * fits_io.BLOCK
    assert room.index(b"END     ") == (3 * 36 - 36) * 80  # first record of the last block
    again = fits.Header.fromstring(room.decode("ascii"))
    assert [(k, v) for k, v in again.items() if k] == list(header.items())
    with pytest.raises(ValueError, match="does not fit"):
        fits_io.header_bytes(fits.Header([(f"K{n}", n) for n in range(40)]), fits_io.BLOCK)


def test_replace_file_swaps_in_the_new_file(tmp_path):
    target = tmp_path / "p.fits"
    for text in ("old", "new"):
        tmp = fits_io.temp_beside(target)
        tmp.write_text(text)
        fits_io.replace_file(tmp, target)
        assert target.read_text() == text
        assert [p.name for p in tmp_path.iterdir()] == ["p.fits"]


# -- the stage-1 stream -------------------------------------------------------------------------

def _fitter(tmp_path, nints, rateints_path):
    from jwpipe.steps.ramp_fit import RampFitParams, RampFitter

    product = dm.RampModel()
    exposure = product.meta.exposure
    exposure.nints, exposure.ngroups, exposure.nframes = nints, 6, 1
    exposure.group_time = exposure.frame_time = 10.0
    product.meta.instrument.name = "NIRISS"
    ny, nx = 5, 8
    return RampFitter(product, np.full((ny, nx), 2.0, np.float32),
                      np.full((ny, nx), 8.0, np.float32), RampFitParams(), 1,
                      spill_dir=tmp_path, rateints_path=rateints_path)


@pytest.mark.parametrize("staged", [False, True])
def test_pixel_dq_added_in_later_blocks_reaches_every_integration(tmp_path, staged):
    """As the spill path always did: each integration's DQ ORs the exposure's final PIXELDQ."""
    from jwpipe.steps.base import RampBlock

    nints, ngroups, ny, nx = 4, 6, 5, 8
    rng = np.random.default_rng(3)
    data = (np.arange(1, ngroups + 1, dtype=np.float32)[None, :, None, None] * 30.0
            + rng.normal(0, 1, (nints, ngroups, ny, nx)).astype(np.float32))
    groupdq = np.zeros(data.shape, np.uint8)
    groupdq[2, 3, 1, 1] = 4  # a jump: per-integration DQ of its own
    path = tmp_path / "t_rateints.fits" if staged else None
    fitter = _fitter(tmp_path, nints, path)
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[0, 0] = 1
    for start in range(nints):  # one integration per block; new pixel flags on the way
        if start == 2:
            pixeldq[3, 4] |= 2**31
            pixeldq[0, 0] |= 4096
        fitter.add_block(RampBlock(data[start:start + 1].copy(), groupdq[start:start + 1].copy(),
                                   pixeldq, start, nints, fitter.product.meta))
    pixeldq[4, 7] |= 8  # as a step's finish might
    rate, ints = fitter.finish()
    dq = np.asarray(ints.lazy("dq"))  # read, not loaded (``ints.dq`` would replace it)
    assert (dq & pixeldq == pixeldq).all()
    assert dq[2, 1, 1] & 4 and not dq[1, 1, 1] & 4
    np.testing.assert_array_equal(rate.dq & pixeldq, pixeldq)
    if staged:
        ints.save(path)
        np.testing.assert_array_equal(dm.open(path).dq, dq)
        assert [p.name for p in tmp_path.iterdir()] == ["t_rateints.fits"]


def test_detector1_rateints_is_the_file_the_spill_path_writes(nircam_oracle, tmp_path,
                                                              monkeypatch):
    """The streamed SUB160 exposure (3 integrations, a block each), staged and not. Its primary
    header gets blank records where the spare room was not needed."""
    import jwpipe
    from jwpipe.steps.ramp_fit import RampFitStep

    def run(out):
        jwpipe.run("detector1", str(nircam_oracle["uncal"]), overrides=nircam_oracle["refs"],
                   save_results=True, output_dir=str(out), integrations_per_block=1,
                   steps={"jump": {"expand_large_events": False, "find_showers": False}})
        return next(out.glob("*_rateints.fits"))

    staged = run(tmp_path / "staged")
    start = RampFitStep.start
    monkeypatch.setattr(RampFitStep, "start", lambda self, product, refs, spill_dir=None,
                        rateints_path=None: start(self, product, refs, spill_dir))
    _same_content(run(tmp_path / "spill"), staged)
    assert not list((tmp_path / "staged").glob(".*"))  # no temporary file left
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    with sdm.open(staged) as opened, dm.open(staged) as ours:
        assert type(opened).__name__ == "CubeModel"
        assert opened.meta.cal_step.ramp_fit == "COMPLETE"
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(opened, name), getattr(ours, name))


def test_a_failing_stream_leaves_no_staged_file(nircam_oracle, tmp_path, monkeypatch):
    import jwpipe
    from jwpipe.steps.jump import JumpStep

    process_block = JumpStep.process_block

    def fail_late(self, block, state):
        if block.int_start == 2:
            raise RuntimeError("late failure")
        return process_block(self, block, state)

    monkeypatch.setattr(JumpStep, "process_block", fail_late)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="late failure"):
        jwpipe.run("detector1", str(nircam_oracle["uncal"]), overrides=nircam_oracle["refs"],
                   save_results=True, output_dir=str(out), integrations_per_block=1)
    assert not out.exists() or list(out.iterdir()) == []
