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


def _gls_z(d, cur, lam, s, c=0.0):
    """z statistics of a step in each difference, for a batch of pixels.

    d, cur : (npix, n) float64 differences (electrons) and bool usable mask.
    lam, s : (npix,) Poisson variance per difference and read variance per group.
    c : frame-averaging correlation.
    Returns z (npix, n), zero where not usable.
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
    return z


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
            z = _gls_z(dp, cp, lam, sp, c)
            az = np.abs(z)
            kstar = np.argmax(np.where(cp, az, -1.0), axis=1)
            two = kp == 2
            if np.any(two):
                kstar[two] = np.argmax(np.where(cp[two], np.abs(dp[two]), -1.0), axis=1)
            zs = az[np.arange(pix.size), kstar]
            thr = np.array([
                _threshold(k, rejection_threshold, four_group_rejection_threshold,
                           three_group_rejection_threshold) for k in kp])
            hit = zs > thr
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
