"""``jwpipe demo``: simulate a small dithered NIRCam observation and reduce it end to end.

The main job on the embedded default: a local CRDS cache and four dithered NIRCam exposures are
simulated from a known scene (:mod:`jwpipe.simulate`), every pipeline jwpipe implements is run on
them, and the products are compared with the truth. Everything goes into one folder
(``./jwpipe_demo`` by default): the cache, the raw exposures and truth files, the products, and a
quick-look PNG of the final image.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import dq

__all__ = ["main", "run_demo", "DemoReport"]


@dataclass
class StageTiming:
    name: str
    seconds: float
    peak_mb: float
    note: str = ""


@dataclass
class DemoReport:
    """What the demo did and how well the products recover the truth."""

    folder: Path
    stages: list[StageTiming] = field(default_factory=list)
    products: list[Path] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    quicklook: Path | None = None


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


class _Stage:
    """Time a stage and record its peak memory (this process or its worker processes)."""

    def __init__(self, report: DemoReport, name: str):
        self.report, self.name = report, name

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.report.stages.append(StageTiming(self.name, time.perf_counter() - self.start,
                                              _peak_mb()))


# -- truth recovery ------------------------------------------------------------------------------

def rate_accuracy(rate, err, flags, truth) -> dict[str, float]:
    """Median relative bias, and median and robust sigma of (rate - truth) / ERR.

    Clean pixels only: no DQ flag at all and more than 50 DN of true signal, so the statistics
    measure the fit, not bad pixels or the read-noise floor.
    """
    true_rate = truth["rate"]
    clean = (flags == 0) & (true_rate * float(truth["t_int"]) > 50) & np.isfinite(rate)
    clean &= err > 0
    z = (rate[clean] - true_rate[clean]) / err[clean]
    bias = np.median((rate[clean] - true_rate[clean]) / true_rate[clean])
    sigma = 1.4826 * np.median(np.abs(z - np.median(z)))
    return {"pixels": float(clean.sum()), "bias": float(bias), "z_median": float(np.median(z)),
            "z_sigma": float(sigma)}


def cosmic_ray_recovery(flags, truth, min_sigma: float = 6.0) -> dict[str, float]:
    """Fraction of strong single-pixel cosmic-ray hits whose pixel carries JUMP_DET.

    A hit's significance is its amplitude over the noise of one group difference (read noise
    plus the pixel's Poisson noise). Hits in saturated or flagged-bad pixels are not counted, nor
    hits already present in the first group: that charge is indistinguishable from signal in
    any ramp, so no jump detector can see it.
    """
    crs = truth["crs"]
    if crs.size == 0:
        return {"hits": 0.0, "flagged": float("nan")}
    single = (crs["kind"] == 0) & (crs["group"] > 0)
    y, x = crs["y"][single], crs["x"][single]
    rn = truth["rn_cds"][y, x] / np.sqrt(max(int(truth["nframes"]), 1))
    poisson = np.clip(truth["rate"][y, x], 0, None) * float(truth["tgroup"]) / truth["gain"][y, x]
    sigma = np.sqrt(rn**2 + poisson)
    strong = crs["amp"][single] > min_sigma * sigma
    usable = (truth["sat_group"][crs["int"][single], y, x] < 0) & ~truth["donotuse"][y, x]
    usable &= ~truth["refpix"][y, x]
    pick = strong & usable
    hit = (flags[y[pick], x[pick]] & dq.JUMP_DET) != 0
    return {"hits": float(pick.sum()), "flagged": float(hit.mean()) if pick.any() else float("nan")}


def star_photometry(rate, flags, truth) -> dict[str, float]:
    """Aperture photometry and centroids of isolated, unsaturated stars against the truth.

    An aperture of radius 3 PSF sigmas holds a known fraction of a Gaussian PSF's flux (using the
    pixel-integrated width, sigma^2 + 1/12); that fraction is divided out and the local
    background comes from an annulus, so the ratio to the true rate measures the calibration,
    not the aperture.
    """
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture
    from photutils.centroids import centroid_com

    stars = truth["stars"]
    ny, nx = rate.shape
    keep = []
    for i, star in enumerate(stars):
        r = 3.0 * star["sigma"]
        if not (r + 8 < star["x"] < nx - r - 8 and r + 8 < star["y"] < ny - r - 8):
            continue
        near = np.hypot(stars["x"] - star["x"], stars["y"] - star["y"]) < 6 * star["sigma"] + 8
        if near.sum() > 1:
            continue
        yy, xx = int(round(star["y"])), int(round(star["x"]))
        box = np.s_[yy - 3:yy + 4, xx - 3:xx + 4]
        if (flags[box] & (dq.SATURATED | dq.DO_NOT_USE)).any():
            continue
        if star["rate"] * float(truth["t_int"]) < 2000:  # S/N well above 40
            continue
        keep.append(i)
    if not keep:
        return {"stars": 0.0}
    sel = stars[keep]
    positions = np.column_stack([sel["x"], sel["y"]])
    image = np.where(np.isfinite(rate), rate, 0.0)
    ratios, offsets = [], []
    for pos, star in zip(positions, sel, strict=True):
        r = 3.0 * star["sigma"]
        aperture = CircularAperture(pos, r)
        annulus = CircularAnnulus(pos, r + 3, r + 8)
        sky = ApertureStats(image, annulus).median
        flux = ApertureStats(image, aperture).sum - sky * aperture.area
        width2 = star["sigma"] ** 2 + 1.0 / 12.0
        ratios.append(flux / (star["rate"] * (1 - np.exp(-r**2 / (2 * width2)))))
        yy, xx = int(round(pos[1])), int(round(pos[0]))
        half = max(3, int(np.ceil(2 * star["sigma"])))
        cut = image[yy - half:yy + half + 1, xx - half:xx + half + 1] - sky
        cx, cy = centroid_com(np.clip(cut, 0, None))
        offsets.append(np.hypot(cx + xx - half - pos[0], cy + yy - half - pos[1]))
    ratios = np.asarray(ratios)
    return {"stars": float(len(ratios)), "flux_ratio": float(np.median(ratios)),
            "flux_scatter": float(1.4826 * np.median(np.abs(ratios - np.median(ratios)))),
            "centroid_rms_px": float(np.sqrt(np.mean(np.square(offsets))))}


# -- quick look ------------------------------------------------------------------------------------

def quicklook(image, path: Path, title: str) -> Path:
    """Write an asinh-stretched PNG of ``image``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.where(np.isfinite(image), image, np.nan)
    # Sky-relative asinh stretch: linear within a few sky-noise sigmas, logarithmic for sources.
    sky = np.nanmedian(data)
    noise = 1.4826 * np.nanmedian(np.abs(data - sky)) or 1.0
    scaled = np.arcsinh((data - sky) / (3.0 * noise))
    vmax = np.nanpercentile(scaled, 99.95)
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=110)
    shown = ax.imshow(scaled, origin="lower", cmap="magma", interpolation="antialiased",
                      vmin=-1.0, vmax=vmax)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="asinh((rate - sky) / 3 sigma_sky)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


# -- the demo --------------------------------------------------------------------------------------

def run_demo(folder="jwpipe_demo", *, dithers: int = 4, subarray: str = "FULL",
             ngroups: int = 6, seed: int = 2026, jobs: int = 2, log=print) -> DemoReport:
    """Simulate, reduce and check a dithered NIRCam imaging observation; see the module doc."""
    import jwpipe
    from jwpipe import simulate
    from jwpipe.datamodels import open as dm_open
    from jwpipe.driver import build_pipeline, require_implemented
    from jwpipe.errors import StepNotImplementedError

    folder = Path(folder)
    report = DemoReport(folder)
    cache, raw, products = folder / "crds_cache", folder / "raw", folder / "products"

    with _Stage(report, "simulate: reference files"):
        simulate.make_crds_cache(cache, detectors=["NRCA1"], subarrays=[subarray], seed=seed)
    with _Stage(report, f"simulate: {dithers} dithered exposures"):
        obs = simulate.simulate_imaging_observation(
            crds_path=cache, output_dir=raw, dithers=dithers, subarray=subarray,
            ngroups=ngroups, seed=seed)
    uncals = [e.uncal_path for e in obs.exposures]
    log(f"simulated {len(uncals)} NIRCam {subarray} exposures ({ngroups} groups) in {raw}")

    with _Stage(report, "calwebb_detector1"):
        results = jwpipe.run("detector1", *map(str, uncals), crds_path=str(cache),
                             save_results=True, output_dir=str(products), jobs=jobs)
    results = results if isinstance(results, list) else [results]
    for item, result in zip(uncals, results, strict=True):
        if isinstance(result, BaseException):
            raise result
        report.products.append(products / Path(item).name.replace("_uncal", "_rate"))

    for name in ("image2", "image3"):
        try:
            require_implemented(build_pipeline(name, crds_path=str(cache)))
        except StepNotImplementedError as exc:
            report.skipped.append(f"calwebb_{name}: {exc}".split(" cannot run yet: ")[0]
                                  + " not run: " + str(exc).split("cannot run yet: ")[-1])

    # Truth recovery, exposure by exposure, then pooled.
    pooled: dict[str, list[float]] = {}
    final = None
    for exposure, rate_path in zip(obs.exposures, report.products, strict=True):
        truth = np.load(exposure.truth_path)
        with dm_open(rate_path) as rate:
            data, err, flags = rate.data, rate.err, rate.dq
            for key, value in {**rate_accuracy(data, err, flags, truth),
                               **cosmic_ray_recovery(flags, truth),
                               **star_photometry(data, flags, truth)}.items():
                pooled.setdefault(key, []).append(value)
            if final is None:
                final = (np.array(data), rate_path.name)
    for key, values in pooled.items():
        values = np.asarray(values, float)
        report.figures[key] = float(np.nansum(values) if key in ("pixels", "hits", "stars")
                                    else np.nanmedian(values))
    if final is not None:
        report.quicklook = quicklook(final[0], folder / "quicklook.png",
                                     f"jwpipe demo: {final[1]}")
    return report


def format_report(report: DemoReport) -> str:
    f = report.figures
    lines = ["", "jwpipe demo: dithered NIRCam imaging, simulated and reduced end to end", ""]
    lines.append(f"{'stage':<36}{'time [s]':>10}{'peak memory [MB]':>18}")
    for stage in report.stages:
        lines.append(f"{stage.name:<36}{stage.seconds:>10.2f}{stage.peak_mb:>18.0f}")
    lines.append("")
    lines.append("products:")
    lines += [f"  {p}" for p in report.products]
    if report.quicklook:
        lines.append(f"  {report.quicklook}  (quick look)")
    for note in report.skipped:
        lines.append(f"  {note}")
    lines.append("")
    lines.append("truth recovery:")
    if "z_sigma" in f:
        lines.append(f"  count rate on {f['pixels']:.0f} clean pixels: median bias "
                     f"{f['bias']:+.2e}, (rate-truth)/ERR median {f['z_median']:+.3f}, "
                     f"robust sigma {f['z_sigma']:.3f} (ideal 1)")
    if f.get("hits"):
        lines.append(f"  cosmic rays above 6 sigma (after the first group): {f['flagged']:.1%} "
                     f"of {f['hits']:.0f} flagged JUMP_DET")
    if f.get("stars"):
        lines.append(f"  photometry of {f['stars']:.0f} isolated stars: flux / truth "
                     f"{f['flux_ratio']:.4f} (scatter {f['flux_scatter']:.4f})")
        lines.append(f"  astrometry: centroid rms offset {f['centroid_rms_px']:.3f} pixel")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="jwpipe demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="jwpipe_demo", help="folder for everything")
    parser.add_argument("--dithers", type=int, default=4)
    # Full frame: four outputs and side reference columns, so the reference-pixel correction
    # removes the 1/f noise row by row (a one-output subarray cannot; see the README).
    parser.add_argument("--subarray", default="FULL")
    parser.add_argument("--ngroups", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=2, help="exposures reduced in parallel")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    from .logs import configure

    configure("WARNING")
    report = run_demo(args.output_dir, dithers=args.dithers, subarray=args.subarray,
                      ngroups=args.ngroups, seed=args.seed, jobs=args.jobs,
                      log=lambda msg: print(msg, file=sys.stderr))
    print(format_report(report))
    return 0
