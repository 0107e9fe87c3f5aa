/* Kernels of the synthetic observatory (jwpipe.simulate): ramp accumulation and readout.
 *
 * jw_sim_ramp: for every pixel of one integration, charge accumulates read frame by read frame:
 *   Q_r = Q_{r-1} + Poisson(rate_e * dt_r) + (cosmic-ray charge deposited before read r),
 * the linear signal is L_r = Q_r / gain + offsets_r (DN; offsets carry deterministic extras such
 * as dark transients or persistence), and the detector reports the non-linear signal S_r that the
 * linearity correction maps back to L_r: sum_k coeffs_k S_r^k = L_r, solved by Newton's method,
 * and S_r is clipped at the hard saturation level `well`. Each group is the weighted sum
 * (weight = 1/NFRAMES) of its read frames. frame0 (optional) receives S_0.
 *   Poisson draws are exact (inversion searched from the mode) for means below gauss_threshold
 *   electrons, and a rounded Gaussian of the same mean and variance above it. With noiseless != 0 the charge increment is
 *   the mean itself.
 *   Cosmic-ray events come sorted by (row, column, read) in CSR form: events of row y are
 *   ev_rowptr[y] .. ev_rowptr[y+1]-1, each with its column, first read that sees it, and charge
 *   in electrons.
 *
 * jw_sim_ipc: convolve planes with a small odd kernel (zero outside the array); reference pixels
 * (refpix != 0) come out 0 (their input is 0 in the simulation, so they give nothing either).
 *
 * jw_sim_readout: out = round(signal + bias + chan_off[g, chan] + slow_off[g, slow] + sigma * N),
 * clipped to 0..65535. chan indexes a per-group offset table (amplifier x column parity), slow
 * a per-group offset per line of the slow readout axis (1/f noise); either may be NULL. sat and
 * sat_margin (optional) receive the first group whose noiseless value signal + bias reaches thr
 * and thr_margin (-1: never); a NaN threshold never triggers.
 *
 * Random numbers: xoshiro256++ seeded per (seed, stream, row) through splitmix64, so results do
 * not depend on the number of threads. Arrays are C-contiguous; npix = ny * nx.
 */
#include "simulate.h"

#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    uint64_t s[4];
} rng_t;

static inline uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void rng_seed(rng_t *r, uint64_t seed, uint64_t stream, uint64_t row)
{
    uint64_t x = seed ^ splitmix64(&stream);
    x ^= 0xD1B54A32D192ED03ull * (row + 1);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[0] + s[3], 23) + s[0];
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in (0, 1). */
static inline double rng_uniform(rng_t *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

/* Standard normal: Marsaglia & Tsang ziggurat (128 layers). zig_init() builds its tables and
 * the 1/k table once, before any parallel region. */
#define ZIG_N 128
static double zig_x[ZIG_N + 1], zig_r[ZIG_N];
static int zig_ready = 0;

#define INV_N 1024
static double inv_k[INV_N];  /* 1/k, for the Poisson search */

static void zig_init(void)
{
    if (zig_ready) return;
    for (int k = 1; k < INV_N; k++) inv_k[k] = 1.0 / k;
    inv_k[0] = 0.0;
    const double r = 3.442619855899, v = 9.91256303526217e-3;
    double f = exp(-0.5 * r * r);
    zig_x[0] = v / f;
    zig_x[1] = r;
    for (int i = 2; i < ZIG_N; i++) {
        zig_x[i] = sqrt(-2.0 * log(v / zig_x[i - 1] + f));
        f = exp(-0.5 * zig_x[i] * zig_x[i]);
    }
    zig_x[ZIG_N] = 0.0;
    for (int i = 0; i < ZIG_N; i++) zig_r[i] = zig_x[i + 1] / zig_x[i];
    zig_ready = 1;
}

static inline double rng_normal(rng_t *r)
{
    for (;;) {
        const uint64_t u = rng_next(r);
        const int i = (int)(u & (ZIG_N - 1));
        const double x = ((double)(int64_t)(u >> 11) * 0x1.0p-52 - 1.0) * zig_x[i];
        if (fabs(x) < zig_x[i + 1]) return x;  /* inside the rectangle: ~98% of draws */
        if (i == 0) {  /* the tail beyond r */
            double xt, yt;
            do {
                xt = -log(rng_uniform(r)) / zig_x[1];
                yt = -log(rng_uniform(r));
            } while (yt + yt < xt * xt);
            return x > 0 ? zig_x[1] + xt : -(zig_x[1] + xt);
        }
        const double f0 = exp(-0.5 * (zig_x[i] * zig_x[i] - x * x));
        const double f1 = exp(-0.5 * (zig_x[i + 1] * zig_x[i + 1] - x * x));
        if (f1 + rng_uniform(r) * (f0 - f1) < 1.0) return x;
    }
}

/* Poisson sampling by inversion searched from the mode: the mode's probability and cumulative
 * probability are computed once per mean (per pixel and time step), then each draw walks from
 * the mode, about sqrt(lam) steps. Exact; used below gauss_threshold. */
typedef struct {
    double lam, sq, inv, pm, cm;  /* mean, sqrt(mean), 1/mean, P(mode), P(X <= mode) */
    int m;                        /* mode = floor(lam) */
} pois_t;

static inline double recip(int k) { return k < INV_N ? inv_k[k] : 1.0 / k; }

static inline void pois_init(pois_t *ps, double lam, double gauss_threshold)
{
    ps->lam = lam > 0.0 ? lam : 0.0;
    ps->sq = sqrt(ps->lam);
    ps->inv = lam > 0.0 ? 1.0 / lam : 0.0;
    ps->m = 0;
    ps->pm = ps->cm = 1.0;
    if (!(lam > 0.0) || lam >= gauss_threshold) return;
    const int m = (int)lam;
    double p = exp(-lam), c = p;
    for (int k = 1; k <= m; k++) {
        p *= lam * recip(k);
        c += p;
    }
    ps->m = m;
    ps->pm = p;
    ps->cm = c;
}

static inline double rng_poisson(rng_t *r, const pois_t *ps, double gauss_threshold)
{
    const double lam = ps->lam;
    if (!(lam > 0.0)) return 0.0;
    if (lam < gauss_threshold) {
        const double u = rng_uniform(r);
        int k = ps->m;
        double p = ps->pm, c = ps->cm;
        if (u <= c) {  /* smallest k with P(X <= k) >= u lies at or below the mode */
            while (k > 0 && u <= c - p) {
                c -= p;
                p *= k * ps->inv;
                k--;
            }
        } else {
            while (u > c && k < 100000) {
                k++;
                p *= lam * recip(k);
                c += p;
                if (p == 0.0) break;
            }
        }
        return (double)k;
    }
    const double k = floor(lam + ps->sq * rng_normal(r) + 0.5);
    return k < 0.0 ? 0.0 : k;
}

/* Non-linear signal S with sum_k c_k S^k = L, clipped at well: Newton from the guess S0.
 * Iterates until the quadratic-convergence error estimate (|P''| / 2|P'|) * step^2 of the last
 * step is below 1e-6 DN; from a good guess (the previous read extrapolated along its local slope)
 * one step suffices. *inv_slope receives 1 / P'(S), the local dS/dL, for the next guess. */
static inline double solve_nonlinear(const float *c, int ncoeff, double L, double S0,
                                     double well, double lwell, double *inv_slope)
{
    if (well > 0.0 && L >= lwell) return well;
    double S = S0;
    if (ncoeff >= 2) {
        for (int it = 0; it < 24; it++) {
            double f = c[ncoeff - 1], d = 0.0, dd = 0.0;
            for (int k = ncoeff - 2; k >= 0; k--) {
                dd = dd * S + d;
                d = d * S + f;
                f = f * S + c[k];
            }
            if (!(d > 0.0)) break;
            const double inv = 1.0 / d;
            const double step = (f - L) * inv;
            S -= step;
            *inv_slope = inv;
            if (fabs(dd) * step * step < 1e-6 * d) break;  /* dd is P''/2 */
        }
    } else {
        S = L;
    }
    if (well > 0.0 && S > well) S = well;
    return S;
}

int jw_sim_ramp(const float *rate_e, const float *gain, const float *coeffs, int ncoeff,
                const float *well, const float *offsets, const double *dt,
                const int32_t *group, const float *weight, int nread, int ngroups,
                const int64_t *ev_rowptr, const int32_t *ev_col, const int32_t *ev_read,
                const float *ev_amp, float *out, float *frame0, long ny, long nx,
                uint64_t seed, uint64_t stream, int noiseless, double gauss_threshold,
                int nthreads)
{
    if (ny < 0 || nx < 0 || nread < 1 || ngroups < 1 || ncoeff < 0 || ncoeff > 16)
        return JW_ERR_SHAPE;
    for (int r = 0; r < nread; r++) {
        if (group[r] < 0 || group[r] >= ngroups || !(dt[r] >= 0.0)) return JW_ERR_PARAM;
        if (r > 0 && group[r] < group[r - 1]) return JW_ERR_PARAM;  /* groups in read order */
    }
    const size_t npix = (size_t)ny * (size_t)nx;
    if (nthreads < 1) nthreads = 1;
    zig_init();

    #pragma omp parallel for schedule(dynamic, 8) num_threads(nthreads)
    for (long y = 0; y < ny; y++) {
        rng_t rng;
        rng_seed(&rng, seed, stream, (uint64_t)y);
        int64_t e = ev_rowptr ? ev_rowptr[y] : 0;
        const int64_t eend = ev_rowptr ? ev_rowptr[y + 1] : 0;
        float cbuf[16];
        for (long x = 0; x < nx; x++) {
            const size_t p = (size_t)y * (size_t)nx + (size_t)x;
            double g = gain ? (double)gain[p] : 1.0;
            if (!(g > 0.0) || !isfinite(g)) g = 1.0;
            double rate = rate_e ? (double)rate_e[p] : 0.0;
            if (!(rate > 0.0) || !isfinite(rate)) rate = 0.0;

            /* Linearity coefficients of this pixel; NaN anywhere -> linear response. */
            int nc = ncoeff;
            if (coeffs && nc >= 2) {
                for (int k = 0; k < nc; k++) {
                    cbuf[k] = coeffs[(size_t)k * npix + p];
                    if (!isfinite(cbuf[k])) { nc = 0; break; }
                }
                if (nc >= 2 && !(cbuf[1] > 0.0f)) nc = 0;
            } else {
                nc = 0;
            }
            double w = well ? (double)well[p] : 0.0;
            if (!isfinite(w)) w = 0.0;
            double lwell = w;
            if (w > 0.0 && nc >= 2) {
                double f = cbuf[nc - 1];
                for (int k = nc - 2; k >= 0; k--) f = f * w + cbuf[k];
                lwell = f;
            }

            const double inv_g = 1.0 / g;
            double Q = 0.0, S = 0.0, Lprev = 0.0, dS = 1.0, acc = 0.0;
            double last_dt = -1.0;
            pois_t ps = {0.0, 0.0, 0.0, 1.0, 1.0, 0};
            for (int r = 0; r < nread; r++) {
                if (dt[r] != last_dt) {
                    last_dt = dt[r];
                    pois_init(&ps, rate * last_dt, noiseless ? 0.0 : gauss_threshold);
                }
                Q += noiseless ? ps.lam : rng_poisson(&rng, &ps, gauss_threshold);
                while (e < eend && ev_col[e] < x) e++;
                while (e < eend && ev_col[e] == x && ev_read[e] <= r) {
                    Q += (double)ev_amp[e];
                    e++;
                }
                double L = Q * inv_g;
                if (offsets) L += (double)offsets[(size_t)r * npix + p];
                /* Start Newton from the previous read, stepped along its local slope. */
                const double S0 = r == 0 ? L : S + (L - Lprev) * dS;
                S = solve_nonlinear(cbuf, nc, L, S0, w, lwell, &dS);
                Lprev = L;
                acc += weight[r] * S;
                if (r == nread - 1 || group[r + 1] != group[r]) {  /* group complete */
                    out[(size_t)group[r] * npix + p] = (float)acc;
                    acc = 0.0;
                }
                if (r == 0 && frame0) frame0[p] = (float)S;
            }
            /* Events after the last read of this pixel are never seen. */
            while (e < eend && ev_col[e] == x) e++;
        }
    }
    return JW_OK;
}

int jw_sim_ipc(const float *in, float *out, const float *kernel, int kh, int kw,
               const uint8_t *refpix, int nplanes, long ny, long nx, int nthreads)
{
    if (ny < 0 || nx < 0 || nplanes < 0 || kh < 1 || kw < 1 || kh % 2 == 0 || kw % 2 == 0 ||
        kh * kw > 1024)
        return JW_ERR_SHAPE;
    const size_t npix = (size_t)ny * (size_t)nx;
    const int cy = kh / 2, cx = kw / 2;
    int ntap = 0, tdy[1024], tdx[1024];
    float tw[1024];
    for (int j = 0; j < kh; j++)
        for (int i = 0; i < kw; i++)
            if (kernel[j * kw + i] != 0.0f) {
                tdy[ntap] = j - cy;
                tdx[ntap] = i - cx;
                tw[ntap] = kernel[j * kw + i];
                ntap++;
            }
    if (nthreads < 1) nthreads = 1;
    (void)nthreads;

    /* Row by row and tap by tap, so the inner loop is a contiguous multiply-add. Reference
     * pixels hold no charge in the simulation, so they give none; their output is zeroed. */
    #pragma omp parallel for schedule(static) num_threads(nthreads) collapse(2)
    for (int k = 0; k < nplanes; k++) {
        for (long y = 0; y < ny; y++) {
            const float *src = in + (size_t)k * npix;
            float *dst = out + (size_t)k * npix + (size_t)y * (size_t)nx;
            for (long x = 0; x < nx; x++) dst[x] = 0.0f;
            for (int t = 0; t < ntap; t++) {
                const long yy = y - tdy[t];
                if (yy < 0 || yy >= ny) continue;
                const long dx = tdx[t];
                const long x0 = dx > 0 ? dx : 0, x1 = dx < 0 ? nx + dx : nx;
                const float w = tw[t];
                const float *row = src + (size_t)yy * (size_t)nx - dx;
                for (long x = x0; x < x1; x++) dst[x] += w * row[x];
            }
            if (refpix) {
                const uint8_t *m = refpix + (size_t)y * (size_t)nx;
                for (long x = 0; x < nx; x++) if (m[x]) dst[x] = 0.0f;
            }
        }
    }
    return JW_OK;
}

int jw_sim_readout(const float *signal, const float *bias, const float *sigma,
                   const uint8_t *chan, const float *chan_off, int nchan,
                   const int32_t *slow, const float *slow_off, int nslow,
                   const float *thr, const float *thr_margin, int16_t *sat, int16_t *sat_margin,
                   uint16_t *out, int ngroups, long ny, long nx, uint64_t seed, uint64_t stream,
                   int noiseless, int nthreads)
{
    if (ny < 0 || nx < 0 || ngroups < 1 || nchan < 0 || nslow < 0) return JW_ERR_SHAPE;
    const size_t npix = (size_t)ny * (size_t)nx;
    if (nthreads < 1) nthreads = 1;
    zig_init();

    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long y = 0; y < ny; y++) {
        rng_t rng;
        rng_seed(&rng, seed, stream, (uint64_t)y);
        const size_t row = (size_t)y * (size_t)nx;
        if (sat) for (long x = 0; x < nx; x++) sat[row + x] = -1;
        if (sat_margin) for (long x = 0; x < nx; x++) sat_margin[row + x] = -1;
        for (int gg = 0; gg < ngroups; gg++) {
            const float *sg = signal + (size_t)gg * npix;
            uint16_t *og = out + (size_t)gg * npix;
            for (long x = 0; x < nx; x++) {
                const size_t p = row + (size_t)x;
                double v = (double)sg[p] + (bias ? (double)bias[p] : 0.0);
                /* Saturation truth: the noiseless raw value against the reference threshold. */
                if (sat && sat[p] < 0 && thr && v >= (double)thr[p]) sat[p] = (int16_t)gg;
                if (sat_margin && sat_margin[p] < 0 && thr_margin && v >= (double)thr_margin[p])
                    sat_margin[p] = (int16_t)gg;
                if (chan && chan_off && nchan > 0) {
                    const int c = chan[p] < nchan ? chan[p] : nchan - 1;
                    v += (double)chan_off[(size_t)gg * nchan + c];
                }
                if (slow && slow_off && nslow > 0) {
                    const int32_t sl = slow[p];
                    if (sl >= 0 && sl < nslow) v += (double)slow_off[(size_t)gg * nslow + sl];
                }
                if (!noiseless && sigma) v += (double)sigma[p] * rng_normal(&rng);
                v = floor(v + 0.5);
                if (!(v > 0.0)) v = 0.0;  /* also NaN */
                if (v > 65535.0) v = 65535.0;
                og[p] = (uint16_t)v;
            }
        }
    }
    return JW_OK;
}
