"""Slow pure-NumPy oracle for ramp fitting (OLS with optimal weighting), one pixel at a time.

Written straight from the algorithm (Fixsen et al. 2000 weights, segments split at jumps, the
reference pipeline's variance bookkeeping) so that ``jwpipe.ramp_fitting`` can be checked against
something obviously correct. It is deliberately loop-based and unoptimised: use small arrays.

Conventions (the same as ``jwpipe.ramp_fitting``):

- ``readnoise`` is the CDS read noise in DN (the READNOISE reference); the per-group read noise in
  electrons used by the formulas is ``readnoise * gain / sqrt(2 * nframes)``.
- A group is usable when its GROUPDQ is exactly 0. A segment is a run of usable groups; a group
  flagged exactly JUMP_DET just before a run is the first group of that run. Length-1 segments are
  dropped when a longer one exists (only the first is kept when all have length 1). A
  pixel-integration with no segment at all is DO_NOT_USE (the reference pipeline: slope 0, no flag).
- Segment and integration slopes are combined with read-noise-only weights (1 / var_R).
- The Poisson variance uses a median rate. ``median_mode="exposure"`` uses the mean over all
  integrations of the per-integration median rates everywhere (the reference pipeline);
  ``median_mode="integration"`` uses each integration's own median rate for the per-integration
  results (what the streaming kernel does); the exposure-level results always use the exposure one.
- Optional per-segment results (``save_opt``, the ``_fitopt``; stcal ``slope_fitter.c``):
  per fitted segment its slope, var_P, var_R (as used above), weight 1 / (var_P + var_R)^2, and
  for n >= 3 sigslope = sqrt(sum w / D), yint = (sum w x^2 sum w y - sum w x sum w x y) / D,
  sigyint = sqrt(sum w x^2 / D) (D = sum w sum w x^2 - (sum w x)^2, x the group number); for
  n = 2 sigslope = sigyint = 1.41421356 RN and yint = y_s (s + 1) - y_{s+1} s; for n = 1 zeros.
  Pedestal = y_0 - slope_int * pedestal_factor, 0 where the integration DQ has SATURATED or it
  is NaN. crmag = y_g - y_{g-1} for every group g > 0 flagged JUMP_DET (before a ZEROFRAME
  rescue). The Poisson terms use the same median rate as the per-integration results.
"""

from __future__ import annotations

import math

import numpy as np

DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4
CHARGELOSS = 128
NO_GAIN_VALUE = 1 << 19
INVALID = DO_NOT_USE | SATURATED
LARGE_VARIANCE_THRESHOLD = 1.0e6


def snr_power(snr):
    """Fixsen et al. (2000) weighting exponent for a segment signal-to-noise ratio."""
    if snr < 5.0:
        return 0.0
    if snr < 10.0:
        return 0.4
    if snr < 20.0:
        return 1.0
    if snr < 50.0:
        return 3.0
    if snr < 100.0:
        return 6.0
    return 10.0


POWERS = (0.0, 0.4, 1.0, 3.0, 6.0, 10.0)
SNR_STEPS = (5.0, 10.0, 20.0, 50.0, 100.0)


def _snr(delta, rn, gain):
    """The reference's segment S/N of a signal ``delta`` (DN); NaN stays NaN."""
    den = rn * rn + delta * gain
    if den <= 0.0 or gain == 0.0:
        return 0.0
    s = delta * gain / math.sqrt(den)
    return s if math.isnan(s) else max(s, 0.0)


def _fixsen_weight(k, length, power):
    mid = (length - 1) / 2.0
    return float(np.float32(abs((k - mid) * (1.0 / mid))) ** np.float32(power))


def _slope_coefficients(length, power):
    """c_k with slope = sum c_k y_k for the Fixsen weights of ``power`` (symmetric about mid)."""
    mid = (length - 1) / 2.0
    out = [_fixsen_weight(k, length, power) * (k - mid) for k in range(length)]
    norm = 0.0
    for k in range(length):
        norm += _fixsen_weight(k, length, power) * (k - mid) * (k - mid)
    return [v / norm for v in out]


def find_segments(gdq):
    """Return the list of (start, end) group ranges (end exclusive) of one integration."""
    segs = []
    longest = 0
    start = None
    n = len(gdq)
    for g in range(n + 1):
        good = g < n and gdq[g] == 0
        if good and start is None:
            start = g - 1 if (g > 0 and gdq[g - 1] == JUMP_DET) else g
        elif not good and start is not None:
            length = g - start
            if not (length == 1 and longest > 1):
                segs.append((start, g))
                longest = max(longest, length)
            start = None
    if len(segs) > 1:
        if longest < 2:
            segs = segs[:1]
        else:
            segs = [s for s in segs if s[1] - s[0] > 1]
    return segs


def _median_rate_integration(data, gdq, group_time):
    """Median of the clean first differences of one integration, in DN/s (NaN if none)."""
    n = len(data)
    loc = np.array([np.nan if gdq[k] & DO_NOT_USE else data[k] / group_time for k in range(n)])
    diffs = np.full(n - 1, np.nan)
    for k in range(n - 1):
        diffs[k] = np.nan if gdq[k + 1] & JUMP_DET else loc[k + 1] - loc[k]
    if np.all(np.isnan(diffs)) and not np.isnan(loc[0]):
        diffs[0] = loc[0]
    good = diffs[~np.isnan(diffs)]
    if good.size == 0:
        return math.nan
    good = np.sort(good)
    m = good.size // 2
    return float(good[m]) if good.size % 2 else float((good[m] + good[m - 1]) / 2.0)


def _seg_rnoise(length, rn, gain, group_time, timing):
    """Read-noise variance of a segment's slope (DN^2/s^2); rn is the per-group noise in e-.

    12 RN^2 / ((n^3 - n) t^2 gain^2), with n = 2 for 1- and 2-group segments, evaluated in the
    reference's order of operations.
    """
    if length <= 2:
        r = rn / (timing if length == 1 else group_time)
        return _div(12.0 * r * r, 6.0 * gain * gain)
    if gain <= 0.0 or math.isnan(gain):
        return 0.0
    r = rn / group_time
    return _div(12.0 * r * r, (float(length) ** 3 - length) * gain * gain)


def _seg_fit(y, start, length, rn, gain, group_time, timing, extra=None, power_snr="stepwise"):
    """Slope (DN/s) and the Poisson denominator k (var_P = (rate + dark) / k) of one segment.

    With ``extra`` (a dict) also the fitopt sigslope, yint and sigyint of the segment.
    """
    if extra is not None:
        extra.update(sigslope=0.0, yint=0.0, sigyint=0.0)
    if length == 1:
        return y[start] / timing, timing * gain
    if length == 2:
        if extra is not None:
            second = start + 1.0
            sig = 1.41421356 * rn
            extra.update(sigslope=sig, yint=y[start + 1] * (1.0 - second) + y[start] * second,
                         sigyint=sig)
        return (y[start + 1] - y[start]) / group_time, group_time * gain
    if power_snr == "endpoints":  # the reference pipeline
        snr = _snr(y[start + length - 1] - y[start], rn, gain)
        power = snr_power(snr)
    else:  # stepwise: up one power while the current power's slope reaches the next threshold
        index = 0
        while index < len(POWERS) - 1:
            coeff = _slope_coefficients(length, POWERS[index])
            slope = 0.0
            for k in range(length):
                slope += coeff[k] * y[start + k]
            snr = _snr(slope * (length - 1), rn, gain)
            if math.isnan(snr):
                index = len(POWERS) - 1
                break
            if snr < SNR_STEPS[index]:
                break
            index += 1
        power = POWERS[index]
    mid = (length - 1) / 2.0
    invmid = 1.0 / mid
    invrn2 = _div(1.0, rn * rn)
    sw = sx = sxx = sy = sxy = 0.0
    for k in range(length):
        # the weight is evaluated in single precision, as the reference does (powf)
        w = float(np.float32(abs((k - mid) * invmid)) ** np.float32(power)) * invrn2
        x = float(k + start)
        d = y[start + k]
        d = 0.0 if math.isnan(d) else d
        xw = x * w
        sw += w
        sx += xw
        sxx += x * xw
        sy += d * w
        sxy += d * xw
    invden = _div(1.0, sw * sxx - sx * sx)
    slope = (sw * sxy - sx * sy) * invden
    if extra is not None:
        extra.update(sigslope=_sqrt(sw * invden), yint=(sxx * sy - sx * sxy) * invden,
                     sigyint=_sqrt(sxx * invden))
    return slope / group_time, group_time * gain * (length - 1)


def _sqrt(a):
    return math.sqrt(a) if a >= 0.0 else math.nan


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def fit_pixel(data, gdq, gain, rn_cds, pixeldq, dark, group_time, frame_time, nframes,
              zeroframe=None, suppress_one_group=True, median_mode="exposure",
              clear_first_jump=False, opt=None, pedestal_factor=1.0, power_snr="stepwise"):
    """Fit one pixel: data/gdq of shape (nints, ngroups). Returns (rate, rateints) dicts.

    ``clear_first_jump`` drops a JUMP_DET flag on group 0 (leading groups were trimmed away); the
    CHARGELOSS read-noise recomputation still sees the flags as given. With ``opt`` (a dict) the
    fitopt values are put there: ``segs`` (per integration, a list of dicts per fitted segment),
    ``crmag`` (per integration, a list) and ``pedestal`` (per integration).
    """
    nints, ngroups = data.shape
    f32 = np.float32
    group_time = float(f32(group_time))
    frame_time = float(f32(frame_time))
    one_group_time = (nframes + 1.0) * frame_time / 2.0
    gain = float(f32(gain))
    rn = float(f32(float(f32(rn_cds)) * (gain / math.sqrt(2.0 * nframes))))
    dark = float(f32(dark))
    if ngroups == 1:
        suppress_one_group = False

    gdq = gdq.astype(np.uint32).copy()
    orig = gdq.copy()
    if clear_first_jump:
        gdq[:, 0] &= ~np.uint32(JUMP_DET)
    y = data.astype(np.float32).astype(np.float64)  # data are used at float32 precision
    pdq = int(pixeldq)
    if not (gain > 0.0):
        pdq |= DO_NOT_USE | NO_GAIN_VALUE

    if suppress_one_group:
        # A ramp with a single usable group is not turned into a one-group slope: that group
        # becomes DO_NOT_USE (the reference's suppress_one_group; default on).
        for i in range(nints):
            good = np.flatnonzero(gdq[i] == 0)
            if good.size == 1:
                gdq[i, good[0]] = DO_NOT_USE

    is_0th = np.zeros(nints, bool)
    is_zf = np.zeros(nints, bool)
    stats = []
    for i in range(nints):
        g = gdq[i]
        st = dict(jump=bool(np.any(g & JUMP_DET)), cl=bool(np.any(g & CHARGELOSS)),
                  good=int(np.sum(g == 0)), dnu=int(np.sum((g != 0) & ((g & DO_NOT_USE) != 0))),
                  dnusat=int(np.sum((g & INVALID) != 0)), sat=int(np.sum((g & SATURATED) != 0)))
        y[i, (g & SATURATED) != 0] = np.nan
        if opt is not None:  # before a ZEROFRAME rescue replaces group 0
            opt.setdefault("crmag", []).append(
                [y[i, k] - y[i, k - 1] for k in range(1, ngroups) if g[k] & JUMP_DET])
        if not suppress_one_group:
            if st["good"] == 1 and g[0] == 0:
                is_0th[i] = True
            elif st["good"] == 0 and zeroframe is not None and float(zeroframe[i]) != 0.0:
                y[i, 0] = float(f32(zeroframe[i]))
                g[0] = 0
                st["good"] = 1
                st["dnusat"] -= 1
                if st["sat"] == ngroups:
                    st["sat"] -= 1
                if st["dnu"] == ngroups:
                    st["dnu"] -= 1
                is_zf[i] = True
        stats.append(st)

    # median rates
    mr_int = np.zeros(nints)
    for i in range(nints):
        if ngroups == 1:
            mr_int[i] = y[i, 0] / one_group_time
            continue
        if is_0th[i]:
            m = y[i, 0] / one_group_time
        elif is_zf[i]:
            m = y[i, 0] / frame_time
        else:
            m = _median_rate_integration(y[i], gdq[i], group_time)
        mr_int[i] = 0.0 if math.isnan(m) else m
    mr_exp = float(np.sum(mr_int)) / nints

    def timing_len1(i):
        if not suppress_one_group:
            if is_0th[i]:
                return one_group_time
            if is_zf[i]:
                return frame_time
        return group_time

    def var_p(mr, k):
        return _div(mr + dark, k) if mr > 0.0 else _div(dark, k)

    ri = dict(slope=np.zeros(nints), dq=np.full(nints, pdq, dtype=np.uint32),
              var_poisson=np.zeros(nints), var_rnoise=np.zeros(nints), err=np.zeros(nints))
    acc_p = acc_r = acc_num = 0.0
    dnu_cnt = 0
    rate_dq = pdq
    for i in range(nints):
        st = stats[i]
        if st["jump"]:
            ri["dq"][i] |= JUMP_DET
            rate_dq |= JUMP_DET
        if st["sat"] > 0:
            # partial saturation is reported (informational; the slope stays valid)
            ri["dq"][i] |= SATURATED
            rate_dq |= SATURATED
        mr = mr_int[i] if median_mode == "integration" else mr_exp
        fit = True
        if gdq[i, 0] & SATURATED:
            ri["dq"][i] |= DO_NOT_USE | SATURATED
            ri["slope"][i] = np.nan
            segs = []
        else:
            segs = find_segments(gdq[i])
        if st["dnusat"] == ngroups:
            ri["dq"][i] |= DO_NOT_USE
            if st["sat"] == ngroups:
                ri["dq"][i] |= SATURATED
            fit = False
        if not segs:
            # nothing left to fit (e.g. every group flagged JUMP_DET, group 0 included): no data
            ri["dq"][i] |= DO_NOT_USE
        seg_opt = []
        if opt is not None:
            opt.setdefault("segs", []).append(seg_opt)
        if fit and segs:
            ivr = ivp = ive = num = ivp_exp = 0.0
            for (s, e) in segs:
                length = e - s
                tim = timing_len1(i) if length == 1 else group_time
                extra = {} if opt is not None else None
                slope, k = _seg_fit(y[i], s, length, rn, gain, group_time, tim, extra, power_snr)
                vr = _seg_rnoise(length, rn, gain, group_time, tim)
                vp = var_p(mr, k)
                if extra is not None:
                    w = _div(1.0, vp + vr)
                    seg_opt.append(dict(extra, slope=slope, var_poisson=vp, var_rnoise=vr,
                                        weights=w * w))
                ivr += _div(1.0, vr)
                if vp > 0.0:
                    ivp += _div(1.0, vp)
                vpe = var_p(mr_exp, k)
                if vpe > 0.0:
                    ivp_exp += _div(1.0, vpe)
                ive += _div(1.0, vp + vr)
                num += _div(slope, vr)
            if ivp > 0.0:
                ri["var_poisson"][i] = 1.0 / ivp
            if ri["var_poisson"][i] >= LARGE_VARIANCE_THRESHOLD:
                ri["var_poisson"][i] = 0.0
            ri["var_rnoise"][i] = _div(1.0, ivr)
            if ri["var_rnoise"][i] >= LARGE_VARIANCE_THRESHOLD:
                ri["var_rnoise"][i] = 0.0
            if ri["dq"][i] & DO_NOT_USE:
                ri["slope"][i] = np.nan
                ri["var_poisson"][i] = ri["var_rnoise"][i] = ri["err"][i] = 0.0
            else:
                ri["slope"][i] = _div(num, ivr)
                ve = _div(1.0, ive)
                ri["err"][i] = 0.0 if ve > LARGE_VARIANCE_THRESHOLD else _sqrt(ve)
            # exposure accumulators: the Poisson part always uses the exposure median rate
            acc_r += ivr
            acc_num += num
            acc_p += ivp_exp
        if ri["dq"][i] & DO_NOT_USE:
            dnu_cnt += 1
            ri["slope"][i] = np.nan
        if opt is not None:
            ped = y[i, 0] - ri["slope"][i] * pedestal_factor
            bad = bool(ri["dq"][i] & SATURATED) or math.isnan(ped)
            opt.setdefault("pedestal", []).append(0.0 if bad else ped)

    if dnu_cnt == nints:
        rate_dq |= DO_NOT_USE
    vp = 1.0 / acc_p if acc_p > 0.0 else 0.0
    if vp >= LARGE_VARIANCE_THRESHOLD or vp < 0.0:
        vp = 0.0
    vr = 1.0 / acc_r if acc_r > 0.0 else 0.0
    if vr >= LARGE_VARIANCE_THRESHOLD:
        vr = 0.0
    err = _sqrt(vp + vr)
    slope = _div(acc_num, acc_r)
    if rate_dq & DO_NOT_USE:
        slope, vp, vr, err = math.nan, 0.0, 0.0, 0.0

    # CHARGELOSS: recompute the read-noise variance with the CHARGELOSS groups put back.
    if np.any(orig & CHARGELOSS):
        evar = 0.0
        any_cl = False
        for i in range(nints):
            if not stats[i]["cl"]:
                if ri["var_rnoise"][i] > 0.0:
                    evar += 1.0 / ri["var_rnoise"][i]
                continue
            any_cl = True
            og = orig[i].copy()
            cl = (og & CHARGELOSS) != 0
            og[cl] ^= DO_NOT_USE | CHARGELOSS
            ivr = 0.0
            for (s, e) in find_segments(og):
                length = e - s
                tim = timing_len1(i) if length == 1 else group_time
                svr = _seg_rnoise(length, rn, gain, group_time, tim)
                if svr > 0.0:
                    ivr += 1.0 / svr
            v = _div(1.0, ivr)
            ri["var_rnoise"][i] = 0.0 if v >= LARGE_VARIANCE_THRESHOLD else v
            evar += ivr
        if any_cl:
            if evar > 0.0:
                vr = 1.0 / evar
            if vr >= LARGE_VARIANCE_THRESHOLD:
                vr = 0.0

    rate = dict(slope=slope, dq=rate_dq, var_poisson=vp, var_rnoise=vr, err=err)
    return rate, ri


OPT_SEGMENT_NAMES = ("slope", "sigslope", "var_poisson", "var_rnoise", "yint", "sigyint",
                     "weights")


def fit_ramps_reference(data, groupdq, gain, readnoise, group_time, frame_time, nframes,
                        pixeldq=None, avg_dark_current=None, zeroframe=None,
                        suppress_one_group=True, median_mode="exposure", groups=None,
                        save_opt=False, pedestal_factor=1.0, power_snr="stepwise"):
    """Fit every pixel of a (nints, ngroups, ny, nx) ramp; returns (rate, rateints) dicts of arrays.

    Outputs are float32 (slope, err, var_poisson, var_rnoise) and uint32 (dq), like the kernel.
    ``groups=(first, stop)`` fits only those groups, as if the ramp had no others (a JUMP_DET flag
    on group ``first`` is ignored when ``first > 0``). With ``save_opt`` a third dict holds the
    fitopt arrays (float32; segment axis the most segments of any pixel-integration, CR axis the
    most cosmic rays, both at least 1; unused entries 0). ``power_snr`` as for
    ``jwpipe.ramp_fitting.RampFitAccumulator`` (``"endpoints"``: the reference pipeline's).
    """
    data = np.asarray(data)
    groupdq = np.asarray(groupdq)
    first = 0
    if groups is not None:
        first, stop = groups
        data = data[:, first:stop]
        groupdq = groupdq[:, first:stop]
    nints, ngroups, ny, nx = data.shape
    gain = np.broadcast_to(np.asarray(gain, dtype=np.float32), (ny, nx))
    readnoise = np.broadcast_to(np.asarray(readnoise, dtype=np.float32), (ny, nx))
    pixeldq = np.zeros((ny, nx), np.uint32) if pixeldq is None else np.asarray(pixeldq)
    dark = np.broadcast_to(np.asarray(0.0 if avg_dark_current is None else avg_dark_current,
                                      dtype=np.float32), (ny, nx))
    names = ("slope", "err", "var_poisson", "var_rnoise")
    rate = {k: np.zeros((ny, nx), np.float32) for k in names}
    rate["dq"] = np.zeros((ny, nx), np.uint32)
    ints = {k: np.zeros((nints, ny, nx), np.float32) for k in names}
    ints["dq"] = np.zeros((nints, ny, nx), np.uint32)
    pix_opt = {} if save_opt else None
    with np.errstate(all="ignore"):
        _fit_all(data, groupdq, gain, readnoise, pixeldq, dark, group_time, frame_time, nframes,
                 zeroframe, suppress_one_group, median_mode, first, rate, ints, pix_opt,
                 pedestal_factor, power_snr)
    if not save_opt:
        return rate, ints
    nseg = max([1] + [len(v["segs"][i]) for v in pix_opt.values() for i in range(nints)])
    ncr = max([1] + [len(v["crmag"][i]) for v in pix_opt.values() for i in range(nints)])
    opt = {k: np.zeros((nints, nseg, ny, nx), np.float32) for k in OPT_SEGMENT_NAMES}
    opt["pedestal"] = np.zeros((nints, ny, nx), np.float32)
    opt["crmag"] = np.zeros((nints, ncr, ny, nx), np.float32)
    for (r, c), v in pix_opt.items():
        for i in range(nints):
            for k, seg in enumerate(v["segs"][i]):
                for name in OPT_SEGMENT_NAMES:
                    opt[name][i, k, r, c] = seg[name]
            for k, mag in enumerate(v["crmag"][i]):
                opt["crmag"][i, k, r, c] = mag
            opt["pedestal"][i, r, c] = v["pedestal"][i]
    return rate, ints, opt


def _fit_all(data, groupdq, gain, readnoise, pixeldq, dark, group_time, frame_time, nframes,
             zeroframe, suppress_one_group, median_mode, first, rate, ints, pix_opt=None,
             pedestal_factor=1.0, power_snr="stepwise"):
    ny, nx = gain.shape
    for r in range(ny):
        for c in range(nx):
            zf = None if zeroframe is None else np.asarray(zeroframe)[:, r, c]
            po = None if pix_opt is None else pix_opt.setdefault((r, c), {})
            pr, pi = fit_pixel(data[:, :, r, c], groupdq[:, :, r, c], gain[r, c], readnoise[r, c],
                               pixeldq[r, c], dark[r, c], group_time, frame_time, nframes,
                               zeroframe=zf, suppress_one_group=suppress_one_group,
                               median_mode=median_mode, clear_first_jump=first > 0, opt=po,
                               pedestal_factor=pedestal_factor, power_snr=power_snr)
            for k in rate:
                rate[k][r, c] = pr[k]
                ints[k][:, r, c] = pi[k]
