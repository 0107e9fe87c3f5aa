/* Ramp fitting: ordinary least squares with "optimal" weighting (Fixsen et al. 2000, PASP 112, 1350),
 * with the segment and variance bookkeeping of the reference JWST pipeline (stcal >= 1.19).
 *
 * One integration of one pixel at a time:
 *   - a group is usable when its GROUPDQ is exactly 0; a segment is a run of usable groups, and a
 *     group flagged exactly JUMP_DET just before the run is its first group (the jump happened
 *     between it and the previous group). SATURATED groups read as NaN. Length-1 segments are
 *     dropped when a longer one exists; if all have length 1 only the first is kept;
 *   - the Poisson variance uses a median rate: the median of the clean first differences;
 *   - a segment of n >= 3 groups is fitted with weights |(k - mid) / mid|^P / RN^2, where P comes from
 *     the segment's signal-to-noise ratio; n = 2 is the difference, n = 1 the value over its time;
 *   - var_R = 12 RN^2 / ((n^3 - n) tgroup^2 gain^2) (n = 2 for single groups), var_P = (rate + dark)
 *     / (tgroup gain (n - 1)); the integration slope is the 1/var_R-weighted mean of the segment
 *     slopes, and the exposure slope the 1/var_R-weighted mean over all segments of all
 *     integrations (read-noise-only weights, stcal >= 1.19);
 *   - CHARGELOSS groups (also DO_NOT_USE) are left out of the slope but put back for VAR_RNOISE.
 *
 * Integrations stream through in blocks: the exposure results need only per-pixel sums
 * (jw_rf_accum), completed by jw_ramp_fit_finish once the exposure-wide median rate is known (or,
 * when a block is the whole exposure, kept in a row buffer and completed row by row).
 * Per-integration results use that integration's own median rate. Everything is double precision,
 * evaluated in the reference's order of operations (except that with the stepwise power choice
 * the slope is the sum_k c_k y_k the choice computed, not the weighted sums' solution: the same
 * number to rounding); results are rounded to float32 on output.
 *
 * Work is split by rows over OpenMP threads; a row is processed in chunks of CHUNK pixels. The
 * ramp layout (groups outermost, pixels fastest) lets the common case -- every group usable --
 * run as loops over contiguous pixels that the compiler vectorises (chunk_fit); the other pixels
 * are fitted one at a time (fit_integration). Both give the same numbers. Pixels are independent,
 * so the results do not depend on the number of threads or on how integrations are blocked.
 * Arrays are C-contiguous: data/groupdq (nb, ngroups, ny, nx), images (ny, nx).
 */
/* FP exceptions are never inspected here, so let GCC evaluate both sides of a select on doubles
 * (a guarded division may then be speculated and the pixel loops vectorise). This does not change
 * any result: it permits no reassociation or contraction. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "ramp_fit.h"

/* This file is compiled once per instruction set (meson.build: the baseline, and AVX2 and
 * AVX-512F on x86-64); each build's entry points carry its suffix and ramp_fit_dispatch.c picks
 * one at run time. The arithmetic is the same IEEE operations in the same order (no FMA
 * contraction), so every variant gives bit-identical results. */
#ifndef JW_RF_SUFFIX
#define JW_RF_SUFFIX _baseline
#endif
#define JW_RF_CAT2(a, b) a##b
#define JW_RF_CAT(a, b) JW_RF_CAT2(a, b)
#define JW_RF_EXPORT(name) JW_RF_CAT(name, JW_RF_SUFFIX)
#include "dqflags.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Four doubles, for a loop written with explicit vectors (GCC's vector extensions: one AVX2 or
 * two SSE2 registers; unaligned loads and stores). */
typedef double v4d __attribute__((vector_size(32), aligned(8)));

#define NPOWER 6
#define TABLE_NMAX 64 /* segment weights are tabulated up to this length */
#define TABLE_STRIDE (TABLE_NMAX * (TABLE_NMAX + 1) / 2)

static const double POWERS[NPOWER] = {0.0, 0.4, 1.0, 3.0, 6.0, 10.0};

static const uint8_t F_DNU = (uint8_t)DQ_DO_NOT_USE;
static const uint8_t F_SAT = (uint8_t)DQ_SATURATED;
static const uint8_t F_JUMP = (uint8_t)DQ_JUMP_DET;
static const uint8_t F_CL = (uint8_t)DQ_CHARGELOSS;

/* Weighting exponent index for a segment signal-to-noise ratio (a NaN ratio gets the top one). */
static inline int power_index(double snr)
{
    if (snr < 5.0) return 0;
    if (snr < 10.0) return 1;
    if (snr < 20.0) return 2;
    if (snr < 50.0) return 3;
    if (snr < 100.0) return 4;
    return 5;
}

/* Fixsen weight of group k of a segment of len groups, before the 1/RN^2 factor. The power is taken
 * in single precision, as the reference does, so the weights agree to the bit. */
static inline float fixsen_weight(int k, int len, int p)
{
    const double mid = (double)(len - 1) / 2.0;
    const double invmid = 1.0 / mid;
    return powf((float)fabs(((double)k - mid) * invmid), (float)POWERS[p]);
}

/* Coefficients c_k of the weighted least-squares slope (DN per group) of a segment of len groups
 * with power p, slope = sum_k c_k y_k: w_k (k - mid) / sum_i w_i (i - mid)^2 (the weights are
 * symmetric about mid). Used to pick the power (power_from_slopes); written once, into out. */
static void slope_coefficients(int len, int p, double *out)
{
    const double mid = (double)(len - 1) / 2.0;
    double norm = 0.0;
    for (int k = 0; k < len; k++) {
        const double w = (double)fixsen_weight(k, len, p), dx = (double)k - mid;
        out[k] = w * dx;
        norm += w * dx * dx;
    }
    for (int k = 0; k < len; k++) out[k] /= norm;
}

/* The weight table (NPOWER blocks) followed by the slope-coefficient table (NPOWER blocks),
 * each block TABLE_STRIDE long, segment length len at offset len (len - 1) / 2. */
#define COEFF_TABLE(table) ((table) + NPOWER * TABLE_STRIDE)
#define TABLE_SIZE (2 * NPOWER * TABLE_STRIDE)

static void fill_weight_table(double *table, int nmax)
{
    for (int p = 0; p < NPOWER; p++)
        for (int len = 3; len <= nmax; len++)
            for (int k = 0; k < len; k++)
                table[p * TABLE_STRIDE + len * (len - 1) / 2 + k] = (double)fixsen_weight(k, len, p);
    for (int p = 0; p < NPOWER; p++)
        for (int len = 3; len <= nmax; len++)
            slope_coefficients(len, p, COEFF_TABLE(table) + p * TABLE_STRIDE + len * (len - 1) / 2);
}

/* Segments of one integration as [ss[i], se[i]); returns how many. */
static int find_segments(const uint8_t *q, int n, int *ss, int *se)
{
    int ns = 0, longest = 0, start = -1;
    for (int g = 0; g <= n; g++) {
        const int good = g < n && q[g] == 0;
        if (good) {
            if (start < 0) start = (g > 0 && q[g - 1] == F_JUMP) ? g - 1 : g;
        } else if (start >= 0) {
            const int len = g - start;
            if (!(len == 1 && longest > 1)) {
                ss[ns] = start;
                se[ns] = g;
                ns++;
                if (len > longest) longest = len;
            }
            start = -1;
        }
    }
    if (ns > 1) {
        if (longest < 2) {
            ns = 1;
        } else {
            int m = 0;
            for (int i = 0; i < ns; i++) {
                if (se[i] - ss[i] > 1) {
                    ss[m] = ss[i];
                    se[m] = se[i];
                    m++;
                }
            }
            ns = m;
        }
    }
    return ns;
}

/* Compare-exchange: a <= b afterwards (branch-free minsd/maxsd; inputs are not NaN). */
#define SORT2(a, b)                           \
    do {                                      \
        const double lo_ = (a) < (b) ? (a) : (b); \
        const double hi_ = (a) < (b) ? (b) : (a); \
        (a) = lo_;                            \
        (b) = hi_;                            \
    } while (0)

/* Median of 9 values (a selection network of 19 comparators; p is scrambled). */
static inline double median9(double *p)
{
    SORT2(p[1], p[2]); SORT2(p[4], p[5]); SORT2(p[7], p[8]);
    SORT2(p[0], p[1]); SORT2(p[3], p[4]); SORT2(p[6], p[7]);
    SORT2(p[1], p[2]); SORT2(p[4], p[5]); SORT2(p[7], p[8]);
    SORT2(p[0], p[3]); SORT2(p[5], p[8]); SORT2(p[4], p[7]);
    SORT2(p[3], p[6]); SORT2(p[1], p[4]); SORT2(p[2], p[5]);
    SORT2(p[4], p[7]); SORT2(p[2], p[4]); SORT2(p[4], p[6]);
    SORT2(p[2], p[4]);
    return p[4];
}

/* Indices of the m-th (and, if need_lo, the (m-1)-th) smallest of a[0..cnt) (no NaNs). */
static void rank_select(const double *a, int cnt, int m, int need_lo, int *ihi, int *ilo)
{
    *ihi = *ilo = 0;
    int found_hi = 0, found_lo = !need_lo;
    for (int i = 0; i < cnt && !(found_hi && found_lo); i++) {
        int less = 0, eq = 0;
        for (int j = 0; j < cnt; j++) {
            less += a[j] < a[i];
            eq += a[j] == a[i];
        }
        /* a[i] occupies the sorted positions [less, less + eq) */
        if (!found_hi && less <= m && m < less + eq) {
            *ihi = i;
            found_hi = 1;
        }
        if (!found_lo && less <= m - 1 && m - 1 < less + eq) {
            *ilo = i;
            found_lo = 1;
        }
    }
}

/* Median of the clean first differences, in DN/s: of y[k+1]/gt - y[k]/gt over the differences
 * whose groups are not DO_NOT_USE (nor SATURATED, which read as NaN) and whose later group is not a
 * jump. With none, group 0 over the group time (NaN if it is DO_NOT_USE). The order statistics are
 * picked on the exact raw differences y[k+1] - y[k]; the chosen ones are then evaluated in the
 * reference's arithmetic. d (n doubles), t (>= 9 doubles) and kk (n ints) are scratch. */
static double median_rate(const double *y, const uint8_t *q, int n, double gt, double *d, double *t,
                          int *kk)
{
    int cnt = 0;
    for (int k = 0; k < n - 1; k++) {
        if (((q[k] | q[k + 1]) & F_DNU) || (q[k + 1] & F_JUMP)) continue;
        const double v = y[k + 1] - y[k];
        if (v == v) {
            d[cnt] = v;
            kk[cnt] = k;
            cnt++;
        }
    }
    if (cnt == 0) return (q[0] & F_DNU) ? NAN : y[0] / gt;
    const int m = cnt >> 1;
    int ihi, ilo;
    if (cnt == 9) {
        memcpy(t, d, 9 * sizeof(double));
        const double med = median9(t);
        ihi = 0;
        while (d[ihi] != med) ihi++;
        ilo = ihi;
    } else {
        rank_select(d, cnt, m, !(cnt & 1), &ihi, &ilo);
    }
    const int khi = kk[ihi];
    const double hi = y[khi + 1] / gt - y[khi] / gt;
    if (cnt & 1) return hi;
    const int klo = kk[ilo];
    const double lo = y[klo + 1] / gt - y[klo] / gt;
    return (hi + lo) / 2.0;
}

/* Read-noise variance of a 1- or 2-group segment (t: the time its slope is divided by). */
static inline double rnoise_short(double rn, double gain, double t)
{
    double rnum = rn / t;
    rnum = 12.0 * rnum * rnum;
    double rden = 6.0;
    rden = rden * gain * gain;
    return rnum / rden;
}

static inline double rnoise_long(double rn, double gain, double gt, double len)
{
    if (gain <= 0.0 || isnan(gain)) return 0.0;
    double rnum = rn / gt;
    rnum = 12.0 * rnum * rnum;
    double rden = len * len * len - len;
    rden = rden * gain * gain;
    return rnum / rden;
}

/* S/N of a segment signal delta (DN), as the reference computes it (rn: noise of one group, e-). */
static inline double segment_snr(double delta, double rn, double gain)
{
    const double den = rn * rn + delta * gain;
    if (den <= 0.0 || gain == 0.0) return 0.0;
    const double s = delta * gain / sqrt(den);
    return (s < 0.0) ? 0.0 : s; /* NaN stays NaN */
}

static const double SNR_STEPS[NPOWER - 1] = {5.0, 10.0, 20.0, 50.0, 100.0};

/* Whether the S/N of signal delta (as segment_snr) reaches t > 0, without a square root or a
 * division (so that the chunk path vectorises; both paths use this one test): 1 yes, 0 no, -1
 * when it is NaN. */
static inline int snr_reaches(double delta, double rn, double gain, double t)
{
    const double dg = delta * gain;
    const double den = rn * rn + dg;
    const int nan = (dg != dg) | (den != den);
    const int yes = (den > 0.0) & (gain != 0.0) & (dg > 0.0) & (dg * dg >= t * t * den);
    return nan ? -1 : yes;
}

/* Slope (DN per group) of y[start, start + len) with power index p: sum_k c_k y_k (coeff: the
 * COEFF_TABLE, or NULL to compute the coefficients into cbuf). */
static double coeff_slope(const double *y, int start, int len, int p, const double *coeff,
                          double *cbuf)
{
    const double *c = cbuf;
    if (coeff != NULL) c = coeff + p * TABLE_STRIDE + len * (len - 1) / 2;
    else slope_coefficients(len, p, cbuf);
    double slope = 0.0;
    for (int k = 0; k < len; k++) slope += c[k] * y[start + k];
    return slope;
}

/* Weighting power index of y[start, start + len), len >= 3.
 *
 * endpoints (the reference): from the S/N of last - first group. That makes the fit a non-linear
 * function of the data, biased high where a ramp's S/N is near a threshold (2-4e-3 relative at
 * S/N 3-10, 1e-3 at 20 on 10-group ramps): a ramp that fluctuates high crosses to a more
 * end-weighted power and keeps its high end-to-end value, one that fluctuates low does not.
 *
 * Otherwise stepwise: start at power 0 and go up one power while the S/N of the slope fitted with
 * the current power (times len - 1) reaches the next threshold. Near each threshold that slope is
 * close to the best linear estimate, so it is nearly uncorrelated with how far the next power's
 * fit lies from it, and the choice adds no measurable bias (< 3e-4 on the same ramps). A NaN S/N
 * gives the top power either way (the reference's behaviour). coeff: the slope coefficients
 * (COEFF_TABLE) for len <= TABLE_NMAX, else NULL and cbuf (len values) is used. Stepwise, the
 * slope (DN per group) with the chosen power goes to *slope_out. */
static int choose_power(const double *y, int start, int len, double rn, double gain,
                        int endpoints, const double *coeff, double *cbuf, double *slope_out)
{
    if (endpoints) {
        const double snr = segment_snr(y[start + len - 1] - y[start], rn, gain);
        return power_index(snr);
    }
    int p = 0;
    while (p < NPOWER - 1) {
        const double slope = coeff_slope(y, start, len, p, coeff, cbuf);
        const int step = snr_reaches(slope * (double)(len - 1), rn, gain, SNR_STEPS[p]);
        if (step < 0) {
            p = NPOWER - 1;
            break;
        }
        if (!step) {
            *slope_out = slope;
            return p;
        }
        p++;
    }
    *slope_out = coeff_slope(y, start, len, p, coeff, cbuf);
    return p;
}

/* Optimally weighted least-squares slope (DN/s) of y[start, start + len), len >= 3. With fit3
 * non-NULL also the fitopt terms, from the same sums: the slope's sigma sqrt(sw / den) (per group,
 * not divided by TGROUP, as the reference stores it), the intercept at group 0 and its sigma. */
static double ols_slope(const double *y, int start, int len, double rn, double gain, double gt,
                        int endpoints, const double *table, double *wbuf, double *fit3)
{
    double cslope = NAN;
    const int p = choose_power(y, start, len, rn, gain, endpoints,
                               len <= TABLE_NMAX ? COEFF_TABLE(table) : NULL, wbuf, &cslope);
    /* The stepwise choice has the slope with the chosen power already (the same value as the
     * sums below give, to rounding); the sums are still needed for the fitopt terms, with the
     * endpoints choice, for a segment holding a NaN (which the sums read as 0), and where
     * 1/RN^2 is not finite (the sums then give NaN). */
    const int have = isfinite(cslope) && rn * rn > 0.0;
    if (have && fit3 == NULL) return cslope / gt;
    const double *w;
    if (len <= TABLE_NMAX) {
        w = table + p * TABLE_STRIDE + len * (len - 1) / 2;
    } else {
        for (int k = 0; k < len; k++) wbuf[k] = (double)fixsen_weight(k, len, p);
        w = wbuf;
    }
    const double invrn2 = 1.0 / (rn * rn);
    double sw = 0.0, sx = 0.0, sxx = 0.0, sy = 0.0, sxy = 0.0;
    for (int k = 0; k < len; k++) {
        const double weight = (double)w[k] * invrn2;
        const double x = (double)k + (double)start;
        double d = y[start + k];
        if (isnan(d)) d = 0.0;
        const double xw = x * weight;
        sw += weight;
        sx += xw;
        sxx += x * xw;
        sy += d * weight;
        sxy += d * xw;
    }
    const double invden = 1.0 / (sw * sxx - sx * sx);
    if (fit3 != NULL) {
        fit3[0] = sqrt(sw * invden);
        fit3[1] = (sxx * sy - sx * sxy) * invden;
        fit3[2] = sqrt(sxx * invden);
    }
    if (have) return cslope / gt;
    return (sw * sxy - sx * sy) * invden / gt;
}

typedef struct {
    double gt, ft, ogt;
    int suppress; /* suppress_one_group, in effect (never for 1-group ramps) */
    int endpoints; /* snr_from_endpoints */
    double ped;   /* pedestal factor ((NFRAMES + 1) / 2 + DRPFRMS1) / (NFRAMES + GROUPGAP) */
} timing_t;

typedef struct {
    double gain, rn, dark;
    uint32_t pdq; /* PIXELDQ, plus NO_GAIN_VALUE|DO_NOT_USE for an unusable gain */
} pixel_t;

typedef struct {
    double *y, *buf, *tmp;
    double *wbuf;
    uint8_t *q, *q0;
    int *ss, *se, *kk;
} scratch_t;

/* What one pixel-integration produces. */
typedef struct {
    double slope, err, vp, vr;
    uint32_t dq;
    int fitted, chargeloss;
    double rate, pden, ivr, num, ivr_cl;
} integ_t;

/* The fitopt values of one pixel-integration (save_opt): per fitted segment, in ramp order, and
 * the cosmic-ray magnitudes; arrays of cap (segments) and n (CRs) doubles. */
typedef struct {
    int nseg, ncr;
    double *slope, *sigslope, *vp, *vr, *yint, *sigyint, *weight, *crmag;
    double pedestal;
} optpix_t;

/* Group counts of one integration after the flags were prepared. */
typedef struct {
    int jump, cl, good, dnu, dnusat, sat, is0, isz;
} gstats_t;

/* The flag handling that precedes the fit: suppress_one_group, SATURATED groups to NaN, the
 * one-good-group-0 and ZEROFRAME special cases. With crmag non-NULL, the difference to the previous
 * group of every group (but the first) flagged JUMP_DET is recorded there first (before a
 * ZEROFRAME rescue replaces group 0, as the reference does), *ncr their number. */
static void prepare_integration(int n, double *y, uint8_t *q, int has_zf, double zf,
                                const timing_t *t, gstats_t *st, double *crmag, int *ncr)
{
    if (t->suppress) { /* a single usable group is not turned into a slope */
        int ngood = 0, at = 0;
        for (int g = 0; g < n; g++)
            if (q[g] == 0) {
                ngood++;
                at = g;
            }
        if (ngood == 1) q[at] = F_DNU;
    }

    int jump = 0, cl = 0, good = 0, dnu = 0, dnusat = 0, sat = 0;
    for (int g = 0; g < n; g++) {
        const uint8_t f = q[g];
        jump |= (f & F_JUMP) != 0;
        cl |= (f & F_CL) != 0;
        if (f == 0)
            good++;
        else if (f & F_DNU)
            dnu++;
        if (f & (F_DNU | F_SAT)) dnusat++;
        if (f & F_SAT) {
            y[g] = NAN;
            sat++;
        }
    }
    if (ncr != NULL) {
        int c = 0;
        for (int g = 1; g < n; g++) {
            if (!(q[g] & F_JUMP)) continue;
            if (crmag != NULL) crmag[c] = y[g] - y[g - 1];
            c++;
        }
        *ncr = c;
    }

    int is0 = 0, isz = 0;
    if (!t->suppress) {
        if (good == 1 && q[0] == 0) {
            is0 = 1; /* only group 0 is good: its slope uses the one-group time */
        } else if (good == 0 && has_zf && zf != 0.0) {
            y[0] = zf; /* ZEROFRAME rescue of a ramp saturated from group 0 */
            q[0] = 0;
            good = 1;
            dnusat--;
            if (sat == n) sat--;
            if (dnu == n) dnu--;
            isz = 1;
        }
    }
    st->jump = jump;
    st->cl = cl;
    st->good = good;
    st->dnu = dnu;
    st->dnusat = dnusat;
    st->sat = sat;
    st->is0 = is0;
    st->isz = isz;
}

/* Segments the fit uses (see fit_integration); 0 when the ramp is not fitted. */
static int fitted_segments(int n, const uint8_t *q, const gstats_t *st, int *ss, int *se)
{
    if ((q[0] & F_SAT) || st->dnusat == n) return 0;
    return find_segments(q, n, ss, se);
}

/* Fit one pixel-integration from w->y, w->q (working copy) and w->q0 (original flags). With o
 * non-NULL (save_opt) the per-segment values, CR magnitudes and pedestal are written there. */
static void fit_integration(int n, scratch_t *w, int has_zf, double zf, const pixel_t *px,
                            const timing_t *t, const double *table, integ_t *r, optpix_t *o)
{
    double *y = w->y;
    uint8_t *q = w->q;
    const double gt = t->gt, gain = px->gain, rn = px->rn, dark = px->dark;

    gstats_t st;
    prepare_integration(n, y, q, has_zf, zf, t, &st, o ? o->crmag : NULL, o ? &o->ncr : NULL);
    const int jump = st.jump, cl = st.cl, dnusat = st.dnusat, sat = st.sat;
    const int is0 = st.is0, isz = st.isz;
    const double t1 = is0 ? t->ogt : (isz ? t->ft : gt); /* time of a 1-group segment */

    double mr;
    if (n == 1 || is0)
        mr = y[0] / t->ogt;
    else if (isz)
        mr = y[0] / t->ft;
    else
        mr = median_rate(y, q, n, gt, w->buf, w->tmp, w->kk);
    if (n > 1 && isnan(mr)) mr = 0.0;
    r->rate = mr;

    uint32_t dq = px->pdq;
    if (jump) dq |= DQ_JUMP_DET;
    if (sat > 0) dq |= DQ_SATURATED; /* partial saturation is reported, the slope stays valid */
    if (q[0] & F_SAT) dq |= DQ_DO_NOT_USE | DQ_SATURATED;
    if (dnusat == n) {
        dq |= DQ_DO_NOT_USE;
        if (sat == n) dq |= DQ_SATURATED;
    }
    const int nseg = fitted_segments(n, q, &st, w->ss, w->se);
    if (o != NULL) o->nseg = nseg;
    /* No group left to fit: no data, like an all-DO_NOT_USE ramp. The reference agrees when the
     * one good group was suppressed; when group 0 itself is flagged it reports 0 +- 0 without
     * DO_NOT_USE, which reads as a perfect measurement. */
    if (nseg == 0) dq |= DQ_DO_NOT_USE;

    double slope = 0.0, err = 0.0, vp = 0.0, vr = 0.0;
    r->fitted = 0;
    r->ivr = 0.0;
    if (nseg > 0) {
        double ivr = 0.0, ivp = 0.0, ive = 0.0, num = 0.0, pden_sum = 0.0;
        for (int s = 0; s < nseg; s++) {
            const int start = w->ss[s], len = w->se[s] - w->ss[s];
            double seg_slope, pden, seg_vr;
            double fit3[3] = {0.0, 0.0, 0.0}; /* sigslope, yint, sigyint: 0 for 1 group */
            if (len == 1) {
                seg_slope = y[start] / t1;
                pden = t1 * gain;
                seg_vr = rnoise_short(rn, gain, t1);
            } else if (len == 2) {
                seg_slope = (y[start + 1] - y[start]) / gt;
                pden = gt * gain;
                seg_vr = rnoise_short(rn, gain, gt);
                if (o != NULL) { /* the reference's 2-group conventions (its sqrt(2) constant) */
                    const double second = (double)start + 1.0;
                    fit3[0] = 1.41421356 * rn;
                    fit3[1] = y[start + 1] * (1.0 - second) + y[start] * second;
                    fit3[2] = fit3[0];
                }
            } else {
                seg_slope = ols_slope(y, start, len, rn, gain, gt, t->endpoints, table, w->wbuf,
                                      o ? fit3 : NULL);
                pden = gt * gain * ((double)len - 1.0);
                seg_vr = rnoise_long(rn, gain, gt, (double)len);
            }
            const double seg_vp = (mr > 0.0) ? (mr + dark) / pden : dark / pden;
            if (o != NULL) {
                const double inv_ve = 1.0 / (seg_vp + seg_vr);
                o->slope[s] = seg_slope;
                o->sigslope[s] = fit3[0];
                o->yint[s] = fit3[1];
                o->sigyint[s] = fit3[2];
                o->vp[s] = seg_vp;
                o->vr[s] = seg_vr;
                o->weight[s] = inv_ve * inv_ve;
            }
            ivr += 1.0 / seg_vr;
            if (seg_vp > 0.0) ivp += 1.0 / seg_vp;
            ive += 1.0 / (seg_vp + seg_vr);
            num += seg_slope / seg_vr;
            pden_sum += pden;
        }
        if (ivp > 0.0) vp = 1.0 / ivp;
        if (vp >= JW_RF_LARGE_VARIANCE) vp = 0.0;
        vr = 1.0 / ivr;
        if (vr >= JW_RF_LARGE_VARIANCE) vr = 0.0;
        if (dq & DQ_DO_NOT_USE) {
            vp = vr = err = 0.0;
        } else {
            const double ve = 1.0 / ive;
            slope = num / ivr;
            err = (ve > JW_RF_LARGE_VARIANCE) ? 0.0 : sqrt(ve);
        }
        r->fitted = 1;
        r->pden = pden_sum;
        r->ivr = ivr;
        r->num = num;
    }
    if (dq & DQ_DO_NOT_USE) slope = NAN;

    /* CHARGELOSS: the read-noise variance counts the CHARGELOSS groups again (flags as they came in,
     * CHARGELOSS|DO_NOT_USE toggled off). */
    r->chargeloss = cl;
    if (cl) {
        uint8_t *q0 = w->q0;
        for (int g = 0; g < n; g++)
            if (q0[g] & F_CL) q0[g] ^= (uint8_t)(F_DNU | F_CL);
        const int ns = find_segments(q0, n, w->ss, w->se);
        double ivr = 0.0;
        for (int s = 0; s < ns; s++) {
            const int len = w->se[s] - w->ss[s];
            const double v = (len == 1)   ? rnoise_short(rn, gain, t1)
                             : (len == 2) ? rnoise_short(rn, gain, gt)
                                          : rnoise_long(rn, gain, gt, (double)len);
            if (v > 0.0) ivr += 1.0 / v;
        }
        vr = 1.0 / ivr;
        if (vr >= JW_RF_LARGE_VARIANCE) vr = 0.0;
        r->ivr_cl = ivr;
    } else {
        /* 1/VAR_RNOISE of this integration (the sum itself: equal to within a double ulp) */
        r->ivr_cl = (vr > 0.0) ? r->ivr : 0.0;
    }

    r->slope = slope;
    r->err = err;
    r->vp = vp;
    r->vr = vr;
    r->dq = dq;
    if (o != NULL) { /* group 0 extrapolated back by the slope; 0 when saturated or undefined */
        const double ped = y[0] - slope * t->ped;
        o->pedestal = ((dq & DQ_SATURATED) || isnan(ped)) ? 0.0 : ped;
    }
}

/* The 2-D inputs of one image row, read noise already in electrons per group. */
typedef struct {
    const float *gain, *rnoise, *dark;
    const uint32_t *pixeldq;
} row_t;

/* Per-thread row buffers: the row's read noise in electrons, and constant dark/PIXELDQ rows. */
typedef struct {
    float *rn, *dark;
    uint32_t *pdq;
} rowbuf_t;

static int rowbuf_alloc(rowbuf_t *b, const jw_rf_setup *s)
{
    const size_t nx = (size_t)s->nx;
    b->rn = (float *)malloc(nx * sizeof(float));
    b->dark = s->dark ? NULL : (float *)malloc(nx * sizeof(float));
    b->pdq = s->pixeldq ? NULL : (uint32_t *)calloc(nx, sizeof(uint32_t));
    if (!b->rn || (!s->dark && !b->dark) || (!s->pixeldq && !b->pdq)) return JW_ERR_ALLOC;
    if (b->dark)
        for (size_t x = 0; x < nx; x++) b->dark[x] = (float)s->dark_value;
    return JW_OK;
}

static void rowbuf_free(rowbuf_t *b)
{
    free(b->rn);
    free(b->dark);
    free(b->pdq);
}

/* Row r0/nx of the inputs. With need_rn, the read noise of one group in electrons,
 * readnoise * (gain / sqrt(2 nframes)) rounded to float32, as the reference prepares it. */
static row_t row_prepare(const jw_rf_setup *s, size_t r0, rowbuf_t *b, int need_rn)
{
    row_t rw;
    rw.gain = s->gain + r0;
    rw.dark = s->dark ? s->dark + r0 : b->dark;
    rw.pixeldq = s->pixeldq ? s->pixeldq + r0 : b->pdq;
    rw.rnoise = b->rn;
    if (need_rn) {
        const double sqrt2n = sqrt(2.0 * (double)s->nframes);
        const float *restrict rn = s->readnoise + r0, *restrict g = s->gain + r0;
        float *restrict out = b->rn;
        for (long x = 0; x < s->nx; x++) out[x] = (float)((double)rn[x] * ((double)g[x] / sqrt2n));
    }
    return rw;
}

static inline void load_pixel(const row_t *rw, size_t x, pixel_t *px)
{
    px->gain = (double)rw->gain[x];
    px->rn = (double)rw->rnoise[x];
    px->dark = (double)rw->dark[x];
    px->pdq = rw->pixeldq[x];
    if (px->gain <= 0.0 || isnan(px->gain)) px->pdq |= DQ_DO_NOT_USE | DQ_NO_GAIN_VALUE;
}

static int setup_ok(const jw_rf_setup *s)
{
    return s->ngroups >= 1 && s->first >= 0 && s->stop > s->first && s->stop <= s->ngroups &&
           s->ny >= 0 && s->nx >= 0 && s->nframes >= 1 && s->gain && s->readnoise;
}

/* ------------------------------------------------------------------------------------------
 * Chunk path. A chunk is CHUNK consecutive pixels of a row in one integration; the ramp layout
 * (groups outermost, pixels fastest) makes every step below a loop over contiguous pixels that the
 * compiler vectorises. Pixels whose groups are all usable (GROUPDQ 0, finite data) are fitted here
 * with exactly the arithmetic of fit_integration for one segment; the others go through
 * fit_integration one by one. */

#define CHUNK 128
#define MAXNET 32 /* longest ramp (in first differences) the chunk path sorts */
#define PREFETCH_AHEAD 2 /* chunks ahead that chunk_fit prefetches */
#define SWEEP_POWERS 4 /* slopes computed together by power_sweep: most pixels stop by then */

typedef struct {
    int cnt;      /* first differences per ramp (n - 1) */
    int ncomp;    /* comparators */
    int *a, *b;   /* comparator (a[i], b[i]) puts the smaller value at a[i] */
} sortnet_t;

/* Batcher's odd-even merge sort for the next power of two, minus the comparators that only touch
 * positions >= cnt (they would only ever compare +inf padding). */
static int sortnet_build(sortnet_t *net, int cnt)
{
    int P = 1;
    while (P < cnt) P <<= 1;
    int cap = 0;
    for (int p = 1; p < P; p <<= 1) cap += P * 8;
    net->cnt = cnt;
    net->ncomp = 0;
    net->a = (int *)malloc((size_t)(cap + 1) * sizeof(int));
    net->b = (int *)malloc((size_t)(cap + 1) * sizeof(int));
    if (!net->a || !net->b) return JW_ERR_ALLOC;
    for (int p = 1; p < P; p <<= 1)
        for (int k = p; k >= 1; k >>= 1)
            for (int j = k % p; j + k <= P - 1; j += 2 * k)
                for (int i = 0; i < k; i++)
                    if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < cnt) {
                        net->a[net->ncomp] = i + j;
                        net->b[net->ncomp] = i + j + k;
                        net->ncomp++;
                    }
    return JW_OK;
}

typedef struct {
    double *Y;  /* [n][CHUNK] data */
    double *D;  /* [cnt][CHUNK] raw first differences */
    double *T;  /* [cnt][CHUNK] sorted differences */
    double *mr, *slope, *sw, *sx, *sxx, *sy, *sxy, *invrn2, *tmp, *pw, *mr2; /* [CHUNK] each */
    double *S;  /* [SWEEP_POWERS][CHUNK] slopes of the first powers (ols_power) */
    uint8_t *clean;
} chunk_t;

static int chunk_alloc(chunk_t *c, int n)
{
    const int cnt = n > 1 ? n - 1 : 1;
    double *blk = (double *)malloc(((size_t)(n + 2 * cnt) + 11 + SWEEP_POWERS) * CHUNK *
                                   sizeof(double));
    c->clean = (uint8_t *)malloc(CHUNK);
    if (!blk || !c->clean) {
        free(blk);
        return JW_ERR_ALLOC;
    }
    c->Y = blk;
    c->D = c->Y + (size_t)n * CHUNK;
    c->T = c->D + (size_t)cnt * CHUNK;
    double *v = c->T + (size_t)cnt * CHUNK;
    c->mr = v;
    c->slope = v + 1 * CHUNK;
    c->sw = v + 2 * CHUNK;
    c->sx = v + 3 * CHUNK;
    c->sxx = v + 4 * CHUNK;
    c->sy = v + 5 * CHUNK;
    c->sxy = v + 6 * CHUNK;
    c->invrn2 = v + 7 * CHUNK;
    c->tmp = v + 8 * CHUNK;
    c->pw = v + 9 * CHUNK;
    c->mr2 = v + 10 * CHUNK;
    c->S = v + 11 * CHUNK;
    return JW_OK;
}

static void chunk_free(chunk_t *c)
{
    free(c->Y);
    free(c->clean);
}

/* Exact median-rate value of first difference k: as the reference evaluates it. */
static inline double diff_rate(const double *Y, int k, long x, double gt)
{
    return Y[(size_t)(k + 1) * CHUNK + x] / gt - Y[(size_t)k * CHUNK + x] / gt;
}

/* For each pixel, the first difference k whose raw value equals val[x], evaluated as the reference
 * does: y[k+1]/gt - y[k]/gt. Uses c->tmp, c->pw and c->invrn2 as scratch. */
static void diff_rates_at(chunk_t *c, int cnt, long wdt, double gt, const double *restrict val,
                          double *restrict out)
{
    double *restrict kd = c->pw, *restrict a = c->tmp, *restrict b = c->invrn2;
    const double *restrict D = c->D, *restrict Y = c->Y;
    for (long x = 0; x < wdt; x++) kd[x] = 0.0;
    for (int k = cnt - 1; k > 0; k--) {
        const double *restrict d = D + (size_t)k * CHUNK;
        const double kv = (double)k;
        for (long x = 0; x < wdt; x++) kd[x] = (d[x] == val[x]) ? kv : kd[x];
    }
    for (long x = 0; x < wdt; x++) {
        const size_t k = (size_t)kd[x];
        a[x] = Y[k * CHUNK + x];
        b[x] = Y[(k + 1) * CHUNK + x];
    }
    for (long x = 0; x < wdt; x++) out[x] = b[x] / gt - a[x] / gt;
}

/* diff_rates_at for one pixel x and value v, in registers: the groups of the smallest k >= 1
 * whose difference equals v, else of k = 0 (the same choice), and their exact rate. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline double rate_of_value(const double *restrict D, const double *restrict Y, long x,
                                   int cnt, double v, double gt)
{
    double a = Y[x], b = Y[CHUNK + x];
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (int k = cnt - 1; k > 0; k--) {
        const int hit = D[(size_t)k * CHUNK + x] == v;
        a = hit ? Y[(size_t)k * CHUNK + x] : a;
        b = hit ? Y[(size_t)(k + 1) * CHUNK + x] : b;
    }
    return b / gt - a / gt;
}

/* Median rates of the chunk's clean pixels into c->mr (garbage elsewhere). */
static void chunk_median(chunk_t *c, int n, long wdt, double gt, const sortnet_t *net)
{
    const int cnt = n - 1, m = cnt >> 1;
    double *restrict D = c->D, *restrict T = c->T, *restrict mr = c->mr;
    const double *restrict Y = c->Y;
    for (int k = 0; k < cnt; k++) {
        const double *restrict y0 = Y + (size_t)k * CHUNK, *restrict y1 = y0 + CHUNK;
        double *restrict d = D + (size_t)k * CHUNK;
        for (long x = 0; x < wdt; x++) d[x] = y1[x] - y0[x];
    }
    if (cnt == 1) {
        for (long x = 0; x < wdt; x++) mr[x] = diff_rate(Y, 0, x, gt);
        return;
    }
    if (cnt == 2) {
        for (long x = 0; x < wdt; x++) mr[x] = (diff_rate(Y, 0, x, gt) + diff_rate(Y, 1, x, gt)) / 2.0;
        return;
    }
    /* 10- and 5-group ramps: sorting networks and the exact rates in registers. */
    if (cnt == 9) { /* the 19-comparator median network */
        for (long x = 0; x < wdt; x++) {
            double p0 = D[x], p1 = D[CHUNK + x], p2 = D[2 * CHUNK + x];
            double p3 = D[3 * CHUNK + x], p4 = D[4 * CHUNK + x], p5 = D[5 * CHUNK + x];
            double p6 = D[6 * CHUNK + x], p7 = D[7 * CHUNK + x], p8 = D[8 * CHUNK + x];
            SORT2(p1, p2); SORT2(p4, p5); SORT2(p7, p8);
            SORT2(p0, p1); SORT2(p3, p4); SORT2(p6, p7);
            SORT2(p1, p2); SORT2(p4, p5); SORT2(p7, p8);
            SORT2(p0, p3); SORT2(p5, p8); SORT2(p4, p7);
            SORT2(p3, p6); SORT2(p1, p4); SORT2(p2, p5);
            SORT2(p4, p7); SORT2(p2, p4); SORT2(p4, p6);
            SORT2(p2, p4);
            mr[x] = rate_of_value(D, Y, x, 9, p4, gt);
        }
        return;
    }
    if (cnt == 4) { /* the middle two of a 5-comparator sort */
        for (long x = 0; x < wdt; x++) {
            double p0 = D[x], p1 = D[CHUNK + x], p2 = D[2 * CHUNK + x], p3 = D[3 * CHUNK + x];
            SORT2(p0, p1); SORT2(p2, p3); SORT2(p0, p2); SORT2(p1, p3); SORT2(p1, p2);
            mr[x] = (rate_of_value(D, Y, x, 4, p2, gt) + rate_of_value(D, Y, x, 4, p1, gt)) / 2.0;
        }
        return;
    }
    memcpy(T, D, (size_t)cnt * CHUNK * sizeof(double));
    for (int i = 0; i < net->ncomp; i++) {
        double *restrict ta = T + (size_t)net->a[i] * CHUNK;
        double *restrict tb = T + (size_t)net->b[i] * CHUNK;
        for (long x = 0; x < wdt; x++) SORT2(ta[x], tb[x]);
    }
    /* Locate the chosen order statistics among the differences and evaluate them exactly. */
    const double *restrict tm = T + (size_t)m * CHUNK, *restrict tl = tm - CHUNK;
    /* Short ramps: with cnt a constant the search unrolls into selects that vectorise over x
     * (measured faster up to 8 differences, slower from about 12). */
#define MEDIAN_RATES(C)                                                                          \
    case C:                                                                                      \
        for (long x = 0; x < wdt; x++)                                                           \
            mr[x] = (C & 1) ? rate_of_value(D, Y, x, C, tm[x], gt)                               \
                            : (rate_of_value(D, Y, x, C, tm[x], gt)                              \
                               + rate_of_value(D, Y, x, C, tl[x], gt)) / 2.0;                    \
        return;
    switch (cnt) {
        MEDIAN_RATES(3) MEDIAN_RATES(5) MEDIAN_RATES(6) MEDIAN_RATES(7) MEDIAN_RATES(8)
        default: break;
    }
#undef MEDIAN_RATES
    diff_rates_at(c, cnt, wdt, gt, tm, mr);
    if (!(cnt & 1)) {
        double *lo = c->sw; /* free here */
        diff_rates_at(c, cnt, wdt, gt, tl, lo);
        for (long x = 0; x < wdt; x++) mr[x] = (mr[x] + lo[x]) / 2.0;
    }
}

/* Slopes (DN per group) of whole ramps with power index p into out: sum_k c_k y_k, the arithmetic
 * of coeff_slope. */
static void power_slopes(long wdt, const double *restrict Y, int n, int p, const double *table,
                         double *restrict out)
{
    const double *c = COEFF_TABLE(table) + p * TABLE_STRIDE + n * (n - 1) / 2;
    for (long x = 0; x < wdt; x++) out[x] = 0.0 + c[0] * Y[x];
    for (int k = 1; k < n; k++) {
        const double ck = c[k];
        const double *restrict yk = Y + (size_t)k * CHUNK;
        for (long x = 0; x < wdt; x++) out[x] += ck * yk[x];
    }
}

/* Slopes (DN per group) of whole ramps with each of the powers 0 .. SWEEP_POWERS - 1 into
 * S[p * CHUNK + x], in one pass over the groups: the arithmetic of coeff_slope, with the sums kept
 * in registers (a pass per power would store and reload them at every group). */
static void power_sweep(long wdt, const double *restrict Y, int n, const double *table,
                        double *restrict S)
{
    const double *c[SWEEP_POWERS];
    for (int p = 0; p < SWEEP_POWERS; p++)
        c[p] = COEFF_TABLE(table) + p * TABLE_STRIDE + n * (n - 1) / 2;
    long x = 0;
    for (; x + 4 <= wdt; x += 4) {
        const v4d y0 = *(const v4d *)(Y + x);
        v4d s[SWEEP_POWERS];
        for (int p = 0; p < SWEEP_POWERS; p++) s[p] = 0.0 + c[p][0] * y0;
        for (int k = 1; k < n; k++) {
            const v4d yk = *(const v4d *)(Y + (size_t)k * CHUNK + x);
            for (int p = 0; p < SWEEP_POWERS; p++) s[p] += c[p][k] * yk;
        }
        for (int p = 0; p < SWEEP_POWERS; p++) *(v4d *)(S + (size_t)p * CHUNK + x) = s[p];
    }
    for (; x < wdt; x++)
        for (int p = 0; p < SWEEP_POWERS; p++) {
            double v = 0.0 + c[p][0] * Y[x];
            for (int k = 1; k < n; k++) v += c[p][k] * Y[(size_t)k * CHUNK + x];
            S[(size_t)p * CHUNK + x] = v;
        }
}

/* Weighting power index of whole ramps of n >= 3 groups (Y: group k of the chunk at Y + k * CHUNK),
 * as choose_power with the same arithmetic, evaluated group-major so that it vectorises; each
 * further power's slope is only computed while some pixel of the chunk needs it. Stepwise, also
 * each pixel's slope (DN per group) with its power into fin, as choose_power gives it. gd, rn2:
 * scratch. */
static void ols_power(long wdt, const double *restrict Y, int n, int endpoints,
                      const double *table, const float *restrict gain,
                      const float *restrict rnoise, double *restrict pw, double *restrict fin,
                      double *restrict sweep, double *restrict spare, double *restrict gd,
                      double *restrict rn2)
{
    if (endpoints) {
        const double *restrict yl = Y + (size_t)(n - 1) * CHUNK;
        for (long x = 0; x < wdt; x++) {
            const double snr = segment_snr(yl[x] - Y[x], (double)rnoise[x], (double)gain[x]);
            pw[x] = 5.0 - (snr < 100.0) - (snr < 50.0) - (snr < 20.0) - (snr < 10.0) - (snr < 5.0);
        }
        return;
    }
    /* The pixel terms of the S/N test, converted once rather than at every power. */
    for (long x = 0; x < wdt; x++) {
        const double g = (double)gain[x], rn = (double)rnoise[x];
        gd[x] = g;
        rn2[x] = rn * rn;
        pw[x] = 0.0;
    }
    const double top = (double)(NPOWER - 1), nm1 = (double)(n - 1);
    long climbing = wdt, at_top = 0;
    power_sweep(wdt, Y, n, table, sweep);
    for (int p = 0; p < NPOWER - 1 && climbing > 0; p++) {
        if (p >= SWEEP_POWERS) power_slopes(wdt, Y, n, p, table, spare);
        const double *restrict slope = p < SWEEP_POWERS ? sweep + (size_t)p * CHUNK : spare;
        climbing = 0;
        at_top = 0;
        const double at = (double)p, t2 = SNR_STEPS[p] * SNR_STEPS[p];
        for (long x = 0; x < wdt; x++) { /* snr_reaches, written out to vectorise */
            const double g = gd[x];
            const double dg = slope[x] * nm1 * g;
            const double den = rn2[x] + dg;
            const int nan = (dg != dg) | (den != den);
            const int yes = (den > 0.0) & (g != 0.0) & (dg > 0.0) & (dg * dg >= t2 * den);
            const int here = pw[x] == at;
            const int up = here & yes & !nan;
            const double next = (here & nan) ? top : pw[x] + (double)up;
            fin[x] = here ? slope[x] : fin[x]; /* final unless the pixel moves up */
            pw[x] = next;
            climbing += up;
            at_top += next == top;
        }
    }
    if (at_top > 0) { /* the top power's slope, for the pixels that reached it */
        power_slopes(wdt, Y, n, NPOWER - 1, table, spare);
        for (long x = 0; x < wdt; x++) fin[x] = pw[x] == top ? spare[x] : fin[x];
    }
}

/* Add groups k and k + 1 (weights wa, wb, already divided by RN^2) to the weighted sums, in the
 * order the one-group-at-a-time loop would. */
static void ols_accumulate2(long wdt, double ka, const double *restrict wa,
                            const double *restrict ya, const double *restrict wb,
                            const double *restrict yb, double *restrict sw, double *restrict sx,
                            double *restrict sxx, double *restrict sy, double *restrict sxy)
{
    const double kb = ka + 1.0;
    for (long x = 0; x < wdt; x++) {
        const double xwa = ka * wa[x], xwb = kb * wb[x];
        sw[x] = (sw[x] + wa[x]) + wb[x];
        sx[x] = (sx[x] + xwa) + xwb;
        sxx[x] = (sxx[x] + ka * xwa) + kb * xwb;
        sy[x] = (sy[x] + ya[x] * wa[x]) + yb[x] * wb[x];
        sxy[x] = (sxy[x] + ya[x] * xwa) + yb[x] * xwb;
    }
}

static void ols_accumulate1(long wdt, double ka, const double *restrict wa,
                            const double *restrict ya, double *restrict sw, double *restrict sx,
                            double *restrict sxx, double *restrict sy, double *restrict sxy)
{
    for (long x = 0; x < wdt; x++) {
        const double xwa = ka * wa[x];
        sw[x] += wa[x];
        sx[x] += xwa;
        sxx[x] += ka * xwa;
        sy[x] += ya[x] * wa[x];
        sxy[x] += ya[x] * xwa;
    }
}

/* weights of group k for each pixel: table value for its power, over RN^2 */
static void ols_weights(long wdt, const double *restrict wk, const double *restrict pw,
                        const double *restrict invrn2, double *restrict out)
{
    for (long x = 0; x < wdt; x++) out[x] = wk[(int)pw[x] * TABLE_STRIDE] * invrn2[x];
}

static void ols_solve(long wdt, double gt, const double *restrict sw, const double *restrict sx,
                      const double *restrict sxx, const double *restrict sy,
                      const double *restrict sxy, double *restrict slope)
{
    for (long x = 0; x < wdt; x++) {
        const double invden = 1.0 / (sw[x] * sxx[x] - sx[x] * sx[x]);
        slope[x] = (sw[x] * sxy[x] - sx[x] * sy[x]) * invden / gt;
    }
}

/* Slopes (DN/s) of whole ramps of n >= 3 groups into c->slope. Returns an array that is
 * non-finite exactly where some group value is NaN or infinite. */
static const double *chunk_ols(chunk_t *c, int n, long wdt, const float *gain,
                               const float *rnoise, double gt, int endpoints, const double *table)
{
    const double *Y = c->Y;
    double *rn2 = c->mr2; /* RN^2 from ols_power (stepwise) */
    ols_power(wdt, Y, n, endpoints, table, gain, rnoise, c->pw, c->slope, c->S, c->invrn2, c->tmp,
              rn2);
    if (!endpoints) {
        /* The slopes came with the powers, non-finite where some y_k is (0 * NaN and 0 * inf are
         * NaN); NaN where 1/RN^2 is not finite, as the weighted sums give. */
        for (long x = 0; x < wdt; x++) c->slope[x] = rn2[x] > 0.0 ? c->slope[x] / gt : NAN;
        return c->slope;
    }
    for (long x = 0; x < wdt; x++) {
        const double rn = (double)rnoise[x];
        c->invrn2[x] = 1.0 / (rn * rn);
    }
    for (long x = 0; x < wdt; x++) c->sw[x] = c->sx[x] = c->sxx[x] = c->sy[x] = c->sxy[x] = 0.0;
    const double *wrow = table + (size_t)n * (size_t)(n - 1) / 2;
    double *wa = c->tmp, *wb = c->mr2;
    int k = 0;
    for (; k + 1 < n; k += 2) {
        ols_weights(wdt, wrow + k, c->pw, c->invrn2, wa);
        ols_weights(wdt, wrow + k + 1, c->pw, c->invrn2, wb);
        ols_accumulate2(wdt, (double)k, wa, Y + (size_t)k * CHUNK, wb, Y + (size_t)(k + 1) * CHUNK,
                        c->sw, c->sx, c->sxx, c->sy, c->sxy);
    }
    if (k < n) {
        ols_weights(wdt, wrow + k, c->pw, c->invrn2, wa);
        ols_accumulate1(wdt, (double)k, wa, Y + (size_t)k * CHUNK, c->sw, c->sx, c->sxx, c->sy,
                        c->sxy);
    }
    ols_solve(wdt, gt, c->sw, c->sx, c->sxx, c->sy, c->sxy, c->slope);
    /* sum of w y: w > 0 except one middle group, and 0 * NaN or 0 * inf is NaN */
    return c->sy;
}

/* Segment slope, Poisson denominator and read-noise variance of whole 2-group ramps. */
static void seg_two(long wdt, double gt, const double *restrict y0, const double *restrict y1,
                    const float *restrict gain, const float *restrict rnoise,
                    double *restrict slope, double *restrict pden, double *restrict vr)
{
    for (long x = 0; x < wdt; x++) {
        const double g = (double)gain[x];
        slope[x] = (y1[x] - y0[x]) / gt;
        pden[x] = gt * g;
        vr[x] = rnoise_short((double)rnoise[x], g, gt);
    }
}

static void seg_long(long wdt, double gt, int n, const float *restrict gain,
                     const float *restrict rnoise, double *restrict pden, double *restrict vr)
{
    const double nm1 = (double)n - 1.0, len = (double)n;
    for (long x = 0; x < wdt; x++) {
        const double g = (double)gain[x];
        pden[x] = gt * g * nm1;
        double rnum = (double)rnoise[x] / gt;
        rnum = 12.0 * rnum * rnum;
        const double rden = len * len * len - len;
        const double v = rnum / (rden * g * g);
        vr[x] = ((g <= 0.0) | (g != g)) ? 0.0 : v;
    }
}

/* Results of one-segment ramps (the arithmetic of fit_integration), written for every pixel of the
 * chunk; the sums are only added where use[x] is 1. */
static void chunk_results(long wdt, const double *restrict mrv, const double *restrict slv,
                          const double *restrict pdv, const double *restrict vrv,
                          const float *restrict dark, const double *restrict badv,
                          const double *restrict use, float *restrict o_slope,
                          float *restrict o_err, float *restrict o_vp, float *restrict o_vr,
                          double *restrict a_rate, double *restrict a_pden,
                          double *restrict a_ivr, double *restrict a_num, double *restrict a_cl)
{
    /* Every operation is evaluated unconditionally and the results selected, so that the loop
     * vectorises (a conditional division or square root could trap and would not be speculated). */
    for (long x = 0; x < wdt; x++) {
        const double mr = (mrv[x] != mrv[x]) ? 0.0 : mrv[x];
        const double dk = (double)dark[x], pden = pdv[x], seg_vr = vrv[x];
        const double with_rate = mr + dk;
        const double seg_vp = ((mr > 0.0) ? with_rate : dk) / pden;
        const double ivr = 1.0 / seg_vr;
        const double inv_vp = 1.0 / seg_vp;
        const double ivp = (seg_vp > 0.0) ? inv_vp : 0.0;
        const double ive = 1.0 / (seg_vp + seg_vr);
        const double num = slv[x] / seg_vr;
        const double inv_ivp = 1.0 / ivp;
        double vp = (ivp > 0.0) ? inv_ivp : 0.0;
        vp = (vp >= JW_RF_LARGE_VARIANCE) ? 0.0 : vp;
        double vr = 1.0 / ivr;
        vr = (vr >= JW_RF_LARGE_VARIANCE) ? 0.0 : vr;
        const double ve = 1.0 / ive;
        const double sq = sqrt(ve);
        double slope = num / ivr;
        double err = (ve > JW_RF_LARGE_VARIANCE) ? 0.0 : sq;
        const int bad = badv[x] != 0.0;
        slope = bad ? NAN : slope;
        vp = bad ? 0.0 : vp;
        vr = bad ? 0.0 : vr;
        err = bad ? 0.0 : err;
        o_slope[x] = (float)slope;
        o_err[x] = (float)err;
        o_vp[x] = (float)vp;
        o_vr[x] = (float)vr;
        const int u = use[x] != 0.0;
        a_rate[x] += u ? mr : 0.0;
        a_pden[x] += u ? pden : 0.0;
        a_ivr[x] += u ? ivr : 0.0;
        a_num[x] += u ? num : 0.0;
        a_cl[x] += (u & (vr > 0.0)) ? ivr : 0.0;
    }
}

/* Fit the clean pixels of a chunk (pixels [x0, x0 + wdt) of a row) and write their results.
 * rw holds the row's 2-D inputs and arow its sums, both from the row start. Returns how many pixels
 * were left for fit_integration (c->clean is 0 there). */
static long chunk_fit(const row_t *rw, const timing_t *t, const double *table,
                      const sortnet_t *net, int n, long x0, long wdt, const float *dp,
                      const uint8_t *qp, size_t npix, chunk_t *c, const jw_rf_image *orow,
                      const jw_rf_accum *arow)
{
    double *Y = c->Y;
    uint8_t *clean = c->clean;
    for (long x = 0; x < wdt; x++) clean[x] = 0;
    for (int g = 0; g < n; g++) {
        const float *restrict src = dp + (size_t)g * npix;
        const uint8_t *restrict qs = qp + (size_t)g * npix;
        double *restrict yg = Y + (size_t)g * CHUNK;
#if defined(__GNUC__)
        /* The next chunks of this group (the hardware prefetchers lose track of the
         * one stream per group and DQ plane; reading past a plane's end is harmless). */
        for (int b = 0; b < CHUNK * (int)sizeof(float); b += 64)
            __builtin_prefetch((const char *)(src + PREFETCH_AHEAD * CHUNK) + b, 0, 3);
        __builtin_prefetch(qs + PREFETCH_AHEAD * CHUNK, 0, 3);
        __builtin_prefetch(qs + PREFETCH_AHEAD * CHUNK + 64, 0, 3);
#endif
        for (long x = 0; x < wdt; x++) {
            yg[x] = (double)src[x];
            clean[x] |= qs[x];
        }
    }
    long nclean = 0;
    for (long x = 0; x < wdt; x++) {
        clean[x] = clean[x] == 0;
        nclean += clean[x];
    }
    if (nclean == 0) return wdt;

    const double gt = t->gt;
    const float *gain = rw->gain + x0, *rnoise = rw->rnoise + x0;
    const uint32_t *pixeldq = rw->pixeldq + x0;
    chunk_median(c, n, wdt, gt, net);
    /* per pixel: segment slope (c->slope), Poisson denominator (c->sxx), var_R (c->sxy) */
    const double *finite; /* non-finite exactly where some group value is NaN or infinite */
    if (n == 2) {
        seg_two(wdt, gt, Y, Y + CHUNK, gain, rnoise, c->slope, c->sxx, c->sxy);
        finite = c->D;                       /* y1 - y0 */
    } else {
        finite = chunk_ols(c, n, wdt, gain, rnoise, gt, t->endpoints, table);
        seg_long(wdt, gt, n, gain, rnoise, c->sxx, c->sxy);
    }
    double *bad = c->sw, *use = c->sx;
    uint32_t *o_dq = orow->dq + x0;
    uint8_t *a_state = arow->state + x0;
    nclean = 0;
    for (long x = 0; x < wdt; x++) {
        const double g = (double)gain[x];
        uint32_t dq = pixeldq[x];
        if (!(g > 0.0)) dq |= DQ_DO_NOT_USE | DQ_NO_GAIN_VALUE;
        clean[x] &= (finite[x] - finite[x]) == 0.0; /* else: fit_integration excludes NaNs */
        nclean += clean[x];
        bad[x] = (dq & DQ_DO_NOT_USE) ? 1.0 : 0.0;
        use[x] = clean[x] ? 1.0 : 0.0;
        if (clean[x]) {
            o_dq[x] = dq;
            if (!(dq & DQ_DO_NOT_USE)) a_state[x] |= JW_RF_STATE_USABLE;
        }
    }
    chunk_results(wdt, c->mr, c->slope, c->sxx, c->sxy, rw->dark + x0, bad, use,
                  orow->slope + x0, orow->err + x0, orow->var_poisson + x0,
                  orow->var_rnoise + x0, arow->sum_rate + x0, arow->sum_pden + x0,
                  arow->sum_ivar_r + x0, arow->sum_num + x0, arow->sum_ivar_r_cl + x0);
    return wdt - nclean;
}

/* Exposure results of cnt pixels from their sums over nints integrations (arrays from the first
 * pixel). bad and cl are scratch of cnt doubles. */
static void finish_pixels(long cnt, double nints, const row_t *rw, const jw_rf_accum *a,
                          const jw_rf_image *o, double *restrict bad, double *restrict cl)
{
    const float *restrict gain = rw->gain, *restrict dark = rw->dark;
    const uint32_t *restrict pixeldq = rw->pixeldq, *restrict a_dq = a->dq;
    const uint8_t *restrict state = a->state;
    uint32_t *restrict o_dq = o->dq;
    for (long x = 0; x < cnt; x++) {
        uint32_t dq = pixeldq[x] | a_dq[x];
        if (!((double)gain[x] > 0.0)) dq |= DQ_DO_NOT_USE | DQ_NO_GAIN_VALUE;
        if (!(state[x] & JW_RF_STATE_USABLE)) dq |= DQ_DO_NOT_USE;
        o_dq[x] = dq;
        bad[x] = (dq & DQ_DO_NOT_USE) ? 1.0 : 0.0;
        cl[x] = (state[x] & JW_RF_STATE_CHARGELOSS) ? 1.0 : 0.0;
    }
    const double *restrict s_rate = a->sum_rate, *restrict s_pden = a->sum_pden;
    const double *restrict s_ivr = a->sum_ivar_r, *restrict s_num = a->sum_num;
    const double *restrict s_cl = a->sum_ivar_r_cl;
    float *restrict o_slope = o->slope, *restrict o_err = o->err;
    float *restrict o_vp = o->var_poisson, *restrict o_vr = o->var_rnoise;
    for (long x = 0; x < cnt; x++) {
        const double mr = s_rate[x] / nints, dk = (double)dark[x];
        const double with_rate = mr + dk;
        const double num = (mr > 0.0) ? with_rate : dk;
        /* sum over segments of 1/var_P, with var_P = num / pden, when positive */
        const double q = s_pden[x] / num;
        const double ivp = ((num > 0.0) & (s_pden[x] > 0.0)) ? q : 0.0;
        const double inv_ivp = 1.0 / ivp;
        double vp = (ivp > 0.0) ? inv_ivp : 0.0;
        vp = ((vp >= JW_RF_LARGE_VARIANCE) | (vp < 0.0)) ? 0.0 : vp;
        const double ivr = s_ivr[x], inv_ivr = 1.0 / ivr;
        double vr = (ivr > 0.0) ? inv_ivr : 0.0;
        vr = (vr >= JW_RF_LARGE_VARIANCE) ? 0.0 : vr;
        double err = sqrt(vp + vr);
        double slope = s_num[x] / ivr;
        const int b = bad[x] != 0.0;
        slope = b ? NAN : slope;
        vp = b ? 0.0 : vp;
        vr = b ? 0.0 : vr;
        err = b ? 0.0 : err;
        o_slope[x] = (float)slope;
        o_err[x] = (float)err;
        o_vp[x] = (float)vp;
        o_vr[x] = (float)vr;
    }
    /* CHARGELOSS (rare): VAR_RNOISE from the sums with the CHARGELOSS groups put back */
    for (long x = 0; x < cnt; x++) {
        if (cl[x] == 0.0 || !(s_cl[x] > 0.0)) continue; /* else VAR_RNOISE stays as it is */
        const double vr = 1.0 / s_cl[x];
        o_vr[x] = (float)((vr >= JW_RF_LARGE_VARIANCE) ? 0.0 : vr);
    }
}

static inline jw_rf_accum accum_at(const jw_rf_accum *a, size_t p)
{
    jw_rf_accum r;
    r.sum_rate = a->sum_rate + p;
    r.sum_pden = a->sum_pden + p;
    r.sum_ivar_r = a->sum_ivar_r + p;
    r.sum_num = a->sum_num + p;
    r.sum_ivar_r_cl = a->sum_ivar_r_cl + p;
    r.dq = a->dq + p;
    r.state = a->state + p;
    return r;
}

static inline jw_rf_image image_at(const jw_rf_image *a, size_t p)
{
    jw_rf_image r;
    r.slope = a->slope + p;
    r.err = a->err + p;
    r.var_poisson = a->var_poisson + p;
    r.var_rnoise = a->var_rnoise + p;
    r.dq = a->dq + p;
    return r;
}

static timing_t timing_of(const jw_rf_setup *s)
{
    timing_t t;
    const int n = s->stop - s->first;
    t.gt = s->group_time;
    t.ft = s->frame_time;
    t.ogt = s->one_group_time;
    t.suppress = (n > 1) && s->suppress_one_group;
    t.ped = s->pedestal_factor;
    t.endpoints = s->snr_from_endpoints != 0;
    return t;
}

/* Pixel x of row r0 of integration i into w->y, w->q, w->q0 (zp: that row of the ZEROFRAME). */
static void load_ramp(const jw_rf_setup *s, const float *data, const uint8_t *groupdq, int i,
                      size_t r0, long x, scratch_t *w)
{
    const size_t npix = (size_t)s->ny * (size_t)s->nx;
    const int n = s->stop - s->first;
    const size_t base = ((size_t)i * (size_t)s->ngroups + (size_t)s->first) * npix + r0 + (size_t)x;
    for (int g = 0; g < n; g++) {
        w->y[g] = (double)data[base + (size_t)g * npix];
        w->q[g] = w->q0[g] = groupdq[base + (size_t)g * npix];
    }
    if (s->first > 0) w->q[0] &= (uint8_t)~F_JUMP; /* no difference precedes it */
}

static int opt_ok(const jw_rf_opt *o)
{
    return o->seg_cap >= 1 && o->cr_cap >= 0 && o->slope && o->sigslope && o->var_poisson &&
           o->var_rnoise && o->yint && o->sigyint && o->weights && o->pedestal &&
           (o->cr_cap == 0 || o->crmag);
}

/* Scatter one pixel-integration's fitopt values to the arrays (zeros past its counts). */
static void opt_store(const jw_rf_opt *o, const optpix_t *v, size_t npix, int i, size_t p)
{
    for (int k = 0; k < o->seg_cap; k++) {
        const size_t at = ((size_t)i * (size_t)o->seg_cap + (size_t)k) * npix + p;
        const int has = k < v->nseg;
        o->slope[at] = has ? (float)v->slope[k] : 0.0f;
        o->sigslope[at] = has ? (float)v->sigslope[k] : 0.0f;
        o->var_poisson[at] = has ? (float)v->vp[k] : 0.0f;
        o->var_rnoise[at] = has ? (float)v->vr[k] : 0.0f;
        o->yint[at] = has ? (float)v->yint[k] : 0.0f;
        o->sigyint[at] = has ? (float)v->sigyint[k] : 0.0f;
        o->weights[at] = has ? (float)v->weight[k] : 0.0f;
    }
    for (int k = 0; k < o->cr_cap; k++) {
        const size_t at = ((size_t)i * (size_t)o->cr_cap + (size_t)k) * npix + p;
        o->crmag[at] = k < v->ncr ? (float)v->crmag[k] : 0.0f;
    }
    o->pedestal[(size_t)i * npix + p] = (float)v->pedestal;
}

int JW_RF_EXPORT(jw_ramp_fit_opt_counts)(const jw_rf_setup *s, int nb, const float *data,
                           const uint8_t *groupdq, const float *zeroframe, int *max_segs,
                           int *max_crs, int nthreads)
{
    if (!setup_ok(s) || nb < 0) return JW_ERR_SHAPE;
    const int n = s->stop - s->first;
    const long nx = s->nx;
    const size_t npix = (size_t)s->ny * (size_t)s->nx;
    const timing_t t = timing_of(s);
    int status = JW_OK, segs = 0, crs = 0;
    (void)nthreads;
    #pragma omp parallel num_threads(nthreads)
    {
        scratch_t w = {0};
        w.y = (double *)malloc((size_t)n * sizeof(double));
        w.q = (uint8_t *)malloc((size_t)n);
        w.q0 = (uint8_t *)malloc((size_t)n);
        w.ss = (int *)malloc((size_t)n * sizeof(int));
        w.se = (int *)malloc((size_t)n * sizeof(int));
        const int ok = w.y && w.q && w.q0 && w.ss && w.se;
        if (!ok) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }
        int my_segs = 0, my_crs = 0;
        #pragma omp for schedule(static)
        for (long row = 0; row < s->ny; row++) {
            if (!ok) continue;
            const size_t r0 = (size_t)row * (size_t)nx;
            for (int i = 0; i < nb; i++) {
                const float *zp = zeroframe ? zeroframe + (size_t)i * npix + r0 : NULL;
                for (long x = 0; x < nx; x++) {
                    load_ramp(s, data, groupdq, i, r0, x, &w);
                    gstats_t st;
                    int ncr = 0;
                    prepare_integration(n, w.y, w.q, zp != NULL, zp ? (double)zp[x] : 0.0, &t,
                                        &st, NULL, &ncr);
                    const int nseg = fitted_segments(n, w.q, &st, w.ss, w.se);
                    if (nseg > my_segs) my_segs = nseg;
                    if (ncr > my_crs) my_crs = ncr;
                }
            }
        }
        #pragma omp critical(jw_rf_counts)
        {
            if (my_segs > segs) segs = my_segs;
            if (my_crs > crs) crs = my_crs;
        }
        free(w.y);
        free(w.q);
        free(w.q0);
        free(w.ss);
        free(w.se);
    }
    *max_segs = segs;
    *max_crs = crs;
    return status;
}

int JW_RF_EXPORT(jw_ramp_fit_block)(const jw_rf_setup *s, int nb, const float *data, const uint8_t *groupdq,
                      const float *zeroframe, const jw_rf_image *ints, const jw_rf_accum *acc,
                      const jw_rf_image *rate, const jw_rf_opt *opt, int nthreads)
{
    if (!setup_ok(s) || nb < 0 || (acc == NULL && rate == NULL)) return JW_ERR_SHAPE;
    if (opt != NULL && !opt_ok(opt)) return JW_ERR_SHAPE;
    const int n = s->stop - s->first, nx = s->nx;
    const size_t npix = (size_t)s->ny * (size_t)s->nx;
    if (npix == 0) return JW_OK;
    if (nb == 0 && rate == NULL) return JW_OK;

    double *table = (double *)malloc(TABLE_SIZE * sizeof(double));
    if (table == NULL) return JW_ERR_ALLOC;
    fill_weight_table(table, n < TABLE_NMAX ? n : TABLE_NMAX);
    /* The chunk path handles the clean pixels of ramps of 2..MAXNET+1 groups (a clean ramp never
     * needs a ZEROFRAME rescue); everything else goes pixel by pixel. With save_opt every pixel
     * goes pixel by pixel: the per-segment values come from the one segment fit there (the two
     * paths give the same numbers, so the other results do not change). */
    const int use_chunks = n >= 2 && n - 1 <= MAXNET && opt == NULL;
    sortnet_t net = {0, 0, NULL, NULL};
    if (use_chunks && sortnet_build(&net, n - 1) != JW_OK) {
        free(net.a);
        free(net.b);
        free(table);
        return JW_ERR_ALLOC;
    }

    const timing_t t = timing_of(s);

    int status = JW_OK;
    (void)nthreads;
    #pragma omp parallel num_threads(nthreads)
    {
        scratch_t w;
        chunk_t c = {0};
        w.y = (double *)malloc((size_t)n * sizeof(double));
        w.buf = (double *)malloc((size_t)n * sizeof(double));
        w.tmp = (double *)malloc((size_t)(n > 9 ? n : 9) * sizeof(double));
        w.kk = (int *)malloc((size_t)n * sizeof(int));
        w.wbuf = (double *)malloc((size_t)n * sizeof(double));
        w.q = (uint8_t *)malloc((size_t)n);
        w.q0 = (uint8_t *)malloc((size_t)n);
        w.ss = (int *)malloc((size_t)n * sizeof(int));
        w.se = (int *)malloc((size_t)n * sizeof(int));
        /* With rate given, the block is the whole exposure: the sums live in a row buffer. */
        double *rsum = NULL;
        uint32_t *rdq = NULL;
        uint8_t *rstate = NULL;
        if (rate != NULL) {
            rsum = (double *)malloc((size_t)(7 * nx) * sizeof(double));
            rdq = (uint32_t *)malloc((size_t)nx * sizeof(uint32_t));
            rstate = (uint8_t *)malloc((size_t)nx);
        }
        rowbuf_t rb = {NULL, NULL, NULL};
        /* save_opt: one pixel-integration's fitopt values (7 per segment, then the CRs). A pixel
         * with more than seg_cap segments (never, after jw_ramp_fit_opt_counts) still stays in
         * the buffer (segments <= n) and is reported below. */
        optpix_t ov = {0};
        double *obuf = NULL;
        if (opt != NULL) {
            obuf = (double *)malloc((size_t)(7 * opt->seg_cap + n) * sizeof(double));
            if (obuf != NULL) {
                ov.slope = obuf;
                ov.sigslope = obuf + opt->seg_cap;
                ov.vp = obuf + 2 * (size_t)opt->seg_cap;
                ov.vr = obuf + 3 * (size_t)opt->seg_cap;
                ov.yint = obuf + 4 * (size_t)opt->seg_cap;
                ov.sigyint = obuf + 5 * (size_t)opt->seg_cap;
                ov.weight = obuf + 6 * (size_t)opt->seg_cap;
                ov.crmag = obuf + 7 * (size_t)opt->seg_cap;
            }
        }
        const int ok = w.y && w.buf && w.tmp && w.kk && w.wbuf && w.q && w.q0 && w.ss && w.se &&
                       chunk_alloc(&c, n) == JW_OK && (rate == NULL || (rsum && rdq && rstate)) &&
                       rowbuf_alloc(&rb, s) == JW_OK && (opt == NULL || obuf);
        if (!ok) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }

        /* Rows are independent: small chunks balance rows of unequal cost (jumps, saturation)
         * and a thread slowed by other work on its core. */
        #pragma omp for schedule(dynamic, 8)
        for (long row = 0; row < s->ny; row++) {
            if (!ok) continue;
            const size_t r0 = (size_t)row * (size_t)nx;
            const row_t rw = row_prepare(s, r0, &rb, 1);
            jw_rf_accum arow;
            if (rate != NULL) {
                memset(rsum, 0, (size_t)(5 * nx) * sizeof(double));
                memset(rdq, 0, (size_t)nx * sizeof(uint32_t));
                memset(rstate, 0, (size_t)nx);
                arow.sum_rate = rsum;
                arow.sum_pden = rsum + nx;
                arow.sum_ivar_r = rsum + 2 * (size_t)nx;
                arow.sum_num = rsum + 3 * (size_t)nx;
                arow.sum_ivar_r_cl = rsum + 4 * (size_t)nx;
                arow.dq = rdq;
                arow.state = rstate;
            } else {
                arow = accum_at(acc, r0);
            }
            for (int i = 0; i < nb; i++) {
                const size_t ibase = ((size_t)i * (size_t)s->ngroups + (size_t)s->first) * npix + r0;
                const float *zp = zeroframe ? zeroframe + (size_t)i * npix + r0 : NULL;
                const jw_rf_image orow = image_at(ints, (size_t)i * npix + r0);
                for (long x0 = 0; x0 < nx; x0 += CHUNK) {
                    const long wdt = (nx - x0 < CHUNK) ? nx - x0 : CHUNK;
                    const float *dp = data + ibase + x0;
                    const uint8_t *qp = groupdq + ibase + x0;
                    long left = wdt;
                    if (use_chunks) {
                        left = chunk_fit(&rw, &t, table, &net, n, x0, wdt, dp, qp, npix, &c, &orow,
                                         &arow);
                    } else {
                        for (long x = 0; x < wdt; x++) c.clean[x] = 0;
                    }
                    if (left == 0) continue;
                    for (long xt = 0; xt < wdt; xt++) {
                        if (c.clean[xt]) continue;
                        const long x = x0 + xt;
                        load_ramp(s, data, groupdq, i, r0, x, &w);
                        pixel_t px;
                        load_pixel(&rw, (size_t)x, &px);
                        integ_t r;
                        fit_integration(n, &w, zp != NULL, zp ? (double)zp[x] : 0.0, &px, &t,
                                        table, &r, opt ? &ov : NULL);
                        if (opt != NULL) {
                            if (ov.nseg > opt->seg_cap || ov.ncr > opt->cr_cap) {
                                #pragma omp atomic write
                                status = JW_ERR_SHAPE; /* capacities below the counts */
                            } else {
                                opt_store(opt, &ov, npix, i, r0 + (size_t)x);
                            }
                        }

                        orow.slope[x] = (float)r.slope;
                        orow.err[x] = (float)r.err;
                        orow.var_poisson[x] = (float)r.vp;
                        orow.var_rnoise[x] = (float)r.vr;
                        orow.dq[x] = r.dq;

                        arow.sum_rate[x] += r.rate;
                        if (r.fitted) {
                            arow.sum_pden[x] += r.pden;
                            arow.sum_ivar_r[x] += r.ivr;
                            arow.sum_num[x] += r.num;
                        }
                        arow.sum_ivar_r_cl[x] += r.ivr_cl;
                        arow.dq[x] |= r.dq & (uint32_t)(DQ_JUMP_DET | DQ_SATURATED);
                        uint8_t st = arow.state[x];
                        if (!(r.dq & DQ_DO_NOT_USE)) st |= JW_RF_STATE_USABLE;
                        if (r.chargeloss) st |= JW_RF_STATE_CHARGELOSS;
                        arow.state[x] = st;
                    }
                }
            }
            if (rate != NULL) {
                const jw_rf_image rrow = image_at(rate, r0);
                finish_pixels(nx, (double)nb, &rw, &arow, &rrow, rsum + 5 * (size_t)nx,
                              rsum + 6 * (size_t)nx);
            }
        }
        free(w.y);
        free(w.buf);
        free(w.tmp);
        free(w.kk);
        free(w.wbuf);
        free(w.q);
        free(w.q0);
        free(w.ss);
        free(w.se);
        free(rsum);
        free(rdq);
        free(rstate);
        free(obuf);
        chunk_free(&c);
        rowbuf_free(&rb);
    }
    free(net.a);
    free(net.b);
    free(table);
    return status;
}

int JW_RF_EXPORT(jw_ramp_fit_finish)(const jw_rf_setup *s, long nints, const jw_rf_accum *acc,
                       const jw_rf_image *rate, int nthreads)
{
    if (!setup_ok(s) || nints < 0) return JW_ERR_SHAPE;
    const long nx = s->nx;
    int status = JW_OK;
    (void)nthreads;
    #pragma omp parallel num_threads(nthreads)
    {
        double *scratch = (double *)malloc((size_t)(2 * nx) * sizeof(double));
        rowbuf_t rb = {NULL, NULL, NULL};
        const int ok = scratch != NULL && rowbuf_alloc(&rb, s) == JW_OK;
        if (!ok) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }
        #pragma omp for schedule(static)
        for (long row = 0; row < s->ny; row++) {
            if (!ok) continue;
            const size_t r0 = (size_t)row * (size_t)nx;
            const row_t rw = row_prepare(s, r0, &rb, 0);
            const jw_rf_accum arow = accum_at(acc, r0);
            const jw_rf_image rrow = image_at(rate, r0);
            finish_pixels(nx, (double)nints, &rw, &arow, &rrow, scratch, scratch + nx);
        }
        free(scratch);
        rowbuf_free(&rb);
    }
    return status;
}
