"""Memory-saving paths of the stage-1 stream give exactly the results of the resident ones."""

from __future__ import annotations

import numpy as np
import pytest
from _stage1_helpers import make_ramp, write_ref

from jwpipe.steps import dark_current
from jwpipe.steps.base import RampBlock
from jwpipe.steps.dark_current import DarkCurrentStep


def _dark_file(tmp_path, frames, *, four_d, xstart=1, ystart=1):
    return write_ref(tmp_path / "dark.fits", "DarkMIRIModel" if four_d else "DarkModel", "dark",
                     xstart=xstart, ystart=ystart, instrument="MIRI" if four_d else "NIRCAM",
                     keywords={"exposure.nframes": 1, "exposure.groupgap": 0},
                     data=frames.astype(np.float32))


def _run_blocks(step, model, refs, per_block):
    """prepare + process_block over blocks of integrations, as the driver streams them."""
    state = step.prepare(model, refs)
    out = np.array(model.data, np.float32)
    pixeldq = np.zeros(model.shape[-2:], np.uint32)
    for start in range(0, model.shape[0], per_block):
        block = RampBlock(out[start:start + per_block].copy(),
                          np.zeros(out[start:start + per_block].shape, np.uint8), pixeldq, start,
                          model.shape[0], model.meta)
        step.process_block(block, state)
        out[start:start + per_block] = block.data
    return out, pixeldq, step.release(state)


@pytest.mark.parametrize("four_d", [False, True])
@pytest.mark.parametrize("nframes,groupgap", [(1, 0), (2, 0), (2, 3), (1, 2), (4, 1)])
def test_streamed_dark_is_bit_identical(tmp_path, monkeypatch, four_d, nframes, groupgap):
    rng = np.random.default_rng(nframes * 10 + groupgap)
    nfr = 30
    shape = (3, nfr, 20, 22) if four_d else (nfr, 20, 22)
    frames = rng.normal(0, 3, shape).astype(np.float32)
    frames[..., 7, 9] = np.nan
    path = _dark_file(tmp_path, frames, four_d=four_d)
    data = rng.normal(1000, 10, (5, 4, 6, 5)).astype(np.float32)
    model = make_ramp(data, nframes=nframes, groupgap=groupgap, xstart=6, ystart=5,
                      instrument="MIRI" if four_d else "NIRCAM",
                      detector="MIRIMAGE" if four_d else "NRCA1")
    refs = {"dark": path}
    results = {}
    for mode, limit in (("resident", 2**40), ("streamed", 0)):
        monkeypatch.setattr(dark_current, "RESIDENT_BYTES", limit)
        for per_block in (1, 2, 5):
            step = DarkCurrentStep()
            out, pixeldq, light = _run_blocks(step, model, refs, per_block)
            results[(mode, per_block)] = out
            assert light.dark is None and light.frames is None and light.status == "COMPLETE"
    first = results[("resident", 5)]
    assert not np.array_equal(first, data)  # the dark was applied
    for key, out in results.items():
        np.testing.assert_array_equal(out, first, err_msg=str(key))


def test_streamed_dark_state_holds_no_dark_array(tmp_path, monkeypatch):
    frames = np.ones((12, 8, 8), np.float32)
    path = _dark_file(tmp_path, frames, four_d=False)
    model = make_ramp(np.zeros((1, 6, 8, 8), np.float32), nframes=2)
    monkeypatch.setattr(dark_current, "RESIDENT_BYTES", 0)
    state = DarkCurrentStep().prepare(model, {"dark": path})
    assert state.dark is None and state.frames is not None
    # dark_output needs the whole averaged dark: it stays resident then
    state = DarkCurrentStep(dark_output=str(tmp_path / "d.fits")).prepare(model, {"dark": path})
    assert state.dark is not None and state.frames is None


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def test_spilled_arrays_compute_alike_and_release_their_pages(tmp_path, monkeypatch):
    from jwpipe.datamodels import spill

    monkeypatch.setattr(spill, "SPILL_BYTES", 0)
    monkeypatch.setattr(spill, "_PASS_BYTES", 3 * 40 * 50 * 4 + 8)  # slabs of 3 rows
    rng = np.random.default_rng(3)
    dq = spill.allocate((20, 40, 50), np.uint32, spill_dir=tmp_path)
    assert isinstance(dq, spill.SpillArray)
    values = rng.integers(0, 2**20, dq.shape).astype(np.uint32)
    dq[...] = values
    pixeldq = rng.integers(0, 2**30, (40, 50)).astype(np.uint32)
    expected = values | pixeldq
    np.bitwise_or(dq, pixeldq, out=dq)                     # chunked, in place
    np.testing.assert_array_equal(dq, expected)
    other = spill.allocate((20, 40, 50), np.float32, fill=2.5, spill_dir=tmp_path)
    assert np.all(np.asarray(other) == 2.5)
    total = np.multiply(other, 2.0)                        # not in place: a plain result
    assert type(total) is np.ndarray and np.all(total == 5.0)
    other *= np.float32(3.0)                               # in place, chunked
    np.testing.assert_array_equal(other, np.full(other.shape, 7.5, np.float32))
    np.testing.assert_array_equal(np.asarray(dq)[3], expected[3])


def test_release_pages_shrinks_resident_memory(tmp_path, monkeypatch):
    import sys

    from jwpipe.datamodels import spill

    if not sys.platform.startswith("linux"):
        pytest.skip("resident-set accounting is read from /proc")
    monkeypatch.setattr(spill, "SPILL_BYTES", 0)
    big = spill.allocate((64, 1024, 1024), np.float32, spill_dir=tmp_path)  # 256 MB
    before = _rss_mb()
    big[:32] = 1.0
    grown = _rss_mb()
    spill.release_pages(big[:16])
    half = _rss_mb()
    spill.release_pages()
    after = _rss_mb()
    assert grown - before > 100 and grown - half > 40 and after - before < 20
    assert float(big[31, 5, 5]) == 1.0 and float(big[40, 0, 0]) == 0.0  # data kept


def test_store_rows_writes_spilled_and_plain_arrays_alike(tmp_path, monkeypatch):
    """store_rows into a spilled array (a positional file write) must leave exactly what slice
    assignment leaves, be visible through the map at once, and not fault the map in."""
    import sys

    from jwpipe.datamodels import spill

    monkeypatch.setattr(spill, "SPILL_BYTES", 0)
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.uint32):
        target = spill.allocate((12, 30, 40), dtype, spill_dir=tmp_path)
        plain = np.zeros((12, 30, 40), dtype)
        assert isinstance(target, spill.SpillArray)
        for start, n in ((0, 5), (5, 5), (10, 2)):
            block = rng.integers(0, 1000, (n, 30, 40)).astype(dtype)
            spill.store_rows(target, start, block)
            spill.store_rows(plain, start, block)
        np.testing.assert_array_equal(np.asarray(target), plain)
    if sys.platform.startswith("linux"):
        big = spill.allocate((16, 1024, 1024), np.float32, spill_dir=tmp_path)  # 64 MB
        before = _rss_mb()
        spill.store_rows(big, 8, np.ones((8, 1024, 1024), np.float32))
        assert _rss_mb() - before < 48  # the 32 MB block itself, not the map's pages too
        assert float(big[15, 3, 3]) == 1.0 and float(big[7, 3, 3]) == 0.0


def test_spill_folder_is_created(tmp_path, monkeypatch):
    from jwpipe.datamodels import spill

    monkeypatch.setattr(spill, "SPILL_BYTES", 0)
    folder = tmp_path / "not" / "yet"
    array = spill.allocate((4, 8), np.float32, fill=1.0, spill_dir=folder)
    assert isinstance(array, spill.SpillArray) and folder.is_dir() and np.all(array == 1.0)


def test_cli_default_threads(monkeypatch):
    import os

    from jwpipe.cli import default_threads
    from jwpipe.errors import ConfigError

    monkeypatch.delenv("JWPIPE_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_threads() == cores
    assert default_threads(jobs=cores) == 1 and default_threads(jobs=10 * cores) == 1
    monkeypatch.setenv("JWPIPE_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("JWPIPE_THREADS", "many")
    with pytest.raises(ConfigError):
        default_threads()


def _flag_grouped_full_frame(data, groupdq, threshold, grow, nframes, bias, no_sat_check):
    """The read-pattern checks written over whole frames (the form the step had before it
    restricted them to saturated pixels); the step must give exactly this."""
    from jwpipe import dq
    from jwpipe.steps.saturation import grow_mask

    nints, ngroups = data.shape[:2]
    sat, dnu = np.uint8(dq.SATURATED), np.uint8(dq.DO_NOT_USE)
    dilution = [(g * nframes + (nframes + 1) / 2.0) / ((g + 1) * nframes) for g in range(ngroups)]
    mean0, last2 = np.float32((nframes + 1) / 2.0), np.float32(3 * nframes)
    for i in range(nints):
        gdq = groupdq[i]
        for g in range(ngroups - 2, -1, -1):
            if dilution[g] == 1.0:
                continue
            ys, xs = np.nonzero(((gdq[g + 1] & sat) != 0) & ((gdq[g] & (sat | dnu)) == 0))
            if ys.size == 0:
                continue
            limit = threshold[ys, xs].astype(np.float64)
            limit = limit * dilution[g] if no_sat_check is None else np.where(
                no_sat_check[ys, xs], limit, limit * dilution[g])
            hit = data[i, g, ys, xs] >= limit
            if hit.any():
                partial = np.zeros(gdq.shape[1:], bool)
                partial[ys[hit], xs[hit]] = True
                gdq[g][grow_mask(partial, grow)] |= dnu
        if ngroups > 2:
            ys, xs = np.nonzero(gdq[2] & sat)
            if ys.size == 0:
                continue
            g1, g2, g3 = (data[i, k, ys, xs] for k in range(3))
            thr = threshold[ys, xs]
            b = np.float32(0.0) if bias is None else np.asarray(bias, np.float32)[ys, xs]
            hit = ((g1 - b) / mean0) * last2 + b < thr
            hit &= (g2 - g1) > (thr - g1) / np.float32(nframes)
            hit &= g3 >= thr
            if hit.any():
                mask = np.zeros(gdq.shape[1:], bool)
                mask[ys[hit], xs[hit]] = True
                gdq[1][grow_mask(mask, grow)] |= sat


def test_read_pattern_checks_on_saturated_pixels_only_match_full_frames():
    from jwpipe.steps.saturation import _flag_grouped, flag_saturation

    rng = np.random.default_rng(0)
    for trial in range(30):
        nints, ng = int(rng.integers(1, 3)), int(rng.integers(1, 8))
        ny, nx = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        nframes, grow = int(rng.integers(2, 5)), int(trial % 3)
        thr = rng.uniform(500, 2000, (ny, nx)).astype(np.float32)
        rate = rng.uniform(0, 400, (ny, nx)).astype(np.float32)
        data = (rate * (np.arange(ng)[:, None, None] + 1)
                + rng.normal(0, 30, (nints, ng, ny, nx))).astype(np.float32)
        gdq = np.zeros(data.shape, np.uint8)
        gdq[rng.random(data.shape) < 0.05] |= 1
        flag_saturation(data, gdq, thr, n_pix_grow_sat=grow)  # SATURATED flags, single frames
        bias = rng.uniform(0, 100, (ny, nx)).astype(np.float32) if trial % 2 else None
        nsc = (rng.random((ny, nx)) < 0.1) if trial % 3 == 0 else None
        expected, got = gdq.copy(), gdq.copy()
        _flag_grouped_full_frame(data, expected, thr, grow, nframes, bias, nsc)
        _flag_grouped(data, got, thr, grow, nframes, bias, nsc)
        np.testing.assert_array_equal(got, expected, err_msg=f"trial {trial}")


def _frame_arrays(obj, frame: int, depth: int = 0) -> list:
    """The numpy arrays of at least ``frame`` elements reachable from a step state (its
    attributes, dict values and sequence items, a few levels deep)."""
    if isinstance(obj, np.ndarray):
        return [obj] if obj.size >= frame else []
    if depth > 3 or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return []
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        items = list(obj)
    else:
        items = list(getattr(obj, "__dict__", {}).values())
    return [a for item in items for a in _frame_arrays(item, frame, depth + 1)]


@pytest.mark.parametrize("detector,subarray", [("MIRIMAGE", "SUB256"), ("NRCA1", "SUB160")])
def test_released_step_states_hold_no_frame_arrays(sim_cache, tmp_path, monkeypatch, detector,
                                                   subarray):
    """After the last block has passed a stage-1 step, what the driver keeps of its state for
    ``finish`` holds no frame-sized reference array, so a one-block exposure (a MIRI or NIRCam
    full frame) does not carry every step's references into jump and ramp fitting (the MIRI
    RESET reference, 48 MiB for a full frame of 20 groups, once stayed resident through both).
    Persistence keeps its trap state: finish writes it as _trapsfilled."""
    import jwpipe
    from jwpipe.errors import StepNotImplementedError
    from jwpipe.simulate import simulate_exposure
    from jwpipe.steps import KNOWN_STEPS, get_step_class
    from jwpipe.steps.base import RampStep

    kept = {}

    def spy(cls):
        release = cls.release

        def wrapped(self, state):
            kept[self.name] = result = release(self, state)
            return result
        monkeypatch.setattr(cls, "release", wrapped)

    for name in KNOWN_STEPS:
        try:
            cls = get_step_class(name)
        except StepNotImplementedError:
            continue
        if issubclass(cls, RampStep):
            spy(cls)
    exp = simulate_exposure(detector=detector, subarray=subarray, ngroups=6, nints=1,
                            crds_path=sim_cache, output_dir=tmp_path / "raw", seed=3)
    jwpipe.run("detector1", str(exp.uncal_path), crds_path=str(sim_cache), save_results=False,
               output_dir=str(tmp_path))
    frame = 256 * 256 if detector == "MIRIMAGE" else 160 * 160
    expected = {"reset", "linearity", "dark_current", "jump"} if detector == "MIRIMAGE" else \
        {"superbias", "refpix", "linearity", "dark_current", "jump"}
    assert expected <= set(kept), sorted(kept)
    holding = {name: [a.shape for a in _frame_arrays(state, frame)]
               for name, state in kept.items() if name != "persistence"}
    assert not {name: shapes for name, shapes in holding.items() if shapes}
