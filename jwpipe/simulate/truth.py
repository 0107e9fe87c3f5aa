"""Truth files written beside every simulated product, in open formats (NumPy ``.npz``, ECSV).

For a raw exposure ``<root>_uncal.fits`` (``<root>`` = ``jw<ppppp><ooo><vvv>_<gg><s><aa>_<eeeee>
[-seg<NNN>]_<detector>``) the simulator writes the files below. Arrays are in the exposure's own
pixel frame (subarray pixels, numpy ``[y, x]`` order, 0-based); ``nints`` counts the
integrations *of that file* (a segment holds some of the exposure's integrations).

``<root>_truth.npz`` (read with ``numpy.load``)
    ``rate`` : float32 (ny, nx)
        True count rate, DN/s: sky plus sources (light curve = 1) times the pixel's quantum
        efficiency; before IPC, without dark current, cosmic rays or persistence.
    ``rate_variable`` : float32 (ny, nx)
        The part of ``rate`` the light curve multiplies (zeros if nothing varies).
    ``lc`` : float64 (nints,)
        Light-curve multiplier of each integration: the rate of integration ``i`` is
        ``rate - rate_variable + lc[i] * rate_variable``.
    ``crs`` : structured (n,)
        Every cosmic-ray charge deposit, one row per affected pixel. Fields: ``int`` (int32,
        0-based integration in this file), ``group`` (int32, first group containing the charge;
        it stays in all later groups), ``frame`` (int32, frame number within the integration of
        the first read that sees it), ``y``, ``x`` (int32), ``amp`` (float32, DN of linear
        signal, before non-linearity and IPC), ``event`` (int32, event id: a snowball or shower
        is one event over many pixels), ``kind`` (int16: 0 hit, 1 snowball, 2 shower).
    ``sat_group`` : int16 (nints, ny, nx)
        First group whose noiseless raw value (bias + signal after IPC, before read noise and
        correlated offsets) reaches the SATURATION reference threshold; -1 if none.
    ``sat_margin_group`` : int16 (nints, ny, nx)
        The same with the threshold lowered by 5x the group read noise (pixels a pipeline may
        or may not flag).
    ``refpix``, ``donotuse`` : bool (ny, nx)
        REFERENCE_PIXEL and DO_NOT_USE in the MASK reference; ``flags`` : uint32 (ny, nx), the
        MASK reference's DQ values.
    ``dark_rate`` : float32 (ny, nx)
        Dark current, DN/s.
    ``bias`` : float32 (ny, nx)
        Bias level of every read, DN (the superbias; MIRI: the detector's pedestal).
    ``qe`` : float32 (ny, nx)
        Quantum efficiency (flat / area); 0 on reference and dead pixels.
    ``area`` : float32 (ny, nx)
        Pixel solid angle relative to PIXAR_SR.
    ``gain`` : float32 (ny, nx)
        Electrons per DN. ``rn_cds`` : float32 (ny, nx), CDS read noise in DN (white part).
    ``persistence`` : float32 (ny, nx)
        Persistence count rate at exposure start, DN/s (zeros if none); it decays as
        ``exp(-t / persistence_tau)``.
    ``stars`` : structured (n,)
        Point sources: ``y``, ``x`` (0-based pixel position), ``rate`` (DN/s deposited on the
        detector, quantum efficiency applied), ``sigma`` (Gaussian PSF sigma, pixels); float64.
    ``read_times`` : float64 (ngroups * nframes,)
        Seconds from the end of the reset to each read frame. ``group_times`` : float64
        (ngroups,), the mean read time of each group.
    ``int_start_mjd``, ``int_mid_mjd``, ``int_end_mjd`` : float64 (nints,)
        Integration times (UTC MJD).
    Scalars
        ``tframe``, ``tgroup``, ``t_int`` (last read time, s), ``ngroups``, ``nints``,
        ``nframes``, ``groupgap``, ``intstart`` (1-based first integration of this file),
        ``xstart``, ``ystart`` (1-based subarray corner), ``photmjsr``, ``pixar_sr``,
        ``persistence_tau`` (s), ``seed``, ``truth_version``.

    Noiseless identity (``noise=False``, no cosmic rays, MIRI effects off), non-linearity and IPC
    on, with ``D`` the IPC deconvolution with the reference kernel (reference pixels count as
    zero, as in the ipc step) and ``P`` the linearity polynomial: the linear signal as the
    pipeline recovers it is, near-IR (superbias subtracted before linearity), ``L = P(D(raw -
    bias))``; MIRI (no superbias step: the linearity step applies ``P`` to raw DN that include
    the pedestal), ``L = P(D(raw)) - P(D(bias))``. Then ``L[g] - dark[g] == rate *
    group_times[g] + dark_rate * tframe`` in every unsaturated pixel (to the uint16 rounding and
    the second-order IPC inverse, ~1e-5 relative), ``dark`` being the dark reference's planes
    (``dark_rate * frame * tframe``, group 0 subtracted; MIRI: with its first-integration
    transient in the first integration), so a pipeline's dark-subtracted, linearised slope is
    ``rate``.

    MIRI raw data also carry, outside ``rate``: the RESET reference added to the first groups of
    each integration (its last plane set for integrations after the second), an RSCD-like
    transient in the first ``group_skip1`` (first integration) or ``group_skip`` groups (the RSCD
    reference's values), and a last-frame offset in the last group; pipelines flag or correct
    exactly these groups.

``<root>_sources.ecsv`` (``astropy.table.Table.read``)
    One row per scene source: ``id``, ``name``, ``kind`` (star/galaxy), ``ra``, ``dec`` (deg),
    ``x``, ``y`` (0-based pixel position in this exposure, possibly off the detector),
    ``flux_jy``, ``abmag``, ``flux_dns`` (DN/s for unit quantum efficiency: ``flux_jy /
    (PHOTMJSR * PIXAR_SR * 1e6)``), ``rate_on_detector`` (DN/s actually deposited, quantum
    efficiency applied, the part outside the array lost), ``psf_sigma`` (px), ``r_eff``
    (arcsec), ``sersic_n``, ``axis_ratio``, ``pa`` (deg east of north), ``variable``,
    ``on_detector``. Table metadata: ``photmjsr``, ``pixar_sr``, ``filter``, ``pupil``,
    ``detector``, ``ra_ref``, ``dec_ref``.

``<root>_lightcurve.ecsv`` (time series, or any exposure with variable sources)
    ``integration_number`` (1-based, whole exposure), ``int_mid_MJD_UTC``, ``int_mid_BJD_TDB``,
    ``flux_multiplier``. For a segmented exposure ``<root>`` has no ``-segNNN``.

``<product>_catalog.ecsv`` (an imaging observation)
    The scene on the sky, common to all its exposures: ``id``, ``name``, ``kind``, ``ra``,
    ``dec``, ``flux_jy``, ``abmag``, ``flux_dns``, ``r_eff``, ``sersic_n``, ``axis_ratio``,
    ``pa``, ``variable``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_truth", "write_sources", "write_lightcurve", "write_catalog", "TRUTH_VERSION"]

TRUTH_VERSION = 1


def write_truth(path: Path, arrays: dict) -> Path:
    """Write the truth ``.npz`` (atomically)."""
    import zipfile

    from numpy.lib import format as npformat

    from ..datamodels.fits_io import atomic_path

    path = Path(path)
    arrays = dict(arrays)
    arrays.setdefault("truth_version", np.int32(TRUTH_VERSION))
    # An ordinary .npz (numpy.load reads it). Integer, boolean and small arrays are deflated
    # (level 1); large float maps, which hardly compress, are stored, so full frames stay fast.
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for name, value in arrays.items():
                value = np.asanyarray(value)
                deflate = value.dtype.kind not in "fc" or value.nbytes < 1 << 20
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
                info._compresslevel = 1
                with zf.open(info, "w", force_zip64=True) as fh:
                    npformat.write_array(fh, value, allow_pickle=False)
    return path


def _write_table(path: Path, table) -> Path:
    from ..datamodels.fits_io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    return path


def write_sources(path: Path, columns: dict, meta: dict) -> Path:
    from astropy.table import Table

    t = Table({k: np.asarray(v) for k, v in columns.items()})
    t.meta.update(meta)
    for name, unit in (("ra", "deg"), ("dec", "deg"), ("flux_jy", "Jy"), ("flux_dns", "DN/s"),
                       ("rate_on_detector", "DN/s"), ("r_eff", "arcsec"), ("pa", "deg"),
                       ("x", "pix"), ("y", "pix"), ("psf_sigma", "pix")):
        if name in t.colnames:
            t[name].unit = unit
    return _write_table(path, t)


def write_lightcurve(path: Path, integration_number, mid_mjd, mid_bjd, flux) -> Path:
    from astropy.table import Table

    t = Table({"integration_number": np.asarray(integration_number, np.int32),
               "int_mid_MJD_UTC": np.asarray(mid_mjd, float),
               "int_mid_BJD_TDB": np.asarray(mid_bjd, float),
               "flux_multiplier": np.asarray(flux, float)})
    return _write_table(path, t)


def write_catalog(path: Path, columns: dict, meta: dict) -> Path:
    keep = ("id", "name", "kind", "ra", "dec", "flux_jy", "abmag", "flux_dns", "r_eff", "sersic_n",
            "axis_ratio", "pa", "variable")
    return write_sources(path, {k: columns[k] for k in keep if k in columns}, meta)
