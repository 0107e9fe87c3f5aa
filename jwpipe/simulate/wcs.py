"""Geometry of the synthetic observatory: distortion (pixels -> V2/V3) and pointing (V2/V3 -> sky).

The chain is the JWST one, so a gwcs built by the imaging ``assign_wcs`` recipe from the files
written here reproduces the simulator's source positions:

1. ``distortion`` (the DISTORTION reference, an astropy model): 0-based full-frame detector
   pixels (DMS orientation) -> V2, V3 in arcsec. It is ``(Shift(-xc) & Shift(-yc)) | cubic
   polynomials (ideal frame, arcsec) | affine ideal -> V2/V3`` with the ideal Y axis at
   ``V3IdlYAngle`` from V3 and parity ``VIdlParity``; its inverse is a fitted polynomial, good to
   better than 1e-3 pixel over the detector. Subarray pixels are full-frame pixels minus
   ``(SUBSTRT1 - 1, SUBSTRT2 - 1)``.
2. ``v2v3 -> sky``: the V2/V3 direction (deg) rotated by the Euler sequence ``zyxyz`` with angles
   ``(V2_REF, -V3_REF, ROLL_REF, DEC_REF, -RA_REF)`` (deg), as documented for the JWST pointing
   keywords: the point (V2_REF, V3_REF) lands on (RA_REF, DEC_REF), and the +V3 axis there points
   ROLL_REF degrees east of north.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instruments import Detector, Subarray

__all__ = ["distortion_model", "v2v3_to_sky", "sky_to_v2v3", "Pointing", "solve_pointing",
           "DetectorWCS", "pixel_area_map"]

# Distortion shape (fractions of a pixel at the detector edge; plausible, not calibrated).
_K2 = (0.9e-6, -0.4e-6, 0.6e-6)   # u^2, u v, v^2 terms relative to the linear scale (per pixel)
_K3 = (2.0e-10, 0.8e-10)          # u^3 (x), v^3 (y)


def _poly_pair(det: Detector):
    from astropy.modeling.models import Polynomial2D

    sx, sy = det.pixel_scale
    a, b, c = _K2
    px = Polynomial2D(3, c1_0=sx, c0_1=sx * 2e-4, c2_0=sx * a, c1_1=sx * b, c0_2=sx * c,
                      c3_0=sx * _K3[0], name="det_to_idl_x")
    py = Polynomial2D(3, c0_1=sy, c1_0=-sy * 1e-4, c2_0=sy * c * 0.5, c1_1=sy * a, c0_2=sy * b,
                      c0_3=sy * _K3[1], name="det_to_idl_y")
    return px, py


def _affine(det: Detector):
    from astropy.modeling.models import AffineTransformation2D

    t = np.deg2rad(det.v3_yangle)
    p = det.vparity
    matrix = np.array([[p * np.cos(t), np.sin(t)], [-p * np.sin(t), np.cos(t)]])
    return AffineTransformation2D(matrix=matrix, translation=[det.v2_ref, det.v3_ref],
                                  name="idl_to_v2v3")


def distortion_model(det: Detector, with_distortion: bool = True):
    """The detector -> V2/V3 (arcsec) transform of a full-frame detector, with its inverse.

    Parameters
    ----------
    det : Detector
    with_distortion : bool
        False gives the linear (undistorted) model.
    """
    from astropy.modeling.models import Mapping, Polynomial2D, Shift

    ny, nx = det.full
    xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
    px, py = _poly_pair(det)
    if not with_distortion:
        for p in (px, py):
            for name in p.param_names:
                if name not in ("c1_0", "c0_1"):
                    setattr(p, name, 0.0)
    affine = _affine(det)
    forward = (Shift(-xc) & Shift(-yc)) | Mapping((0, 1, 0, 1)) | (px & py) | affine

    # Inverse of the polynomial part, fitted (least squares) on a grid covering the detector.
    u, v = np.meshgrid(np.linspace(-0.55 * nx, 0.55 * nx, 48),
                       np.linspace(-0.55 * ny, 0.55 * ny, 48))
    X, Y = px(u, v), py(u, v)
    ix = Polynomial2D(5, name="idl_to_det_x")
    iy = Polynomial2D(5, name="idl_to_det_y")
    norm = max(np.abs(X).max(), np.abs(Y).max())
    powers = [(int(n[1:].split("_")[0]), int(n.split("_")[1])) for n in ix.param_names]
    design = np.stack([(X / norm) ** i * (Y / norm) ** j for i, j in powers], axis=-1)
    design = design.reshape(-1, len(powers))
    normal = design.T @ design  # normal equations: tiny and well conditioned on [-1, 1]
    for model, target in ((ix, u), (iy, v)):
        coef = np.linalg.solve(normal, design.T @ target.ravel())
        model.parameters = [c / norm ** (i + j) for c, (i, j) in zip(coef, powers, strict=True)]
    inverse = affine.inverse | Mapping((0, 1, 0, 1)) | (ix & iy) | (Shift(xc) & Shift(yc))
    forward.inverse = inverse
    forward.bounding_box = ((-0.5, ny - 0.5), (-0.5, nx - 0.5))
    forward.name = f"{det.name.lower()}_distortion"
    return forward


def _rotation(ra_ref, dec_ref, roll_ref, v2_ref, v3_ref):
    from astropy.modeling.models import RotationSequence3D

    angles = [v2_ref / 3600.0, -v3_ref / 3600.0, roll_ref, dec_ref, -ra_ref]
    return RotationSequence3D(angles, axes_order="zyxyz")


def _unit(lon_deg, lat_deg):
    lon, lat = np.deg2rad(lon_deg), np.deg2rad(lat_deg)
    return np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _lonlat(xyz):
    x, y, z = xyz
    lon = np.rad2deg(np.arctan2(y, x))
    lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    return lon, lat


def v2v3_to_sky(v2, v3, ra_ref, dec_ref, roll_ref, v2_ref, v3_ref):
    """(V2, V3) in arcsec -> (RA, Dec) in degrees (RA in [0, 360))."""
    rot = _rotation(ra_ref, dec_ref, roll_ref, v2_ref, v3_ref)
    xyz = _unit(np.asarray(v2, float) / 3600.0, np.asarray(v3, float) / 3600.0)
    out = np.array(rot(*xyz))
    ra, dec = _lonlat(out)
    return np.mod(ra, 360.0), dec


def sky_to_v2v3(ra, dec, ra_ref, dec_ref, roll_ref, v2_ref, v3_ref):
    """(RA, Dec) in degrees -> (V2, V3) in arcsec."""
    rot = _rotation(ra_ref, dec_ref, roll_ref, v2_ref, v3_ref).inverse
    xyz = _unit(np.asarray(ra, float), np.asarray(dec, float))
    lon, lat = _lonlat(np.array(rot(*xyz)))
    lon = (lon + 180.0) % 360.0 - 180.0
    return lon * 3600.0, lat * 3600.0


@dataclass(frozen=True)
class Pointing:
    """The pointing keywords of one exposure (degrees and arcsec as in the headers)."""

    ra_ref: float
    dec_ref: float
    roll_ref: float
    v2_ref: float
    v3_ref: float
    xref_sci: float   # 1-based reference pixel in the exposure's (subarray) frame
    yref_sci: float
    v3_yangle: float
    vparity: int


def solve_pointing(det: Detector, sub: Subarray, distortion, target_ra: float,
                   target_dec: float, roll: float, offset=(0.0, 0.0)) -> Pointing:
    """Point so that the target lands at the aperture reference plus a dither ``offset``.

    The aperture reference pixel is the centre of the subarray; ``offset`` (arcsec, ideal frame)
    is where the target appears relative to it, as APT dither offsets (XOFFSET, YOFFSET) are.
    ``roll`` is the V3 position angle at the reference point (ROLL_REF).
    """
    xr = sub.xstart - 1 + (sub.xsize - 1) / 2.0
    yr = sub.ystart - 1 + (sub.ysize - 1) / 2.0
    v2r, v3r = (float(v) for v in distortion(xr, yr))
    t = np.deg2rad(det.v3_yangle)
    p = det.vparity
    dx, dy = float(offset[0]), float(offset[1])
    v2t = v2r + p * dx * np.cos(t) + dy * np.sin(t)
    v3t = v3r - p * dx * np.sin(t) + dy * np.cos(t)
    ra_ref, dec_ref = float(target_ra), float(target_dec)
    for _ in range(8):
        ra_p, dec_p = v2v3_to_sky(v2t, v3t, ra_ref, dec_ref, roll, v2r, v3r)
        dra = ((float(ra_p) - target_ra + 180.0) % 360.0) - 180.0
        ddec = float(dec_p) - target_dec
        ra_ref -= dra
        dec_ref -= ddec
        if abs(dra) * np.cos(np.deg2rad(target_dec)) < 1e-11 and abs(ddec) < 1e-11:
            break
    return Pointing(ra_ref=ra_ref % 360.0, dec_ref=dec_ref, roll_ref=float(roll), v2_ref=v2r,
                    v3_ref=v3r, xref_sci=(sub.xsize + 1) / 2.0, yref_sci=(sub.ysize + 1) / 2.0,
                    v3_yangle=det.v3_yangle, vparity=det.vparity)


class DetectorWCS:
    """Pixel <-> sky for one exposure: subarray pixels (0-based), distortion and pointing."""

    def __init__(self, distortion, sub: Subarray, pointing: Pointing):
        self.distortion = distortion
        self.sub = sub
        self.pointing = pointing
        self._x0 = sub.xstart - 1
        self._y0 = sub.ystart - 1

    def pixel_to_world(self, x, y):
        v2, v3 = self.distortion(np.asarray(x, float) + self._x0, np.asarray(y, float) + self._y0,
                                 with_bounding_box=False)
        p = self.pointing
        return v2v3_to_sky(v2, v3, p.ra_ref, p.dec_ref, p.roll_ref, p.v2_ref, p.v3_ref)

    def world_to_pixel(self, ra, dec):
        p = self.pointing
        v2, v3 = sky_to_v2v3(ra, dec, p.ra_ref, p.dec_ref, p.roll_ref, p.v2_ref, p.v3_ref)
        x, y = self.distortion.inverse(v2, v3, with_bounding_box=False)
        return np.asarray(x) - self._x0, np.asarray(y) - self._y0

    def fits_keywords(self) -> dict:
        """Approximate TAN WCS at the reference pixel, and the footprint (S_REGION)."""
        p = self.pointing
        xr, yr = p.xref_sci - 1.0, p.yref_sci - 1.0
        ra0, dec0 = p.ra_ref, p.dec_ref
        d = 0.5
        xs = np.array([xr - d, xr + d, xr, xr])
        ys = np.array([yr, yr, yr - d, yr + d])
        ra, dec = self.pixel_to_world(xs, ys)
        xi, eta = _gnomonic(ra, dec, ra0, dec0)
        cd = np.array([[xi[1] - xi[0], xi[3] - xi[2]],
                       [eta[1] - eta[0], eta[3] - eta[2]]]) / (2 * d)
        cra, cdec = self.pixel_to_world(xr, yr)
        ny, nx = self.sub.ysize, self.sub.xsize
        cx = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
        cy = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
        fra, fdec = self.pixel_to_world(cx, cy)
        region = "POLYGON ICRS " + " ".join(
            f"{a:.9f} {b:.9f}" for a, b in zip(fra, fdec, strict=True))
        cdelt1 = float(np.hypot(cd[0, 0], cd[1, 0]))
        cdelt2 = float(np.hypot(cd[0, 1], cd[1, 1]))
        pc = cd / np.array([cdelt1, cdelt2])[np.newaxis, :]
        return {
            "wcsaxes": 2, "crpix1": p.xref_sci, "crpix2": p.yref_sci,
            "crval1": float(cra), "crval2": float(cdec), "ctype1": "RA---TAN",
            "ctype2": "DEC--TAN", "cunit1": "deg", "cunit2": "deg", "cdelt1": cdelt1,
            "cdelt2": cdelt2, "pc1_1": float(pc[0, 0]), "pc1_2": float(pc[0, 1]),
            "pc2_1": float(pc[1, 0]), "pc2_2": float(pc[1, 1]), "s_region": region,
            "radesys": "ICRS",
        }


def _gnomonic(ra, dec, ra0, dec0):
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.rad2deg(xi), np.rad2deg(eta)


def pixel_area_map(det: Detector, sub: Subarray, with_distortion: bool = True) -> np.ndarray:
    """Pixel solid angle relative to the nominal ``pixel_scale[0] * pixel_scale[1]``.

    Returns ndarray of shape (ysize, xsize), float32: the Jacobian determinant of the distortion
    polynomials (the affine part preserves area) divided by the nominal pixel area.
    """
    if not with_distortion:
        return np.ones(sub.shape, np.float32)
    px, py = _poly_pair(det)
    ny, nx = det.full

    def jacobian(u, v):
        def grad(p):
            c = {n: getattr(p, n).value for n in p.param_names}
            du = (c["c1_0"] + 2 * c["c2_0"] * u + c["c1_1"] * v + 3 * c["c3_0"] * u * u
                  + 2 * c["c2_1"] * u * v + c["c1_2"] * v * v)
            dv = (c["c0_1"] + c["c1_1"] * u + 2 * c["c0_2"] * v + c["c2_1"] * u * u
                  + 2 * c["c1_2"] * u * v + 3 * c["c0_3"] * v * v)
            return du, dv

        xu, xv = grad(px)
        yu, yv = grad(py)
        return np.abs(xu * yv - xv * yu)

    # The Jacobian of cubic polynomials is a polynomial of degree <= 4 in each variable: sample it
    # on 7x7 nodes, solve for its coefficients exactly, evaluate separably on the region.
    nodes = np.cos(np.pi * (np.arange(7) + 0.5) / 7)
    su, sv = 0.5 * nx, 0.5 * ny
    uu, vv = np.meshgrid(nodes * su, nodes * sv)
    vand = np.vander(nodes, 7, increasing=True)
    coef = np.linalg.solve(vand, np.linalg.solve(vand, jacobian(uu, vv)).T).T  # [j(v), i(u)]
    u = (np.arange(sub.xstart - 1, sub.xstart - 1 + sub.xsize) - (nx - 1) / 2.0) / su
    v = (np.arange(sub.ystart - 1, sub.ystart - 1 + sub.ysize) - (ny - 1) / 2.0) / sv
    jac = np.vander(v, 7, increasing=True) @ coef @ np.vander(u, 7, increasing=True).T
    return (jac / (det.pixel_scale[0] * det.pixel_scale[1])).astype(np.float32)
