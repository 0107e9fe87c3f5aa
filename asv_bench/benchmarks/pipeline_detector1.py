"""calwebb_detector1, file in to ``_rate`` out: in-process and as a whole process.

Reference figures (BASELINES.md: jwst 3.0 on the same 2-core machine kind, code-default steps):

=====================================================  ==========  =============  ======
workload                                               pipeline    whole process  peak
=====================================================  ==========  =============  ======
NIRCam NRCA1 FULL 2048x2048, BRIGHT2, 10 groups x 1     16.9 s      25.0 s         2.75 GB
NIRCam SUB160, RAPID, 10 groups x 3 ints                3.6 s       ~5.5 s         0.39 GB
MIRI imager FULL 1032x1024, FASTR1, 20 groups x 1       7.3 s       --             1.08 GB
NIRISS SOSS SUBSTRIP256 (256x2048), 5 groups x 50       33.0 s      --             6.6 GB
=====================================================  ==========  =============  ======

Issue targets: the full-frame whole process >= 15x faster than 25 s (<= 1.7 s; aim 1 s on 2
cores) in at most 3x the float32 ramp (504 MB); SOSS >= 15x faster in a quarter of the memory;
a 256x2048, 5-group time series of 10,000 integrations in under 2 GB, memory flat in NINTS.

jwpipe, 2026-11-21, this script from a wheel install on a quiet 2-core machine (2 threads):

=====================================================  ==========  =============  ======
workload                                               pipeline    whole process  peak
=====================================================  ==========  =============  ======
NIRCam NRCA1 FULL 2048x2048, BRIGHT2, 10 groups x 1     --          1.30 s (19x)   398 MB
NIRCam SUB160, RAPID, 10 groups x 3 ints                0.12 s      0.52 s         80 MB
MIRI imager FULL 1032x1024, FASTR1, 20 groups x 1       0.56-0.58 s 1.14 s         298 MB
NIRISS SOSS SUBSTRIP256 (256x2048), 5 groups x 50       1.7-1.9 s*  2.5 s*         290 MB*
256x2048, 5 groups, 10 / 1000 integrations (streamed)   --          1.1 / 52-61 s* 265 / 270 MB
the same, flat mode on compressed btrfs, 10 / 1000 (+)  --          1.4 / 97 s     318 / 264 MB
the same, flat mode on compressed btrfs, 10,000 (+)     --          808 s          264 MB
=====================================================  ==========  =============  ======

(*) editable install: min 1.61 s, median 1.73-1.94 s over runs of 5-7 (17-19x), after the
jump and ramp-fit kernel changes of session 6 (dynamic row scheduling, column offsets without
copies, 5-group medians in registers); before them median 2.16-2.24 s. Earlier, before the
``_rateints`` was written straight into its product file (:mod:`jwpipe.datamodels.staging`),
2.43-3.2 s median and 3.7 s for the whole process. (+) measured before that change (with spill
files).

Timings on this machine move by 10-30% from run to run with the disk's write-back (a SOSS run
writes 535 MB of products): compare medians, or minima of several runs.

Time series (editable install, machine shared with another benchmark run): the peak is the
same at 1000 and 10,000 integrations (264 MB; resident memory, sampled every 10 s, stayed
under 270 MB through all 10,000); 10 integrations peak higher because their ``_rateints`` arrays
(5 x 21 MB) stay under the spill threshold, in memory (248 MB with ``JWPIPE_SPILL_MB=1``). The
10,000-integration run handles ~260 GB of files (52 GB raw, 105 GB of spill files, 105 GB of
``_rateints``), more than this machine's free disk, so it ran with ``asv_bench/tso10k_btrfs.sh``:
``--tso N --flat`` on a loop-mounted btrfs image with ``compress-force=zstd:1`` (9 GB actually
written), i.e. on noise-free, spatially uniform ramps and references. Its peak memory stands for
real data (the same blocks, kernels and arrays; noisy and flat 1000-integration runs peak
alike; only what scales with flagged pixels -- jumps, saturation, bad pixels -- is absent); its
wall time does not (writes go through the kernel's compression on a loop device).

Inputs are made once under ``$JWPIPE_BENCH_DIR`` (default ``<tmp>/jwpipe_bench``): one synthetic
CRDS cache (:func:`jwpipe.simulate.make_crds_cache`, only the detectors/subarrays used here) and
one simulated exposure per workload. The time-series memory case writes its raw file with a cheap
generator instead (bias + linear ramp + Gaussian noise, streamed into the FITS file block by
block), since simulating thousands of integrations in full would dominate the run.

Running
-------
With asv, in the current environment (jwpipe installed, editable or not)::

    cd asv_bench
    asv machine --yes                                   # once per machine
    asv run --quick --python=same --bench pipeline_detector1

``--python=same`` already selects asv's ``existing`` environment: adding ``-E existing`` makes
asv run every benchmark twice (two identical environments). asv drops ``PYTHONPATH`` from the
benchmark processes; set ``ASV_PYTHONPATH`` instead if jwpipe must come from a path.

Without asv, a quick table (each benchmark in a fresh process, as asv does)::

    python asv_bench/benchmarks/pipeline_detector1.py            # everything
    python asv_bench/benchmarks/pipeline_detector1.py -k nircam_full --repeat 5
    python asv_bench/benchmarks/pipeline_detector1.py --tso 10000  # one size of the TSO check
    python asv_bench/benchmarks/pipeline_detector1.py --tso 1000 --flat --dir /some/folder
    asv_bench/tso10k_btrfs.sh 10000     # as root: --tso 10000 --flat on a compressed btrfs image

Whole-process figures include interpreter start-up and imports. With an *editable* install,
meson-python runs ``ninja`` in the build folder at every start (and rebuilds whatever is out of
date): measure from a wheel install (``pip install .``) or a quiet, up-to-date build folder.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    from ._common import CACHE, run_as_script, run_process
except ImportError:  # run as a script
    from _common import CACHE, run_as_script, run_process

#: name -> simulate_exposure settings.
CASES = {
    "nircam_full": dict(detector="NRCA1", subarray="FULL", readpatt="BRIGHT2", ngroups=10,
                        nints=1),
    "nircam_sub160": dict(detector="NRCA1", subarray="SUB160", readpatt="RAPID", ngroups=10,
                          nints=3),
    "miri_full": dict(detector="MIRIMAGE", subarray="FULL", readpatt="FASTR1", ngroups=20,
                      nints=1),
    "niriss_soss": dict(detector="NIS", subarray="SUBSTRIP256", readpatt="NISRAPID",
                        exp_type="NIS_SOSS", filter="GR700XD", ngroups=5, nints=50),
}

#: (detector, subarrays, filters) written into the one benchmark CRDS cache.
_CACHE_CONTENT = (("NRCA1", ["FULL", "SUB160"], ["F200W"]),
                  ("MIRIMAGE", ["FULL"], ["F770W"]),
                  ("NIS", ["SUBSTRIP256"], ["GR700XD"]))
#: Frames per dark: enough for BRIGHT2 x 10 groups and FASTR1 x 20 groups.
_DARK_FRAMES = 20


# -- inputs, made once ----------------------------------------------------------------------------

def _done(folder: Path) -> bool:
    return (folder / ".complete").exists()


def _mark(folder: Path) -> None:
    (folder / ".complete").write_text("ok\n")


def crds_cache() -> Path:
    """The benchmark CRDS cache (about 1.5 GB; a few minutes the first time)."""
    from jwpipe.simulate import make_crds_cache

    root = CACHE / "detector1_crds"
    if not _done(root):
        for detector, subarrays, filters in _CACHE_CONTENT:
            make_crds_cache(root, detectors=[detector], subarrays=subarrays, filters=filters,
                            dark_frames=_DARK_FRAMES)
        _mark(root)
    return root


def exposure(case: str) -> Path:
    """The simulated ``_uncal`` file of a workload in :data:`CASES` (made once)."""
    from jwpipe.simulate import simulate_exposure

    folder = CACHE / f"detector1_{case}"
    if not _done(folder):
        shutil.rmtree(folder, ignore_errors=True)
        exp = simulate_exposure(crds_path=crds_cache(), output_dir=folder, seed=1, **CASES[case])
        (folder / "uncal.txt").write_text(str(exp.uncal_path))
        _mark(folder)
    return Path((folder / "uncal.txt").read_text().strip())


class _GeneratedRamps:
    """Raw TSO ramps made on the fly, integration by integration (uint16, deterministic).

    Bias + rate x time + Gaussian read noise (drawn from a fixed pool with a random offset per
    frame, so a block costs little more than writing it). Plugged into a Level1bModel as a lazy
    array, the FITS writer pulls it chunk by chunk: the file is written without ever holding more
    than one chunk.

    Parameters
    ----------
    nints, ngroups, ny, nx : int
        Shape of the exposure.
    group_time : float
        Seconds per group.
    seed : int, optional
        Seed of the bias, rate and noise.
    flat : bool, optional
        Noise-free, spatially uniform ramps instead: one bias and one rate for every science
        pixel, no signal in the reference pixels (``refpix``), the same frames in every
        integration. Such files (and the products made from them with :func:`flat_crds_cache`)
        compress by ~30x, so very long exposures fit on a compressed file system.
    refpix : ndarray of bool, shape (ny, nx), optional
        Reference pixels (``flat`` only; default: none).
    """

    def __init__(self, nints, ngroups, ny, nx, group_time, seed=0, flat=False, refpix=None):
        self.shape = (nints, ngroups, ny, nx)
        self.group_time = float(group_time)
        self.seed = seed
        self.flat = None
        if flat:
            rate = np.full((ny, nx), 10.0, np.float32)  # DN/s
            if refpix is not None:
                rate[refpix] = 0.0
            times = self.group_time * np.arange(1, ngroups + 1, dtype=np.float32)
            self.flat = np.rint(13000.0 + rate * times[:, None, None]).astype(np.uint16)
            return
        rng = np.random.default_rng(seed)
        self.bias = rng.normal(13000.0, 40.0, (ny, nx)).astype(np.float32)
        self.rate = rng.gamma(2.0, 5.0, (ny, nx)).astype(np.float32)  # DN/s
        self.rate[int(0.3 * ny):int(0.4 * ny)] *= 20.0  # a bright spectral band
        self.pool = rng.normal(0.0, 8.0, ny * nx + 65536).astype(np.float32)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Integrations ``start:stop`` as a uint16 array (nints, ngroups, ny, nx)."""
        nints, ngroups, ny, nx = self.shape
        stop = min(stop, nints)
        out = np.empty((stop - start, ngroups, ny, nx), np.uint16)
        if self.flat is not None:
            out[...] = self.flat
            return out
        for i in range(start, stop):
            rng = np.random.default_rng((self.seed, i))
            offsets = rng.integers(0, 65536, ngroups)
            for g in range(ngroups):
                frame = self.bias + self.rate * np.float32(self.group_time * (g + 1))
                frame += self.pool[offsets[g]:offsets[g] + ny * nx].reshape(ny, nx)
                np.clip(frame, 0, 65535, out=frame)
                out[i - start, g] = frame
        return out


def _generated_lazy(ramps: _GeneratedRamps):
    """A LazyArray subclass instance whose reads come from ``ramps`` (for the FITS writer)."""
    from jwpipe.datamodels.fits_io import LazyArray

    class GeneratedLazy(LazyArray):
        def read(self, key=slice(None), dtype=None):
            if not isinstance(key, slice) or key.step not in (None, 1):
                raise TypeError("generated ramps are read by slices of integrations")
            start, stop, _ = key.indices(ramps.shape[0])
            out = ramps.frames(start, stop)
            return out if dtype is None else out.astype(dtype, copy=False)

    lazy = GeneratedLazy("<generated>", 0, ramps.shape, np.dtype(">i2"), 32768, 1)
    return lazy


def _nir_reference_pixels(model) -> np.ndarray:
    """The reference-pixel mask of a near-IR subarray: the 4-pixel border of the 2048x2048
    detector, cut to the subarray (as the simulated MASK reference flags it)."""
    sub = model.meta.subarray
    ny, nx = model.shape[2:]
    y = (sub.ystart or 1) - 1 + np.arange(ny)
    x = (sub.xstart or 1) - 1 + np.arange(nx)
    edge_y = (y < 4) | (y >= 2044)
    edge_x = (x < 4) | (x >= 2044)
    return edge_y[:, None] | edge_x[None, :]


def tso_uncal(nints: int, ngroups: int = 5, flat: bool = False, folder=None) -> Path:
    """A NIRISS SOSS SUBSTRIP256 raw exposure of ``nints`` integrations from the cheap generator.

    Metadata come from a one-integration simulated exposure (so the cache's references select as
    for a real one); the ramps are :class:`_GeneratedRamps`, written block by block.

    Parameters
    ----------
    nints, ngroups : int
        Integrations and groups per integration.
    flat : bool, optional
        Noise-free, spatially uniform ramps (see :class:`_GeneratedRamps`), to be run with
        :func:`flat_crds_cache`.
    folder : path, optional
        Parent folder of the exposure's own folder (default: the benchmark cache).
    """
    from jwpipe.datamodels import Level1bModel
    from jwpipe.simulate import simulate_exposure

    base = Path(folder) if folder is not None else CACHE
    folder = base / f"tso_soss{'_flat' if flat else ''}_{nints}x{ngroups}"
    path = folder / "jw_tso_soss_uncal.fits"
    if _done(folder):
        return path
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    need = nints * ngroups * 256 * 2048 * 2
    free = shutil.disk_usage(folder).free
    if free < need * 4:
        raise RuntimeError(f"{folder}: {nints} integrations need about {need * 4 / 1e9:.0f} GB "
                           f"free (raw file + _rateints, with room to spare); {free / 1e9:.0f} "
                           "GB are")
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        template = simulate_exposure(crds_path=crds_cache(), output_dir=tmp, seed=3,
                                     **dict(CASES["niriss_soss"], ngroups=ngroups, nints=1))
        with Level1bModel(template.uncal_path) as small:
            model = Level1bModel()
            model.__dict__["_tree"] = small._tree
            model.__dict__["extra_fits"] = small.extra_fits
            model.meta.exposure.nints = nints
            model.meta.exposure.integration_start = None
            model.meta.exposure.integration_end = None
            ny, nx = small.shape[2:]
            refpix = _nir_reference_pixels(small) if flat else None
            ramps = _GeneratedRamps(nints, ngroups, ny, nx, small.meta.exposure.group_time,
                                    flat=flat, refpix=refpix)
            model.data = _generated_lazy(ramps)
            model.save(path)
    _mark(folder)
    return path


def _flatten_reference(src: Path, dst: Path) -> None:
    """Write ``src`` (a FITS reference) to ``dst`` with spatially uniform image arrays.

    Every floating-point image plane (the last two axes, at least 32x32) becomes the median of
    its finite values; DQ arrays keep only REFERENCE_PIXEL (so the reference-pixel step finds
    the same pixels); tables, small kernels and headers are unchanged.
    """
    from astropy.io import fits

    from jwpipe import dq

    with fits.open(src) as hdul:
        for hdu in hdul:
            if not isinstance(hdu, fits.ImageHDU) or hdu.data is None:
                continue
            data = hdu.data
            if hdu.name.endswith("DQ"):
                hdu.data = (data & np.array(dq.DQ.REFERENCE_PIXEL, data.dtype)).astype(data.dtype)
            elif data.dtype.kind == "f" and data.ndim >= 2 and min(data.shape[-2:]) >= 32:
                planes = data.reshape(-1, *data.shape[-2:])
                medians = [float(np.median(p[np.isfinite(p)])) if np.isfinite(p).any() else 0.0
                           for p in planes]
                values = np.array(medians, data.dtype).reshape(*data.shape[:-2], 1, 1)
                hdu.data = np.broadcast_to(values, data.shape).copy()
        hdul.writeto(dst)


def flat_crds_cache(folder=None) -> Path:
    """The benchmark CRDS cache with spatially uniform NIRISS references (for ``flat`` ramps).

    A copy of :func:`crds_cache` (same mappings and file names, so references select alike)
    whose NIRISS files go through :func:`_flatten_reference`; other instruments' folders are
    links to the original ones. With :func:`tso_uncal` ``flat=True`` every stage-1 product is
    made of constant arrays (bar the reference pixels and their neighbours).

    Parameters
    ----------
    folder : path, optional
        Where the cache folder goes (default: the benchmark cache; about 270 MB, which stay
        uncompressed on btrfs: astropy preallocates the files it writes).
    """
    src = crds_cache()
    root = (Path(folder) if folder is not None else CACHE) / "detector1_crds_flat"
    if _done(root):
        return root
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("config", "mappings"):
        shutil.copytree(src / sub, root / sub)
    for inst in (src / "references" / "jwst").iterdir():
        dst = root / "references" / "jwst" / inst.name
        if inst.name != "niriss":
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(inst.resolve(), target_is_directory=True)
            continue
        dst.mkdir(parents=True)
        for ref in inst.iterdir():
            if ref.suffix == ".fits":
                _flatten_reference(ref, dst / ref.name)
            else:
                shutil.copy2(ref, dst / ref.name)
    _mark(root)
    return root


# -- runners --------------------------------------------------------------------------------------

def run_in_process(uncal, out_dir, threads=None):
    import jwpipe

    return jwpipe.run("detector1", str(uncal), save_results=True, output_dir=str(out_dir),
                      crds_path=str(crds_cache()), threads=threads)


def run_whole_process(uncal, out_dir, threads=None, extra=(), crds=None) -> tuple[float, float]:
    """``python -m jwpipe detector1 <uncal>`` from a fresh temporary working folder:
    (wall seconds, the child's peak RSS in MB). ``crds``: the CRDS cache (default:
    :func:`crds_cache`)."""
    argv = [sys.executable, "-m", "jwpipe", "detector1", str(uncal), "--output-dir", str(out_dir),
            "--crds-path", str(crds or crds_cache()), "-q", *extra]
    if threads:
        argv += ["--threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="jwpipe_cwd_") as cwd:
        seconds, peak_mb, _ = run_process(argv, cwd=cwd, timeout=3600)
    return seconds, peak_mb


# -- benchmarks -----------------------------------------------------------------------------------

class Detector1:
    """In-process ``jwpipe.run("detector1", uncal, save_results=True)`` on each workload.

    The first call (imports, reference reads into the page cache) happens in ``setup``.
    """

    params = [list(CASES), [1, 2]]
    param_names = ["workload", "threads"]
    timeout = 3600
    number = 1
    repeat = (2, 5, 60.0)
    warmup_time = 0

    def setup_cache(self):
        for case in CASES:
            exposure(case)
        return str(crds_cache())

    def setup(self, cache, case, threads):
        self.uncal = exposure(case)
        self.out = Path(tempfile.mkdtemp(prefix="jwpipe_d1_"))
        run_in_process(self.uncal, self.out, threads)

    def teardown(self, cache, case, threads):
        shutil.rmtree(self.out, ignore_errors=True)

    def time_detector1(self, cache, case, threads):
        run_in_process(self.uncal, self.out, threads)

    def peakmem_detector1(self, cache, case, threads):
        run_in_process(self.uncal, self.out, threads)


class Detector1WholeProcess:
    """``python -m jwpipe detector1 <uncal>`` as a child process from a temporary working folder,
    CLI defaults (threads: every core): wall time (median of 3) and the child's peak RSS."""

    params = [list(CASES)]
    param_names = ["workload"]
    timeout = 3600

    def setup_cache(self):
        for case in CASES:
            exposure(case)
        return str(crds_cache())

    def setup(self, cache, case):
        self.uncal = exposure(case)
        self.out = Path(tempfile.mkdtemp(prefix="jwpipe_d1p_"))
        run_whole_process(self.uncal, self.out)  # warm the page cache and .pyc files

    def teardown(self, cache, case):
        shutil.rmtree(self.out, ignore_errors=True)

    def track_seconds(self, cache, case):
        return float(np.median([run_whole_process(self.uncal, self.out)[0] for _ in range(3)]))

    track_seconds.unit = "seconds"

    def track_peak_mb(self, cache, case):
        return max(run_whole_process(self.uncal, self.out)[1] for _ in range(2))

    track_peak_mb.unit = "MB"


class Detector1StreamingMemory:
    """Memory flat in NINTS: NIRISS SOSS SUBSTRIP256 (256x2048), 5 groups, cheap-generator ramps,
    whole process. The issue's bound is 10,000 integrations in under 2 GB; that size needs about
    260 GB of disk (52 GB raw, 105 GB of spill files, 105 GB ``_rateints``), so asv runs 10 and
    1000 integrations and the peak must not grow between them (``--tso 10000`` in script mode
    runs the full size; ``asv_bench/tso10k_btrfs.sh`` runs it with ``--flat`` on a compressed
    file system: 264 MB peak, as at 1000 integrations, in 808 s)."""

    params = [[10, 1000]]
    param_names = ["nints"]
    timeout = 7200

    def setup_cache(self):
        for nints in self.params[0]:
            tso_uncal(nints)
        return str(crds_cache())

    def setup(self, cache, nints):
        self.uncal = tso_uncal(nints)
        self.out = Path(tempfile.mkdtemp(prefix="jwpipe_tso_", dir=CACHE))

    def teardown(self, cache, nints):
        shutil.rmtree(self.out, ignore_errors=True)

    def track_peak_mb(self, cache, nints):
        return run_whole_process(self.uncal, self.out)[1]

    track_peak_mb.unit = "MB"

    def track_seconds(self, cache, nints):
        return run_whole_process(self.uncal, self.out)[0]

    track_seconds.unit = "seconds"


def _tso_main(argv) -> int:
    """``--tso N [--flat] [--dir PATH] [--keep] [--prepare]``: one size of the time-series check.

    The inputs are made by a child process (``--prepare``): the peak RSS Linux reports for a
    child includes its parent's own peak at the time of the ``exec`` (the replaced address
    space's high-water mark), so the measuring process must stay small.
    """
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(description="stage 1 of a long NIRISS SOSS time series")
    parser.add_argument("--tso", type=int, required=True, metavar="NINTS")
    parser.add_argument("--flat", action="store_true",
                        help="noise-free uniform ramps and uniform references (compressible)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for the raw file, the products and their spill files "
                             "(and the flat CRDS cache); default: the benchmark cache")
    parser.add_argument("--keep", action="store_true", help="leave the products in place")
    parser.add_argument("--prepare", action="store_true", help="only make the inputs")
    args = parser.parse_args(argv)
    base = args.dir if args.dir is not None else CACHE
    if args.prepare:
        tso_uncal(args.tso, flat=args.flat, folder=base)
        if args.flat:
            flat_crds_cache(base)
        return 0
    subprocess.run([sys.executable, __file__, *argv, "--prepare"], check=True)
    uncal = tso_uncal(args.tso, flat=args.flat, folder=base)  # made: only the path
    crds = flat_crds_cache(base) if args.flat else None
    out = Path(tempfile.mkdtemp(prefix="jwpipe_tso_", dir=base))
    try:
        seconds, peak = run_whole_process(uncal, out, crds=crds)
    finally:
        if args.keep:
            print(f"products in {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    print(f"NIRISS SOSS 256x2048, 5 groups x {args.tso} integrations{' (flat)' * args.flat} "
          f"(whole process): {seconds:.1f} s, peak RSS {peak:.0f} MB "
          f"({'under' if peak < 2048 else 'OVER'} 2 GB)")
    return 0

if __name__ == "__main__":
    if "--tso" in sys.argv:
        sys.exit(_tso_main(sys.argv[1:]))
    sys.exit(run_as_script(globals()))
