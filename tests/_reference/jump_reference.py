"""Slow pure-NumPy oracle for the two-point-difference jump detector (``jwpipe.jump_detection``).

Written straight from the statistical model with dense matrices, so that the compiled kernel
(tridiagonal recurrences, single precision screen, double precision decisions) can be checked
against something obviously correct. Use small arrays: every pixel-integration builds and inverts
an explicit (ngroups-1) x (ngroups-1) covariance matrix.

The model (the same as ``jwpipe/_ext/src/jump.c``):

- A group is usable when its GROUPDQ has neither DO_NOT_USE nor SATURATED and its value is
  finite. A first difference is usable when both of its groups are. Data are float32 DN
  (float64 input is rounded to float32 first, as the kernel wrapper does) times the gain.
- Noise of the differences, in electrons: read noise ``s = (readnoise * gain)**2 / (2 * nframes)``
  per group (``readnoise`` is the CDS noise, DN) and Poisson ``lam = max(mean(d), 0)`` over the
  usable, not yet flagged differences (leaving out the largest and the smallest when 4 or more
  remain): ``var(d_k) = lam (1 - 2c) + 2 s`` and ``cov(d_k, d_k+1) = lam c - s`` for adjacent
  usable differences, where
  ``c = (frame_time / group_time) (nframes**2 - 1) / (6 nframes)`` (frame averaging; 0 for one
  frame per group).
- Statistic: for each usable difference k the generalised-least-squares estimate of a step in
  difference k (the ramp's rate fitted with the step free) divided by its standard error, ``z_k``.
- Iteration: the largest ``|z_k|`` (with two differences left: the larger ``|d_k|``) is a jump
  when it exceeds the threshold for the number ``n`` of differences left (``n >= 4``:
  ``rejection_threshold``; 3: ``four_group_rejection_threshold``; 2: ``three_group...``); the
  difference is removed and the test repeated. JUMP_DET goes on the later group.
- Asymmetric thresholds (``neg_thresholds``, the kernel's thresholds for ``z < 0`` in the order
  (>= 4, 3, 2 differences); the three thresholds above then apply to ``z > 0``): the difference
  with the largest ``|z_k|`` over the threshold of its sign is the candidate; with two
  differences left (``|z_0| = |z_1|``) the larger ``d_k``, as a positive step.
- ``split`` (with ``neg_thresholds``): also the template ``(e_k + e_k+1) / 2`` of a hit arriving
  between the frames of a group, positive only, at the positive threshold; it flags the later
  group of the difference of the two with the larger ``(P d)_k``.
- ``line_offsets`` (nints, ngroups - 1, nlines, nseg) DN with ``line_axis`` 1 (rows) or 2
  (columns): subtracted from the differences before the test (and from ``mean_diff``); the
  offsets themselves are checked separately against :func:`line_offsets_reference`.
- Pixel-integrations with fewer than ``minimum_groups`` usable groups, invalid gain (NaN, <= 0:
  NO_GAIN_VALUE|DO_NOT_USE in the pixel DQ) or invalid read noise (NaN, < 0) are not tested.
- ``pool_integrations``: the integrations are tested together as one virtual ramp per pixel
  (one rate), the differences across integration boundaries left out.
- Neighbours: jumps with ``min_jump_to_flag_neighbors < |z| < max_jump_to_flag_neighbors`` flag
  the same group of the four neighbours unless it is SATURATED or DO_NOT_USE there.
- ``mean_diff``: the mean of the usable differences that are not primary jumps, in DN (NaN when
  there are none, the integration has fewer than ``minimum_groups`` usable groups or the gain is
  unusable).
- After-jump flagging: for every JUMP_DET group (primary, neighbour or from the input) whose
  difference is usable, the amplitude ``data[g] - data[g-1] - mean_diff`` in DN; at or above
  ``after_jump_flag_dn1`` the next ``int(after_jump_flag_time1 // group_time)`` groups are
  flagged (same for ``...2``), not where SATURATED or DO_NOT_USE.
- Finally JUMP_DET is cleared wherever SATURATED or DO_NOT_USE is set.
"""

from __future__ import annotations

import numpy as np

DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4
NO_GAIN_VALUE = 1 << 19
BAD = DO_NOT_USE | SATURATED


def _threshold(n, rej, four, three):
    if n >= 4:
        return rej
    if n == 3:
        return four
    return three


def _gls_z(d, cur, lam, s, c=0.0, split=False):
    """z statistics of a step in each difference, for a batch of pixels.

    d, cur : (npix, n) float64 differences (electrons) and bool usable mask.
    lam, s : (npix,) Poisson variance per difference and read variance per group.
    c : frame-averaging correlation.
    Returns z (npix, n), zero where not usable; with ``split`` also (zs, first): zs (npix, n-1)
    the statistic of the template (e_k + e_k+1) / 2 (0 unless both usable and it is positive)
    and first (npix, n-1) bool, whether difference k has the larger part (t'P d)_k.
    """
    npix, n = d.shape
    sig = np.zeros((npix, n, n))
    idx = np.arange(n)
    diag = np.where(cur, (lam * (1.0 - 2.0 * c) + 2.0 * s)[:, None], 1.0)
    sig[:, idx, idx] = diag
    if n > 1:
        both = cur[:, :-1] & cur[:, 1:]
        off = np.where(both, (lam * c - s)[:, None], 0.0)
        sig[:, idx[:-1], idx[1:]] = off
        sig[:, idx[1:], idx[:-1]] = off
    inv = np.linalg.inv(sig)
    one = cur.astype(np.float64)
    dd = np.where(cur, d, 0.0)
    v = np.einsum("pij,pj->pi", inv, one)
    w = np.einsum("pij,pj->pi", inv, dd)
    big_s = np.einsum("pi,pi->p", one, v)
    big_w = np.einsum("pi,pi->p", one, w)
    pkk = inv[:, idx, idx] - v * v / big_s[:, None]
    num = w - v * (big_w / big_s)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(cur & (pkk > 0), num / np.sqrt(np.where(pkk > 0, pkk, 1.0)), 0.0)
    if not split:
        return z
    pk1 = inv[:, idx[:-1], idx[1:]] - v[:, :-1] * v[:, 1:] / big_s[:, None]
    a = np.where(cur & (pkk > 0), num, 0.0)
    sn = 0.5 * a[:, :-1] + 0.5 * a[:, 1:]
    sd = 0.25 * pkk[:, :-1] + 0.5 * pk1 + 0.25 * pkk[:, 1:]
    ok = cur[:, :-1] & cur[:, 1:] & (sn > 0) & (sd > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        zs = np.where(ok, sn / np.sqrt(np.where(sd > 0, sd, 1.0)), 0.0)
    return z, zs, a[:, :-1] >= a[:, 1:]


def detect_jumps_reference(
    data,
    groupdq,
    gain,
    readnoise,
    *,
    group_time,
    nframes=1,
    frame_time=0.0,
    rejection_threshold=4.0,
    three_group_rejection_threshold=6.0,
    four_group_rejection_threshold=5.0,
    flag_4_neighbors=True,
    min_jump_to_flag_neighbors=10.0,
    max_jump_to_flag_neighbors=1000.0,
    after_jump_flag_dn1=0.0,
    after_jump_flag_time1=0.0,
    after_jump_flag_dn2=0.0,
    after_jump_flag_time2=0.0,
    minimum_groups=3,
    pool_integrations=False,
    neg_thresholds=None,
    line_offsets=None,
    line_axis=1,
    split=False,
):
    """Return (groupdq, pixeldq, n_jumps, zmax, mean_diff) for a block (nints, ngroups, ny, nx).

    ``zmax`` (nints, ngroups, ny, nx) float64 holds ``|z|`` of each primary jump (0 elsewhere);
    ``mean_diff`` (nints, ny, nx) float64.
    """
    data = np.asarray(data).astype(np.float32).astype(np.float64)
    gdq_in = np.asarray(groupdq).astype(np.uint8)
    gain = np.asarray(gain).astype(np.float32).astype(np.float64)
    rn = np.asarray(readnoise).astype(np.float32).astype(np.float64)
    nints, ngroups, ny, nx = data.shape
    c = 0.0
    if nframes > 1 and frame_time > 0:
        c = min(frame_time / group_time * (nframes * nframes - 1) / (6.0 * nframes), 1.0 / 6.0)
    out = gdq_in.copy()
    pdq = np.zeros((ny, nx), np.uint32)
    zmax = np.zeros(data.shape)
    mean_diff = np.full((nints, ny, nx), np.nan)
    with np.errstate(invalid="ignore"):
        good_gain = np.isfinite(gain) & (gain > 0)
        good_rn = np.isfinite(rn) & (rn >= 0)
    pdq[~good_gain] |= NO_GAIN_VALUE | DO_NOT_USE
    s_all = np.where(good_gain & good_rn, (rn * np.where(good_gain, gain, 0.0)) ** 2, 0.0)
    s_all = s_all / (2.0 * nframes)
    n_jumps = 0
    usable_all = ((gdq_in & BAD) == 0) & np.isfinite(data)
    # Integrations with fewer than minimum_groups usable groups take no part in the test.
    usable_all &= (usable_all.sum(axis=1) >= minimum_groups)[:, None]
    units = [list(range(nints))] if pool_integrations else [[i] for i in range(nints)]
    for unit in units:
        # One virtual ramp per pixel: the unit's integrations one after the other; differences
        # across an integration boundary are not used.
        nv = len(unit) * ngroups
        ev = (data[unit] * gain).reshape(nv, ny, nx)
        uv = usable_all[unit].reshape(nv, ny, nx)
        nd = nv - 1
        if nd < 1:
            continue
        boundary = (np.arange(nd) % ngroups) == ngroups - 1
        d = (ev[1:] - ev[:-1]).reshape(nd, -1).T  # (npix, nd)
        if line_offsets is not None:
            # Per pixel and virtual difference, the offset of its line segment, electrons.
            lo = np.asarray(line_offsets, np.float64)
            nseg = lo.shape[-1]
            yy, xx = np.divmod(np.arange(ny * nx), nx)
            line, seg = (yy, xx * nseg // nx) if line_axis == 1 else (xx, yy * nseg // ny)
            off = np.zeros((ny * nx, nd))
            for k in range(nd):
                j, kk = divmod(k, ngroups)
                if kk < ngroups - 1:
                    off[:, k] = lo[unit[j], kk, line, seg]
            d = d - off * np.where(good_gain, gain, 0.0).ravel()[:, None]
        dus = ((uv[1:] & uv[:-1]).reshape(nd, -1) & ~boundary[:, None]).T
        d = np.where(dus, d, 0.0)
        active = (good_gain & good_rn).ravel()
        s = s_all.ravel()
        flagged = np.zeros_like(dus)
        going = active.copy()
        while True:
            cur = dus & ~flagged
            cnt = cur.sum(axis=1)
            going &= cnt >= 2
            pix = np.flatnonzero(going)
            if pix.size == 0:
                break
            cp, dp, sp, kp = cur[pix], d[pix], s[pix], cnt[pix]
            tot = (dp * cp).sum(axis=1)
            big = np.where(cp, dp, -np.inf).max(axis=1)
            small = np.where(cp, dp, np.inf).min(axis=1)
            clip = kp >= 4
            lam = np.where(clip, (tot - np.where(clip, big + small, 0.0))
                           / np.where(clip, kp - 2, kp), tot / kp)
            lam = np.maximum(lam, 0.0)
            ok = (lam * (1.0 - 2.0 * c) + 2.0 * sp) > 0
            going[pix[~ok]] = False
            pix, cp, dp, sp, kp, lam = pix[ok], cp[ok], dp[ok], sp[ok], kp[ok], lam[ok]
            if pix.size == 0:
                break
            if split and neg_thresholds is not None:
                z, zsplit, first = _gls_z(dp, cp, lam, sp, c, split=True)
            else:
                z = _gls_z(dp, cp, lam, sp, c)
            az = np.abs(z)
            thr = np.array([
                _threshold(k, rejection_threshold, four_group_rejection_threshold,
                           three_group_rejection_threshold) for k in kp])
            if neg_thresholds is None:
                kstar = np.argmax(np.where(cp, az, -1.0), axis=1)
                two = kp == 2
                if np.any(two):
                    kstar[two] = np.argmax(np.where(cp[two], np.abs(dp[two]), -1.0), axis=1)
                zs = az[np.arange(pix.size), kstar]
                hit = zs > thr
            else:
                tneg = np.array([_threshold(k, *neg_thresholds) for k in kp])
                score = np.where(cp, az / np.where(z > 0, thr[:, None], tneg[:, None]), -1.0)
                zall = az
                if split and neg_thresholds is not None and score.shape[1] > 1:
                    # The split templates compete after the single differences (the kernel's
                    # order: on ties the first in this order wins).
                    sscore = np.where(zsplit > 0, zsplit / thr[:, None], -1.0)
                    score = np.concatenate([score, sscore], axis=1)
                    zall = np.concatenate([az, zsplit], axis=1)
                best = np.argmax(score, axis=1)
                zs = zall[np.arange(pix.size), best]
                hit = score[np.arange(pix.size), best] > 1.0
                nd_ = az.shape[1]
                kstar = best.copy()
                sp_ = best >= nd_
                if np.any(sp_):
                    ks = best[sp_] - nd_
                    kstar[sp_] = np.where(first[np.flatnonzero(sp_), ks], ks, ks + 1)
                # Two differences left: the larger d_k, as a positive step.
                two = kp == 2
                if np.any(two):
                    k2 = np.argmax(np.where(cp[two], dp[two], -np.inf), axis=1)
                    kstar[two] = k2
                    zs[two] = az[np.flatnonzero(two), k2]
                    hit[two] = zs[two] / thr[two] > 1.0
            going[pix[~hit]] = False
            ph, kh = pix[hit], kstar[hit]
            flagged[ph, kh] = True
            yy, xx = np.divmod(ph, nx)
            ii = np.asarray(unit)[(kh + 1) // ngroups]
            out[ii, (kh + 1) % ngroups, yy, xx] |= JUMP_DET
            zmax[ii, (kh + 1) % ngroups, yy, xx] = zs[hit]
            n_jumps += int(hit.sum())
        rest = dus & ~flagged
        with np.errstate(invalid="ignore", divide="ignore"):
            inv_gain = 1.0 / np.where(good_gain, gain, np.nan).ravel()
        for j, i in enumerate(unit):
            sl = slice(j * ngroups, j * ngroups + ngroups - 1)
            nrest = rest[:, sl].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                md = np.where(rest[:, sl], d[:, sl], 0.0).sum(axis=1) / nrest * inv_gain
            mean_diff[i] = np.where(nrest > 0, md, np.nan).reshape(ny, nx)
    for i in range(nints):
        usable = ((gdq_in[i] & BAD) == 0) & np.isfinite(data[i])
        # Neighbours of primary jumps in the flagging range.
        if flag_4_neighbors:
            gg, yy, xx = np.nonzero((zmax[i] > min_jump_to_flag_neighbors)
                                    & (zmax[i] < max_jump_to_flag_neighbors))
            for g, y, x in zip(gg, yy, xx, strict=True):
                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    y2, x2 = y + dy, x + dx
                    if 0 <= y2 < ny and 0 <= x2 < nx and not (gdq_in[i, g, y2, x2] & BAD):
                        out[i, g, y2, x2] |= JUMP_DET
        # After-jump flagging.
        n1 = int(after_jump_flag_time1 // group_time) if after_jump_flag_time1 > 0 else 0
        n2 = int(after_jump_flag_time2 // group_time) if after_jump_flag_time2 > 0 else 0
        if n1 > 0 or n2 > 0:
            raw = data[i, 1:] - data[i, :-1]
            dus3 = usable[1:] & usable[:-1]
            jump = (out[i] & JUMP_DET) != 0
            mdf = mean_diff[i].astype(np.float32).astype(np.float64)
            add = np.zeros((ngroups, ny, nx), bool)
            for g in range(1, ngroups):
                cand = jump[g] & dus3[g - 1] & np.isfinite(mdf)
                if not cand.any():
                    continue
                with np.errstate(invalid="ignore"):
                    amp = raw[g - 1] - mdf
                for nn, thr in ((n1, after_jump_flag_dn1), (n2, after_jump_flag_dn2)):
                    if nn <= 0:
                        continue
                    sel = cand & (amp >= thr)
                    for g2 in range(g + 1, min(g + nn, ngroups - 1) + 1):
                        add[g2] |= sel
            add &= (gdq_in[i] & BAD) == 0
            out[i][add] |= JUMP_DET
    # JUMP_DET is redundant where DO_NOT_USE or SATURATED is set.
    red = (out & BAD) != 0
    out[red] &= np.uint8(~JUMP_DET & 0xFF)
    return out, pdq, n_jumps, zmax, mean_diff


def line_offsets_reference(data, groupdq, gain, readnoise, *, nframes=1, frame_time=0.0,
                           group_time=1.0, minimum_groups=3, line_axis=1, line_segments=1,
                           min_pixels=32):
    """Common-mode offsets (nints, ngroups - 1, nlines, line_segments) float64 DN: for each
    difference and line segment the inverse-variance weighted mean of ``d_k - m`` (``m`` the
    pixel's mean difference without its largest and smallest when >= 4, the variance
    ``(max(m g, 0) (1 - 2c) + rn**2 g**2 / nframes) / g**2``), clipped at 5 sigma around 0,
    then at 4 sigma around that value; 0 with fewer than ``min_pixels`` pixels kept."""
    data = np.asarray(data).astype(np.float32).astype(np.float64)
    gdq = np.asarray(groupdq).astype(np.uint8)
    gain = np.asarray(gain).astype(np.float32).astype(np.float64)
    rn = np.asarray(readnoise).astype(np.float32).astype(np.float64)
    if line_axis == 2:
        data, gdq = np.swapaxes(data, 2, 3), np.swapaxes(gdq, 2, 3)
        gain, rn = gain.T, rn.T
    nints, ngroups, nl, npix = data.shape
    c = 0.0
    if nframes > 1 and frame_time > 0:
        c = min(frame_time / group_time * (nframes * nframes - 1) / (6.0 * nframes), 1.0 / 6.0)
    out = np.zeros((nints, ngroups - 1, nl, line_segments))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok_pix = np.isfinite(gain) & (gain > 0) & np.isfinite(rn) & (rn >= 0)
        for i in range(nints):
            ug = ((gdq[i] & BAD) == 0) & np.isfinite(data[i])
            du = ug[1:] & ug[:-1]
            d = np.where(du, data[i, 1:] - data[i, :-1], 0.0)
            n = du.sum(0)
            big = np.where(du, d, -np.inf).max(0)
            small = np.where(du, d, np.inf).min(0)
            tot = d.sum(0)
            m = np.where(n >= 4, (tot - big - small) / (n - 2), tot / n)
            lam = np.maximum(m * gain, 0.0)
            var = (lam * (1 - 2 * c) + (rn * gain) ** 2 / nframes) / gain ** 2
            ok = ok_pix & (ug.sum(0) >= minimum_groups) & (n >= 2) & (var > 0)
            iv = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0).astype(np.float32)
            r = ((d - m).astype(np.float32)).astype(np.float64)
            use = du & ok
            for sg in range(line_segments):
                p0, p1 = sg * npix // line_segments, (sg + 1) * npix // line_segments
                rs, ws, us = r[..., p0:p1], iv[None, :, p0:p1].astype(np.float64), use[..., p0:p1]
                off = np.zeros((ngroups - 1, nl))
                for clip2 in (25.0, 16.0):
                    e = rs - off[..., None]
                    keep = us & (e * e * ws < clip2)
                    sw = np.where(keep, ws, 0.0).sum(-1)
                    swr = np.where(keep, ws * rs, 0.0).sum(-1)
                    cnt = keep.sum(-1)
                    off = np.where((cnt >= min_pixels) & (sw > 0),
                                   swr / np.where(sw > 0, sw, 1), 0.0)
                out[i, :, :, sg] = off
    return out
