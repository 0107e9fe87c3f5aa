"""The truth scene: point sources, Sersic galaxies, spectral traces, sky background, light curves.

Sources live on the sky (RA/Dec, fluxes in Jy); :func:`render` projects them through an
exposure's WCS onto its pixels and returns count-rate maps in DN/s. The conversion is the one the
pipeline's ``photom`` step inverts: a source of ``flux_jy`` gives ``flux_dns = flux_jy /
(PHOTMJSR * PIXAR_SR * 1e6)`` DN/s on a detector of unit response, spread over pixels by the PSF
(exact pixel integrals for the Gaussian PSF). A sky surface brightness ``B`` (MJy/sr) gives
``B / PHOTMJSR * area`` DN/s per pixel, ``area`` being the pixel's solid angle relative to
PIXAR_SR. Both are then multiplied by the pixel's quantum efficiency (the flat field divided by
the pixel-area map), so that flat-fielded, photom-calibrated data recover the sky in MJy/sr.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

__all__ = ["PointSource", "Galaxy", "Trace", "Scene", "random_scene", "render", "psf_sigma",
           "transit_lightcurve", "AB_ZEROPOINT_JY"]

AB_ZEROPOINT_JY = 3631.0
_DIAMETER = 6.5  # m
_DIFFUSION = 0.35  # pixels, charge diffusion added in quadrature to the optical PSF


@dataclass
class PointSource:
    """A star. ``flux`` in Jy; or give ``rate`` (DN/s on a unit-response detector) instead."""

    ra: float
    dec: float
    flux: float | None = None
    rate: float | None = None
    variable: bool = False
    name: str = ""


@dataclass
class Galaxy:
    """A Sersic galaxy: effective radius (arcsec), index, axis ratio, PA (deg east of north)."""

    ra: float
    dec: float
    flux: float | None = None
    r_eff: float = 0.3
    n: float = 1.0
    q: float = 0.7
    pa: float = 0.0
    rate: float | None = None
    variable: bool = False
    name: str = ""


@dataclass
class Trace:
    """A pseudo-spectral trace along detector x (exposure pixels, 0-based).

    Row of the trace centre: ``y0 + slope * x + curvature * (x - xmid)**2``; Gaussian cross
    profile ``sigma`` (px); ``rate`` is DN/s per column (scalar or one value per column).
    """

    y0: float
    rate: float | np.ndarray
    sigma: float = 1.5
    slope: float = 0.0
    curvature: float = 0.0
    x_range: tuple[int, int] | None = None
    variable: bool = True
    name: str = "trace"


@dataclass
class Scene:
    """What the telescope looks at.

    ``background`` is the sky surface brightness in MJy/sr (None: the filter's typical value).
    ``psf`` is ``"gaussian"`` (default; exact pixel integrals) or ``"airy"`` (an Airy pattern,
    5x supersampled).
    """

    stars: list[PointSource] = field(default_factory=list)
    galaxies: list[Galaxy] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    background: float | None = None
    psf: str = "gaussian"


def psf_sigma(wavelength_um: float, pixel_scale: float) -> float:
    """Gaussian sigma (pixels) of the PSF core: diffraction FWHM 1.025 lambda/D + diffusion."""
    fwhm = 1.025 * wavelength_um * 1e-6 / _DIAMETER * 206264.806
    sigma = fwhm / 2.3548 / pixel_scale
    return float(np.hypot(sigma, _DIFFUSION))


def random_scene(ra: float, dec: float, radius: float, *, n_stars: int, n_galaxies: int,
                 flux_range: tuple[float, float], seed: int = 0, background=None,
                 galaxy_flux_range: tuple[float, float] | None = None,
                 r_eff_range: tuple[float, float] = (0.1, 0.6), slope: float = -0.6) -> Scene:
    """A random field: stars and galaxies uniform in a circle of ``radius`` arcsec.

    Fluxes (Jy) follow dN/dlogF ~ F**slope between ``flux_range`` (faint sources dominate).
    """
    rng = np.random.default_rng([int(seed), 11])

    def positions(n):
        r = radius * np.sqrt(rng.random(n)) / 3600.0
        t = rng.uniform(0, 2 * np.pi, n)
        d = dec + r * np.cos(t)
        a = ra + r * np.sin(t) / np.cos(np.deg2rad(dec))
        return a % 360.0, d

    def fluxes(n, lo, hi):
        # Inverse CDF of p(log F) ~ F**slope on [lo, hi].
        u = rng.random(n)
        if abs(slope) < 1e-9:
            return lo * (hi / lo) ** u
        a, b = lo ** slope, hi ** slope
        return (a + u * (b - a)) ** (1.0 / slope)

    sa, sd = positions(n_stars)
    sf = fluxes(n_stars, *flux_range)
    stars = [PointSource(float(a), float(d), float(f), name=f"star{i + 1}")
             for i, (a, d, f) in enumerate(zip(sa, sd, sf, strict=True))]
    glo, ghi = galaxy_flux_range or (flux_range[0] * 3, flux_range[1] * 0.05)
    ga, gd = positions(n_galaxies)
    gf = fluxes(n_galaxies, glo, max(ghi, glo * 1.01))
    galaxies = []
    for i, (a, d, f) in enumerate(zip(ga, gd, gf, strict=True)):
        galaxies.append(Galaxy(float(a), float(d), float(f), r_eff=float(rng.uniform(*r_eff_range)),
                               n=float(rng.choice([0.5, 1.0, 1.5, 2.5, 4.0])),
                               q=float(rng.uniform(0.3, 1.0)), pa=float(rng.uniform(0, 180)),
                               name=f"gal{i + 1}"))
    return Scene(stars=stars, galaxies=galaxies, background=background)


# -- rendering ------------------------------------------------------------------------------------

def _gauss_stamp(x0, y0, sigma, half):
    """Pixel-integrated unit Gaussian on a (2h+1)^2 stamp centred on the nearest pixel."""
    ix, iy = int(np.floor(x0 + 0.5)), int(np.floor(y0 + 0.5))
    xe = np.arange(ix - half, ix + half + 2) - 0.5
    ye = np.arange(iy - half, iy + half + 2) - 0.5
    s = np.sqrt(2.0) * sigma
    px = np.diff(special.erf((xe - x0) / s)) / 2.0
    py = np.diff(special.erf((ye - y0) / s)) / 2.0
    return ix - half, iy - half, np.outer(py, px)


def _airy_stamp(x0, y0, fwhm_pix, sigma_diff, half, sub=5):
    ix, iy = int(np.floor(x0 + 0.5)), int(np.floor(y0 + 0.5))
    n = 2 * half + 1
    off = (np.arange(n * sub) + 0.5) / sub - 0.5 - half
    xx = ix + off[None, :] - x0
    yy = iy + off[:, None] - y0
    r = np.hypot(xx, yy)
    # Airy: first zero at 1.22 lambda/D; FWHM = 1.029 lambda/D.
    lod = fwhm_pix / 1.029
    z = np.pi * r / lod
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.where(z > 1e-6, (2 * special.j1(z) / z) ** 2, 1.0)
    img = img.reshape(n, sub, n, sub).sum(axis=(1, 3))
    if sigma_diff > 0:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma_diff)
    return ix - half, iy - half, img / img.sum()


def _add(canvas, x0, y0, stamp, scale, qe):
    """Add ``stamp * scale`` at corner (x0, y0); returns the rate deposited (times ``qe``)."""
    ny, nx = canvas.shape
    sy, sx = stamp.shape
    ya, yb = max(y0, 0), min(y0 + sy, ny)
    xa, xb = max(x0, 0), min(x0 + sx, nx)
    if ya >= yb or xa >= xb:
        return 0.0
    part = stamp[ya - y0:yb - y0, xa - x0:xb - x0] * scale
    canvas[ya:yb, xa:xb] += part
    return float((part * qe[ya:yb, xa:xb]).sum())


def _sersic_b(n):
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def _galaxy_stamp(g: Galaxy, x0, y0, jac, sigma_psf, max_half=48):
    """Unit-sum Sersic stamp (PSF-convolved) and its corner. ``jac``: arcsec per pixel (2x2).

    Compact galaxies (effective radius under 3 px) are evaluated on a 3x3 sub-pixel grid,
    larger ones at pixel centres; the sum is normalised to 1 over the stamp.
    """
    scale = float(np.sqrt(abs(np.linalg.det(jac))))
    re_pix = max(g.r_eff / scale, 0.3)
    sub = 3 if re_pix < 3 else 1
    half = int(np.clip(np.ceil(4 * re_pix / max(g.q, 0.2) ** 0.5 + 3 * sigma_psf), 4, max_half))
    ix, iy = int(np.floor(x0 + 0.5)), int(np.floor(y0 + 0.5))
    n = 2 * half + 1
    off = (np.arange(n * sub) + 0.5) / sub - 0.5 - half
    dx = (ix - x0) + off[None, :]
    dy = (iy - y0) + off[:, None]
    pa = np.deg2rad(g.pa)
    # major/minor axis coordinates (arcsec) as linear functions of the pixel offsets
    a_x = jac[0, 0] * np.sin(pa) + jac[1, 0] * np.cos(pa)
    a_y = jac[0, 1] * np.sin(pa) + jac[1, 1] * np.cos(pa)
    b_x = (jac[0, 0] * np.cos(pa) - jac[1, 0] * np.sin(pa)) / max(g.q, 0.05)
    b_y = (jac[0, 1] * np.cos(pa) - jac[1, 1] * np.sin(pa)) / max(g.q, 0.05)
    r2 = (a_x * dx + a_y * dy) ** 2 + (b_x * dx + b_y * dy) ** 2
    b = _sersic_b(g.n)
    img = np.exp(-b * ((r2 / (g.r_eff * g.r_eff)) ** (0.5 / g.n) - 1.0))
    if sub > 1:
        img = img.reshape(n, sub, n, sub).sum(axis=(1, 3))
    if sigma_psf > 0:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma_psf, mode="constant")
    total = img.sum()
    return ix - half, iy - half, img / total if total > 0 else img


def _local_jacobians(wcs, x, y):
    """d(xi, eta)/d(x, y) in arcsec per pixel at pixel positions; array of shape (n, 2, 2)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    h = 0.5
    xs = np.concatenate([x - h, x + h, x, x])
    ys = np.concatenate([y, y, y - h, y + h])
    ra, dec = wcs.pixel_to_world(xs, ys)
    ra, dec = np.asarray(ra).reshape(4, -1), np.asarray(dec).reshape(4, -1)
    c = np.cos(np.deg2rad(dec[0]))
    dra = (((ra - ra[0] + 180.0) % 360.0) - 180.0) * c * 3600.0
    dd = (dec - dec[0]) * 3600.0
    out = np.empty((x.size, 2, 2))
    out[:, 0, 0] = (dra[1] - dra[0]) / (2 * h)
    out[:, 0, 1] = (dra[3] - dra[2]) / (2 * h)
    out[:, 1, 0] = (dd[1] - dd[0]) / (2 * h)
    out[:, 1, 1] = (dd[3] - dd[2]) / (2 * h)
    return out


SOURCE_COLUMNS = ("id", "name", "kind", "ra", "dec", "x", "y", "flux_jy", "abmag", "flux_dns",
                  "rate_on_detector", "psf_sigma", "r_eff", "sersic_n", "axis_ratio", "pa",
                  "variable", "on_detector")


def render(scene: Scene, wcs, shape, *, qe, area, photmjsr: float, pixar_sr: float,
           wavelength: float, pixel_scale: float, background_default: float = 0.0):
    """Project a scene onto an exposure.

    Parameters
    ----------
    wcs : DetectorWCS
        The exposure's pixel <-> sky transform.
    shape : (ny, nx)
    qe, area : ndarray of shape (ny, nx), float32
        Quantum efficiency (0 where the pixel sees nothing) and relative pixel solid angle.

    Returns
    -------
    static, variable : ndarray of shape (ny, nx), float32
        Count rate (DN/s) of the constant part (background included) and of the variable
        sources (to be multiplied by the light curve).
    sources : dict of column -> ndarray
        One row per source (see :data:`SOURCE_COLUMNS`).
    """
    ny, nx = shape
    conv = photmjsr * pixar_sr * 1e6  # Jy per DN/s
    static = np.zeros(shape, np.float64)
    variable = np.zeros(shape, np.float64)
    bkg = scene.background if scene.background is not None else background_default
    if bkg:
        static += (bkg / photmjsr) * area
    sigma = psf_sigma(wavelength, pixel_scale)
    rows = {c: [] for c in SOURCE_COLUMNS}

    def flux_pair(obj):
        if obj.flux is not None:
            return float(obj.flux), float(obj.flux) / conv
        if obj.rate is not None:
            return float(obj.rate) * conv, float(obj.rate)
        raise ValueError(f"source {obj.name or obj}: give flux (Jy) or rate (DN/s)")

    objs = list(scene.stars) + list(scene.galaxies)
    if objs:
        ra = np.array([o.ra for o in objs])
        dec = np.array([o.dec for o in objs])
        xs, ys = wcs.world_to_pixel(ra, dec)
        xs, ys = np.atleast_1d(xs), np.atleast_1d(ys)
    fwhm_pix = 1.025 * wavelength * 1e-6 / _DIAMETER * 206264.806 / pixel_scale
    gal_idx = [i for i, o in enumerate(objs) if not isinstance(o, PointSource)]
    jacs = {}
    if gal_idx:
        gx, gy = xs[gal_idx], ys[gal_idx]
        near = (gx > -64) & (gx < nx + 64) & (gy > -64) & (gy < ny + 64)
        if near.any():
            jj = _local_jacobians(wcs, gx[near], gy[near])
            jacs = dict(zip(np.asarray(gal_idx)[near].tolist(), jj, strict=True))
    for i, obj in enumerate(objs):
        fjy, fdns = flux_pair(obj)
        x0, y0 = float(xs[i]), float(ys[i])
        target = variable if obj.variable else static
        is_star = isinstance(obj, PointSource)
        margin = 64
        if -margin <= x0 < nx + margin and -margin <= y0 < ny + margin:
            if is_star:
                if scene.psf == "airy":
                    half = int(np.clip(np.ceil(8 * fwhm_pix), 6, 48))
                    cx, cy, stamp = _airy_stamp(x0, y0, fwhm_pix, _DIFFUSION, half)
                else:
                    half = int(np.ceil(6 * sigma))
                    cx, cy, stamp = _gauss_stamp(x0, y0, sigma, half)
            else:
                cx, cy, stamp = _galaxy_stamp(obj, x0, y0, jacs[i], sigma)
            on = _add(target, cx, cy, stamp, fdns, qe)
        else:
            on = 0.0
        rows["id"].append(i + 1)
        rows["name"].append(obj.name or f"src{i + 1}")
        rows["kind"].append("star" if is_star else "galaxy")
        rows["ra"].append(obj.ra)
        rows["dec"].append(obj.dec)
        rows["x"].append(x0)
        rows["y"].append(y0)
        rows["flux_jy"].append(fjy)
        rows["abmag"].append(-2.5 * np.log10(fjy / AB_ZEROPOINT_JY) if fjy > 0 else np.nan)
        rows["flux_dns"].append(fdns)
        rows["rate_on_detector"].append(on)
        rows["psf_sigma"].append(sigma)
        rows["r_eff"].append(0.0 if is_star else obj.r_eff)
        rows["sersic_n"].append(0.0 if is_star else obj.n)
        rows["axis_ratio"].append(1.0 if is_star else obj.q)
        rows["pa"].append(0.0 if is_star else obj.pa)
        rows["variable"].append(bool(obj.variable))
        rows["on_detector"].append(bool(0 <= x0 <= nx - 1 and 0 <= y0 <= ny - 1))

    for tr in scene.traces:
        x = np.arange(nx, dtype=np.float64)
        xa, xb = tr.x_range or (0, nx)
        yc = tr.y0 + tr.slope * x + tr.curvature * (x - nx / 2.0) ** 2
        yy = np.arange(ny, dtype=np.float64)[:, None]
        prof = np.exp(-0.5 * ((yy - yc[None, :]) / tr.sigma) ** 2)
        prof /= np.sqrt(2 * np.pi) * tr.sigma
        colrate = np.broadcast_to(np.asarray(tr.rate, np.float64), (nx,)).copy()
        colrate[:xa] = 0.0
        colrate[xb:] = 0.0
        (variable if tr.variable else static)[:] += prof * colrate[None, :]

    # The detector's response: pixels that see nothing (reference, dead) get no charge.
    static *= qe
    variable *= qe
    table = {k: np.asarray(v) for k, v in rows.items()}
    return static.astype(np.float32), variable.astype(np.float32), table


# -- light curves ---------------------------------------------------------------------------------

def transit_lightcurve(t, t0: float, period: float, rp: float = 0.1, a: float = 10.0,
                       inc: float = 89.0, u1: float = 0.4, u2: float = 0.25) -> np.ndarray:
    """Relative flux of a star with a transiting planet (quadratic limb darkening).

    Parameters
    ----------
    t : array_like
        Times (same unit as ``t0`` and ``period``, e.g. MJD days).
    rp, a : float
        Planet radius and orbital semi-major axis in stellar radii.
    inc : float
        Inclination, degrees. ``u1``, ``u2``: quadratic limb-darkening coefficients.

    Notes
    -----
    Exact uniform-disc overlap area, times the limb-darkened intensity at the planet's position
    relative to the disc average (the small-planet approximation; accurate for rp <~ 0.15).
    """
    t = np.asarray(t, float)
    phase = 2 * np.pi * (t - t0) / period
    z = a * np.hypot(np.sin(phase), np.cos(np.deg2rad(inc)) * np.cos(phase))
    front = np.cos(phase) > 0
    p = rp
    area = np.zeros_like(z)
    full = z <= 1 - p
    area[full] = p * p
    part = (z > 1 - p) & (z < 1 + p)
    zp = z[part]
    k0 = np.arccos(np.clip((p * p + zp * zp - 1) / (2 * p * zp), -1, 1))
    k1 = np.arccos(np.clip((1 - p * p + zp * zp) / (2 * zp), -1, 1))
    area[part] = (p * p * k0 + k1 - 0.5 * np.sqrt(np.clip(4 * zp * zp - (1 + zp * zp - p * p) ** 2,
                                                          0, None))) / np.pi
    mu = np.sqrt(np.clip(1 - np.minimum(z, 1.0) ** 2, 0, 1))
    intensity = 1 - u1 * (1 - mu) - u2 * (1 - mu) ** 2
    norm = 1 - u1 / 3.0 - u2 / 6.0
    depth = area * intensity / norm
    depth[~front] = 0.0
    return 1.0 - depth
