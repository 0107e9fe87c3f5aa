"""Shared pieces of the stage-1 science and edge-case tests on simulated exposures.

- :func:`build_cache`: the synthetic CRDS cache of these tests (NIRCam NRCA1
  SUB160/SUB320/SUB640, SUB64P with a 300-frame dark, MIRI SUB256), built once per session by
  the ``sim_cache`` fixture in conftest.py; :func:`once` shares other expensive results
  (simulated exposures and their pipeline runs) between modules.
- :func:`run_stage1`: run a pipeline on a raw exposure and read its products back as arrays.
- Truth comparisons, each returning the figures the tests assert on (and print):
  :func:`z_statistics`, :func:`cosmic_ray_detection`, :func:`spurious_jumps`,
  :func:`saturation_timing`.

Truth conventions (``jwpipe/simulate/truth.py``): ``crs`` has one row per pixel a cosmic-ray
event deposits charge in (``amp`` in DN of linear signal), first seen by read ``frame`` of group
``group``; ``sat_group``/``sat_margin_group`` give the first group whose noiseless raw value
reaches the saturation threshold (resp. the threshold lowered by 5 group read noises).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

import jwpipe
from jwpipe import dq

__all__ = ["build_cache", "run_stage1", "Products", "robust_sigma", "z_statistics",
           "cosmic_ray_detection", "step_test_limits", "spurious_jumps", "saturation_timing",
           "grow", "first_flagged",
           "describe", "once", "load_truth", "science_scene", "miri_exposure", "miri_simulated",
           "MIRI_SHAPE",
           "SIGNAL_BANDS", "UNUSABLE"]

#: Group flags that make a group unusable for a slope or a two-point difference.
UNUSABLE = dq.SATURATED | dq.DO_NOT_USE

#: Signal levels (truth rate x integration time, DN) the figures are broken down by: read-noise
#: dominated, mixed, and Poisson dominated pixels.
SIGNAL_BANDS = ((50.0, 1e3), (1e3, 5e3), (5e3, 2e4), (2e4, np.inf))

def build_cache(tmp_path_factory) -> Path:
    """Write the synthetic CRDS cache of the science tests (about 10 s and 0.45 GB); the
    session-scoped ``sim_cache`` fixture in conftest.py builds it once per test session."""
    from jwpipe.simulate import make_crds_cache

    root = tmp_path_factory.mktemp("sim_crds")
    make_crds_cache(root, detectors=["NRCA1"], subarrays=["SUB160", "SUB320", "SUB640"],
                    filters=["F200W"], seed=0)
    # 300-group ramps need a dark of at least 300 frames (the default is 10-100 frames);
    # otherwise dark_current would (rightly) refuse the reference.
    make_crds_cache(root, detectors=["NRCA1"], subarrays=["SUB64P"], filters=["F200W"],
                    seed=0, dark_frames=300)
    make_crds_cache(root, detectors=["MIRIMAGE"], subarrays=["SUB256"], filters=["F770W"],
                    seed=0)
    return root


_MEMO: dict = {}


def once(key, factory):
    """``factory()``, computed once per test process (so modules can share a simulation)."""
    if key not in _MEMO:
        _MEMO[key] = factory()
    return _MEMO[key]


def load_truth(path) -> dict:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


# -- scenes ---------------------------------------------------------------------------------------

def science_scene(nx: int, ny: int, *, photmjsr: float, background_dns: float,
                  peak_dns: float, spot_range=(1e3, 1e6), spots_per_row: int = 12):
    """A scene spanning read-noise- to Poisson-dominated signals, with saturating spots.

    - a flat sky of about ``background_dns`` DN/s (``photmjsr`` converts it to MJy/sr; the
      simulator converts back with the photom reference's value, so the truth rate, not this
      number, is what the tests compare with);
    - a wide horizontal band (Gaussian profile, sigma = ny / 7) peaking at ``peak_dns`` DN/s in
      the upper part of the array: a smooth run of signal levels up to just below saturation
      (the non-linearity test's bright unsaturated pixels);
    - two rows of compact spots (5-pixel-long segments, Gaussian rows of sigma 1.5 px), peak
      pixel rates log-spaced over ``spot_range`` DN/s: star-like cores that saturate in every
      group from the first to the last, or not at all.
    """
    from jwpipe.simulate import Scene
    from jwpipe.simulate.scene import Trace

    width = ny / 7.0
    traces = [Trace(y0=0.65 * ny, rate=peak_dns * np.sqrt(2 * np.pi) * width, sigma=width,
                    variable=False, name="band")]
    pitch = (nx - 24) // spots_per_row
    for k, r in enumerate(np.geomspace(*spot_range, 2 * spots_per_row)):
        row, col = divmod(k, spots_per_row)
        x0 = 12 + pitch * col
        traces.append(Trace(y0=0.1 * ny + 0.12 * ny * row, rate=r * np.sqrt(2 * np.pi) * 1.5,
                            sigma=1.5, x_range=(x0, x0 + 5), variable=False, name=f"spot{k}"))
    return Scene(background=background_dns * photmjsr, traces=traces)


# -- running the pipeline -------------------------------------------------------------------------

@dataclass
class Products:
    """Arrays of one run's products (``None`` for a product the run did not write)."""

    folder: Path
    rate: dict = field(default_factory=dict)       # ext name -> array, plus "header"
    rateints: dict | None = None
    ramp: dict | None = None                       # SCI, GROUPDQ, PIXELDQ, header
    other: dict = field(default_factory=dict)      # suffix -> path of any other product

    @property
    def header(self):
        return self.rate["header"]


def _read(path: Path, exts) -> dict:
    out = {}
    with fits.open(path) as hdul:
        out["header"] = hdul[0].header.copy()
        for ext in exts:
            if ext in hdul:
                out[ext] = np.array(hdul[ext].data)
    return out


def run_stage1(pipeline: str, uncal, cache, out: Path, *, ramp: bool = True, **options):
    """Run ``pipeline`` (an alias) on ``uncal`` with the cache; read back every product written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(crds_path=str(cache), save_results=True, output_dir=str(out))
    if pipeline in ("detector1", "tso1"):
        kwargs["save_calibrated_ramp"] = ramp
    kwargs.update(options)
    jwpipe.run(pipeline, str(uncal), **kwargs)
    prods = Products(out)
    image_exts = ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "INT_TIMES")
    for path in sorted(out.glob("*.fits")):
        suffix = path.stem.rsplit("_", 1)[-1]
        if suffix == "rate":
            prods.rate = _read(path, image_exts)
        elif suffix == "rateints":
            prods.rateints = _read(path, image_exts)
        elif suffix == "ramp":
            prods.ramp = _read(path, ("SCI", "GROUPDQ", "PIXELDQ"))
        else:
            prods.other[suffix] = path
    return prods


# -- statistics -----------------------------------------------------------------------------------

def robust_sigma(values) -> float:
    """1.4826 x the median absolute deviation (the standard deviation for Gaussian values)."""
    v = np.asarray(values, np.float64)
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (..., ny, nx) dilated by a (2r+1)^2 box in the last two axes."""
    if radius <= 0:
        return mask.copy()
    size = (1,) * (mask.ndim - 2) + (2 * radius + 1, 2 * radius + 1)
    return ndimage.maximum_filter(mask.astype(np.uint8), size=size, mode="constant") > 0


def z_statistics(rate, err, flags, truth_rate, t_int, *, min_signal=50.0, select=None) -> dict:
    """(rate - truth)/ERR and the relative error on clean pixels (DQ == 0, signal > min_signal).

    Returns the overall figures and the same per :data:`SIGNAL_BANDS` band (bands with fewer than
    200 pixels are left out: their median and spread are too noisy to mean anything).
    """
    truth_rate = np.asarray(truth_rate, np.float64)
    signal = truth_rate * float(t_int)
    clean = (flags == 0) & (signal > min_signal) & np.isfinite(rate) & (err > 0)
    if select is not None:
        clean &= select
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (rate - truth_rate) / err
        rel = (rate - truth_rate) / np.where(truth_rate > 0, truth_rate, np.nan)

    def figures(m):
        return {"n": int(m.sum()), "median_z": float(np.median(z[m])),
                "sigma_z": robust_sigma(z[m]), "bias": float(np.median(rel[m]))}

    out = figures(clean)
    out["bands"] = {}
    for lo, hi in SIGNAL_BANDS:
        m = clean & (signal >= lo) & (signal < hi)
        if m.sum() >= 200:
            out["bands"][(lo, hi)] = figures(m)
    return out


def _deposit_map(crs, shape, groups_back: int = 0) -> np.ndarray:
    """Boolean (nints, ngroups, ny, nx): a deposit in the pixel at that group (or up to
    ``groups_back`` groups earlier)."""
    dep = np.zeros(shape, bool)
    for back in range(groups_back + 1):
        g = crs["group"] + back
        ok = g < shape[1]
        dep[crs["int"][ok], g[ok], crs["y"][ok], crs["x"][ok]] = True
    return dep


def _sigma_diff(truth) -> np.ndarray:
    """Noise (DN) of a two-group difference from read noise and the Poisson noise of the true
    rate (plus dark current), for groups that average ``n = nframes`` frames ``tframe`` apart.

    Read noise: each read has variance rn_cds^2 / 2 (rn_cds is the CDS noise), a group mean
    rn_cds^2 / (2n), a difference of two groups rn_cds^2 / n. Poisson: for a Poisson process of
    rate r (electrons), the difference of the means of two groups of n frames starting TGROUP
    apart has variance r (TGROUP - tframe (n^2 - 1) / (3n)) (frames shared in time cancel);
    divided by gain^2 for DN. Without frame averaging this is r TGROUP.
    """
    n = int(truth["nframes"])
    rn2 = np.asarray(truth["rn_cds"], np.float64) ** 2 / n
    t_eff = float(truth["tgroup"]) - float(truth["tframe"]) * (n * n - 1) / (3.0 * n)
    poisson = (np.maximum(truth["rate"] + truth["dark_rate"], 0.0) * t_eff
               / np.asarray(truth["gain"], np.float64))
    return np.sqrt(rn2 + poisson)


def cosmic_ray_detection(truth, groupdq, pixeldq,
                         bands=((0, 4), (4, 6), (6, np.inf))) -> dict:
    """Flagged fraction of injected single-pixel cosmic-ray hits, by significance band.

    Which hits: events of kind 0 ("hit") that deposit charge in exactly one pixel, so that the
    detection is the jump detector's own (a hit that shares charge with its neighbours is also
    flagged through neighbour flagging, which would flatter the low bands). Hits are left out when
    the truth cannot say what the pipeline should see: another deposit in the same pixel and
    integration within one group (the difference holds both), or a pixel that is DO_NOT_USE or a
    reference pixel (no ramp is fitted there).

    Matching rule. A hit first seen by read ``frame`` lands at frame ``k = frame - group *
    (nframes + groupgap)`` of its group ``g`` (always a read frame: charge arriving during
    dropped frames is first seen by the next group's first read). Group ``g``, the mean of its
    frames, holds ``(nframes - k) / nframes`` of the charge and group ``g + 1`` all of it, so the
    difference ``g-1 -> g`` carries ``(nframes - k) / nframes`` of the amplitude and ``g -> g+1``
    the rest. The jump detector flags the later group of a difference that jumps, so a hit is
    detected when JUMP_DET is set at ``g`` or, for a hit split across a group boundary
    (``k > 0``), at ``g + 1``; without frame averaging (RAPID) only group ``g`` counts. Its
    significance is the largest share of the amplitude that falls in a usable difference (both
    groups neither SATURATED nor DO_NOT_USE) over the noise of that difference
    (:func:`_sigma_diff`); a hit with no usable difference (group 0 of a RAPID ramp, saturated or
    DO_NOT_USE groups) cannot be detected and is left out.
    """
    hits = _single_hits(truth, groupdq, pixeldq)
    use, significance, flagged = hits["use"], hits["significance"], hits["flagged"]
    out = {"n_hits": int(use.sum()), "bands": {}}
    for lo, hi in bands:
        m = use & (significance >= lo) & (significance < hi)
        n = int(m.sum())
        out["bands"][(lo, hi)] = {"n": n, "flagged": int(flagged[m].sum()),
                                  "fraction": float(flagged[m].mean()) if n else float("nan")}
    return out


def _single_hits(truth, groupdq, pixeldq) -> dict:
    """The hits :func:`cosmic_ray_detection` counts (``use``), with their significance, whether
    they were flagged and where they are (``int``, ``group``, ``y``, ``x``, ``amp``: arrays over
    the rows of ``truth["crs"]``)."""
    crs = truth["crs"]
    nints, ngroups, ny, nx = groupdq.shape
    nframes, gap = int(truth["nframes"]), int(truth["groupgap"])
    events, counts = np.unique(crs["event"], return_counts=True)
    single = np.isin(crs["event"], events[counts == 1]) & (crs["kind"] == 0)
    n_dep = np.zeros(groupdq.shape, np.int16)
    np.add.at(n_dep, (crs["int"], crs["group"], crs["y"], crs["x"]), 1)
    # deposits in the same pixel within one group either side
    crowd = n_dep.copy()
    crowd[:, 1:] += n_dep[:, :-1]
    crowd[:, :-1] += n_dep[:, 1:]
    i, g, y, x, amp = (crs[k] for k in ("int", "group", "y", "x", "amp"))
    k = crs["frame"] - g * (nframes + gap)
    bad_pixel = (pixeldq[y, x] & (dq.DO_NOT_USE | dq.REFERENCE_PIXEL)) != 0
    unusable = (groupdq & UNUSABLE) != 0
    ok1 = (g >= 1) & ~unusable[i, g, y, x] & ~unusable[i, np.maximum(g - 1, 0), y, x]
    g2 = np.minimum(g + 1, ngroups - 1)
    ok2 = (k > 0) & (g + 1 < ngroups) & ~unusable[i, g, y, x] & ~unusable[i, g2, y, x]
    share1 = np.where(ok1, (nframes - k) / nframes, 0.0)
    share2 = np.where(ok2, k / nframes, 0.0)
    sigma = _sigma_diff(truth)[y, x]
    significance = amp * np.maximum(share1, share2) / sigma
    jump = (groupdq & dq.JUMP_DET) != 0
    flagged = (ok1 & jump[i, g, y, x]) | (ok2 & jump[i, g2, y, x])
    use = single & ~bad_pixel & (ok1 | ok2) & (crowd[i, g, y, x] == 1)
    return {"use": use, "significance": significance, "flagged": flagged, "int": i,
            "group": g, "y": y, "x": x, "amp": amp}


def step_test_limits(truth, groupdq, pixeldq, *, threshold: float,
                     read_variance_scale: float = 1.0, band=(4.0, 6.0)) -> dict:
    """What a per-pixel step test can find of the hits of one significance band.

    For each hit :func:`cosmic_ray_detection` counts in ``band`` (exposures without frame
    averaging only), the jump step's model of its pixel-integration with the *true* noise: the
    usable first differences, read variance ``s`` per group (``rn_cds**2 / 2`` times
    ``read_variance_scale``, what the IPC deconvolution makes of it) and Poisson variance of the
    true rate, so covariance ``S`` with ``lam + 2s`` on the diagonal and ``-s`` between adjacent
    usable differences. A step of amplitude ``a`` in difference ``k`` has generalised-least-
    squares significance ``a sqrt(Q_kk)``: ``Q = S^-1`` with the rate known exactly, ``Q = P``
    (``S^-1`` less its projection on the rate, the jump step's statistic) with the rate fitted
    from the integration's other differences. With Gaussian noise a one-sided test at
    ``threshold`` finds a hit with probability ``Phi(a sqrt(Q_kk) - threshold)``.

    ``pooled_rate`` is the same with the rate fitted from the usable differences of every
    integration of the pixel (the jump step's ``pool_integrations``): the rate's information
    ``1' S_i^-1 1`` is summed over the integrations, so ``Q_kk = S^-1_kk - (S^-1 1)_k^2 /
    sum_i 1' S_i^-1 1``; between ``own_rate`` and ``known_rate``.

    Returns
    -------
    dict
        ``n`` hits, ``flagged`` (the fraction the pipeline flagged), ``own_rate``,
        ``pooled_rate`` and ``known_rate`` (the mean detection probabilities above) and
        ``own_rate_sd``, ``pooled_rate_sd``, ``known_rate_sd``: the standard deviation of the
        flagged fraction each predicts (``sqrt(sum p (1 - p)) / n``; the hits are independent
        trials).
    """
    from scipy.stats import norm

    if int(truth["nframes"]) != 1:
        raise ValueError("step_test_limits models groups of one frame only")
    hits = _single_hits(truth, groupdq, pixeldq)
    sig = hits["significance"]
    sel = np.nonzero(hits["use"] & (sig >= band[0]) & (sig < band[1]))[0]
    unusable = (groupdq & UNUSABLE) != 0
    s_read = np.asarray(truth["rn_cds"], np.float64) ** 2 / 2.0 * read_variance_scale
    lam = (np.maximum(truth["rate"] + truth["dark_rate"], 0.0) * float(truth["tgroup"])
           / np.asarray(truth["gain"], np.float64))
    def inverse_covariance(i, y, x):
        """S^-1 of the usable differences of one pixel-integration, and their indices."""
        usable_group = ~unusable[i, :, y, x]
        diffs = np.nonzero(usable_group[1:] & usable_group[:-1])[0]
        s = s_read[y, x]
        cov = np.diag(np.full(diffs.size, lam[y, x] + 2.0 * s))
        adjacent = np.nonzero(np.diff(diffs) == 1)[0]
        cov[adjacent, adjacent + 1] = cov[adjacent + 1, adjacent] = -s
        return np.linalg.inv(cov), diffs

    found = {"own": [], "pooled": [], "known": []}
    for h in sel:
        i, g, y, x = (int(hits[k][h]) for k in ("int", "group", "y", "x"))
        inv, diffs = inverse_covariance(i, y, x)
        j = int(np.nonzero(diffs == g - 1)[0][0])
        v = inv.sum(axis=1)
        rate_info = {"own": v.sum(), "known": np.inf,
                     "pooled": v.sum() + sum(inverse_covariance(k, y, x)[0].sum()
                                             for k in range(groupdq.shape[0]) if k != i)}
        amp = float(hits["amp"][h])
        for name, info in rate_info.items():
            q_jj = inv[j, j] - v[j] ** 2 / info
            found[name].append(norm.cdf(amp * np.sqrt(q_jj) - threshold))
    out = {"n": int(sel.size), "flagged": float(hits["flagged"][sel].mean())}
    for name, p in found.items():
        p = np.array(p)
        out[f"{name}_rate"] = float(p.mean())
        out[f"{name}_rate_sd"] = float(np.sqrt(np.sum(p * (1 - p))) / p.size)
    return out


def spurious_jumps(truth, groupdq, pixeldq, *, sat_radius: int = 5) -> dict:
    """JUMP_DET flags where no cosmic ray was injected, per clean pixel-group.

    A clean pixel-group (integration i, group g >= 1, pixel p) is one where a jump could be
    flagged and none should be:

    - the difference g-1 -> g is usable (neither group SATURATED nor DO_NOT_USE) and the pixel is
      neither DO_NOT_USE nor a reference pixel;
    - no deposit of any cosmic-ray event within +-1 pixel of p in integration i at group g (with
      frame averaging also at g-1, whose split hits reach the difference g-1 -> g);
    - p is not part of a JUMP_DET region (8-connected, same integration and group) that contains
      an injected deposit: neighbour flagging and the large-event (snowball) expansion of real
      hits flag such regions on purpose;
    - p is more than ``sat_radius`` pixels from any pixel that saturates (truth
      ``sat_margin_group`` >= 0) in any integration: the saturation step grows saturation by one
      pixel, the large-event step extends newly saturated cores by ``sat_expand`` = 2 pixels and
      flags the previous integration's cores JUMP_DET at the start of the next one
      (``mask_snowball_core_next_int``), all on purpose and not cosmic-ray detections.

    Returns the overall rate and the rate per :data:`SIGNAL_BANDS` band.
    """
    crs = truth["crs"]
    shape = groupdq.shape
    back = 1 if int(truth["nframes"]) > 1 else 0
    dep = _deposit_map(crs, shape, back)
    near = grow(dep, 1)
    jump = (groupdq & dq.JUMP_DET) != 0
    attributed = np.zeros(shape, bool)
    eight = np.ones((3, 3), bool)
    for i in range(shape[0]):
        for g in range(1, shape[1]):
            if not jump[i, g].any():
                continue
            labels, n = ndimage.label(jump[i, g], structure=eight)
            hit = np.unique(labels[dep[i, g] & jump[i, g]])
            hit = hit[hit > 0]
            if hit.size:
                attributed[i, g] = np.isin(labels, hit)
    unusable = (groupdq & UNUSABLE) != 0
    clean = np.ones(shape, bool)
    clean[:, 0] = False
    clean &= ~unusable & ~near & ~attributed
    clean[:, 1:] &= ~unusable[:, :-1]
    clean &= ((pixeldq & (dq.DO_NOT_USE | dq.REFERENCE_PIXEL)) == 0)[None, None]
    saturating = grow((np.asarray(truth["sat_margin_group"]) >= 0).any(axis=0), sat_radius)
    clean &= ~saturating[None, None]
    spurious = jump & clean
    out = {"n_clean": int(clean.sum()), "n_spurious": int(spurious.sum())}
    out["rate"] = out["n_spurious"] / max(out["n_clean"], 1)
    signal = np.asarray(truth["rate"], np.float64) * float(truth["t_int"])
    out["bands"] = {}
    for lo, hi in ((0.0, 1e3),) + SIGNAL_BANDS[1:]:
        m = ((signal >= lo) & (signal < hi))[None, None]
        n = int((clean & m).sum())
        if n:
            out["bands"][(lo, hi)] = {"n_clean": n, "n_spurious": int((spurious & m).sum()),
                                      "rate": float((spurious & m).sum() / n)}
    return out


def first_flagged(groupdq, flag) -> np.ndarray:
    """First group (nints, ny, nx) carrying ``flag``; NGROUPS where none does."""
    has = (groupdq & flag) != 0
    ngroups = groupdq.shape[1]
    return np.where(has.any(axis=1), has.argmax(axis=1), ngroups)


def saturation_timing(truth, groupdq, pixeldq) -> dict:
    """Compare the first SATURATED group of every pixel-integration with the truth.

    The pipeline flags SATURATED from the first group at or above the threshold; with read noise
    that is any group from ``sat_margin_group`` to ``sat_group``. It also flags, on purpose,
    pixels that did not reach the threshold themselves: the saturation step grows saturation
    into the 3x3 box (``n_pix_grow_sat`` = 1) and the jump step extends large newly saturated
    cores (an ellipse fitted to the core, both axes lengthened by 2 x ``sat_expand``). Both grow
    out of truly saturated pixels, so the rule checked is:

    - ``missed``: truth-saturated (``sat_group`` >= 0) but not flagged by ``sat_group``;
    - ``early``: first flagged at a group f before the pixel's own ``sat_margin_group`` (or
      flagged although it never comes near saturation), while the SATURATED region it belongs
      to at group f (8-connected) holds no pixel that is within its margin by group f; i.e. a
      flag that neither the pixel nor any growth from a saturated pixel explains;
    - ``not_kept``: a SATURATED group followed by an unflagged one.

    Also reported: ``exact_3x3``, the fraction of truth-saturated pixel-integrations whose first
    flag lies in [earliest margin group in the 3x3 box, sat_group] (the saturation step's own
    rule, before any large-event extension), and ``max_growth``, the largest distance (pixels)
    from a flag explained only by growth to the nearest pixel within its margin. Reference and
    DO_NOT_USE pixels and pixels whose mask says NO_SAT_CHECK are left out.
    """
    nints, ngroups = groupdq.shape[:2]
    sat_g = np.asarray(truth["sat_group"]).astype(np.int32)
    margin = np.asarray(truth["sat_margin_group"]).astype(np.int32)
    big = ngroups + 1
    m_any = np.where(margin >= 0, margin, big)
    lo1 = ndimage.minimum_filter(m_any, size=(1, 3, 3), mode="constant", cval=big)
    first = first_flagged(groupdq, dq.SATURATED)
    skip = (pixeldq & (dq.DO_NOT_USE | dq.REFERENCE_PIXEL | dq.NO_SAT_CHECK)) != 0
    use = ~skip[None]
    has = (groupdq & dq.SATURATED) != 0
    truth_sat = use & (sat_g >= 0)
    missed = truth_sat & (first > sat_g)
    grown = use & (first < np.minimum(m_any, ngroups))  # flagged before its own margin
    early = np.zeros_like(grown)
    max_growth = 0.0
    eight = np.ones((3, 3), bool)
    for i in range(nints):
        for g in np.unique(first[i][grown[i]]):
            labels, _ = ndimage.label(has[i, g], structure=eight)
            seeds = has[i, g] & (m_any[i] <= g)
            ok = np.isin(labels, np.unique(labels[seeds]))
            sel = grown[i] & (first[i] == g)
            early[i] |= sel & ~ok
            if seeds.any() and (sel & ok).any():
                dist = ndimage.distance_transform_edt(~seeds)
                max_growth = max(max_growth, float(dist[sel & ok].max()))
    not_kept = use & (has[:, :-1] & ~has[:, 1:]).any(axis=1)
    exact = truth_sat & (first <= sat_g) & (first >= lo1)
    n = int(truth_sat.sum())
    return {"n_saturated": n, "missed": int(missed.sum()), "early": int(early.sum()),
            "not_kept": int(not_kept.sum()),
            "exact_3x3": float(exact.sum() / n) if n else float("nan"),
            "max_growth": max_growth}


def describe(figures) -> str:
    """A compact one-line rendering of a figures dict (for assertion messages and -s output)."""

    def plain(o):
        if isinstance(o, dict):
            return {(k if isinstance(k, str) else "-".join(f"{v:g}" for v in k)
                     if isinstance(k, tuple) else str(k)): plain(v) for k, v in o.items()}
        if isinstance(o, float):
            return float(f"{o:.4g}")
        return o

    return json.dumps(plain(figures))


# -- shared MIRI exposures ------------------------------------------------------------------------

#: (nints, ngroups, ny, nx) of the shared MIRI exposures.
MIRI_SHAPE = (3, 15, 256, 256)


def miri_exposure(cache, tmp_path_factory, kind: str):
    """(truth, products) of a MIRIMAGE SUB256 exposure run through detector1, once per process.

    ``kind`` "default": every simulator effect. "linear": no non-linearity (the pipeline then
    runs with ``linearity=N/A``) and no amplifier drifts. See test_science_miri.py.
    """
    from jwpipe.simulate import simulate_exposure

    def make():
        nints, ngroups, ny, nx = MIRI_SHAPE
        out = tmp_path_factory.mktemp(f"miri_{kind}")
        scene = science_scene(nx, ny, photmjsr=0.26, background_dns=30.0, peak_dns=8000.0)
        effects = {} if kind == "default" else dict(nonlinearity=False, correlated=False)
        exp = simulate_exposure(detector="MIRIMAGE", subarray="SUB256", ngroups=ngroups,
                                nints=nints, crds_path=cache, output_dir=out / "raw", seed=12,
                                cosmic_rays=3e-3, scene=scene, **effects)
        overrides = None if kind == "default" else {"linearity": "N/A"}
        products = run_stage1("detector1", exp.uncal_path, cache, out / "products",
                              overrides=overrides)
        return load_truth(exp.truth_path), products, exp

    truth, products, _ = once(("miri", kind), make)
    return truth, products


def miri_simulated(cache, tmp_path_factory, kind: str = "default"):
    """The SimulatedExposure behind :func:`miri_exposure` (its reference files)."""
    miri_exposure(cache, tmp_path_factory, kind)
    return _MEMO[("miri", kind)][2]
