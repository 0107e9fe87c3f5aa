/* Two-point-difference jump (cosmic-ray) detection with a generalised-least-squares step test.
 *
 * Model. In one pixel-integration the usable first differences d_k (electrons; a difference is
 * usable when neither of its groups is DO_NOT_USE/SATURATED and both values are finite) share a
 * rate mu and have the covariance of a ramp with read and Poisson noise:
 *     var(d_k)          = lam (1 - 2c) + 2 s
 *     cov(d_k, d_k+1)   = lam c - s            (only when both are usable: they share a group)
 * with s = (readnoise * gain)^2 / (2 nframes) the read variance of one group (readnoise is the CDS
 * noise in DN), lam = max(mean usable difference, 0) the Poisson variance of one difference (the
 * largest and smallest differences left out of the mean when 4 or more are usable, so that a
 * large jump does not inflate the noise it is tested against) and
 * c = (tframe / tgroup) (nframes^2 - 1) / (6 nframes) the frame-averaging correlation (0 for one
 * frame per group). A jump in difference k is a step a: d = mu + a e_k + noise. Its GLS estimate
 * and standard error give z_k = a_hat / se(a_hat) = (Pd)_k / sqrt(P_kk) with
 * P = S^-1 - S^-1 1 1' S^-1 / (1' S^-1 1) (S the covariance): the step is tested against the rate
 * of the *other* differences, with the noise of that rate included, and the negative read-noise
 * covariance of neighbouring differences is used rather than ignored.
 *
 * Iteration (per pixel-integration): the largest |z_k| (with two differences left, the larger
 * |d_k|, since then |z_0| = |z_1|) is a jump when it exceeds the threshold for the number n of
 * differences left (n >= 4: rejection_threshold, 3: four_group_threshold, 2: three_group_threshold);
 * that difference is removed, lam recomputed and the test repeated. JUMP_DET goes on the later
 * group of the difference.
 *
 * Implementation. S is tridiagonal; S^-1 1, S^-1 d and diag(S^-1) come from one forward and one
 * backward sweep (diag via (S^-1)_kk = 1 / (delta_k + eta_k - a_k) with forward and backward
 * pivots). A row is processed in tiles of TILE pixels with the groups gathered into small per-thread
 * buffers laid out [difference][pixel], so every sweep is a loop over pixels that the compiler
 * vectorises; this first pass runs in single precision and only screens: a pixel whose largest z
 * is below 0.999 of its threshold cannot have a jump. The few candidates are redone from the data in
 * double precision, iterating, and only those decisions set flags. Unusable differences are
 * decoupled rows of S (diagonal 1, no coupling, zero right-hand side), so the same sweep serves
 * every mask without branches.
 *
 * With pool_integrations the integrations of the block form one virtual ramp per pixel (their
 * planes are consecutive in memory; the differences across an integration boundary are unusable),
 * so one rate serves them all; everything else is unchanged.
 *
 * Neighbours of jumps with |z| in (min, max)_to_flag_neighbors are collected per thread and flagged
 * after all rows are done (so rows can be processed in parallel); after-jump flagging follows.
 * Results do not depend on the number of threads.
 */
#include "jump.h"
#include "dqflags.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* The tile loops select between values with ?: and divide; GCC only if-converts (and so
 * vectorises) them when FP operations are not assumed to trap. This changes no result, only
 * whether FP exception flags could be raised (clang assumes this by default). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#define TILE 128
#define BAD_BITS ((uint8_t)(DQ_DO_NOT_USE | DQ_SATURATED))
#define JUMP_BIT ((uint8_t)DQ_JUMP_DET)
/* The single-precision screen lets through every pixel with z^2 > SCREEN * threshold^2. */
#define SCREEN 0.998f

typedef struct {
    /* Tile buffers, [group or difference][TILE] single precision. */
    float *e, *ug;
    float *us, *d, *del, *idel, *y1, *yd, *v, *w, *dinv;
    /* Per-pixel tile values. */
    float *gx, *sx, *valid, *ieta, *aus, *bus, *t2, *n, *sumd, *ngood, *cand, *sacc, *wacc;
    /* Scalar (double) buffers for the candidate pass, [difference]. */
    double *dd, *ddel, *didel, *dy1, *dyd, *dv, *dw, *ddinv, *dz;
    unsigned char *dus, *dug;
    int *reach;
    /* Neighbour events: offsets of jumps whose four neighbours are to be flagged. */
    int64_t *ev;
    size_t nev, cap;
    int64_t njumps;
    int err;
} workspace;

static void ws_free(workspace *ws)
{
    free(ws->e);
    free(ws->dd);
    free(ws->dus);
    free(ws->reach);
    free(ws->ev);
    memset(ws, 0, sizeof(*ws));
}

static int ws_alloc(workspace *ws, int ngroups)
{
    const size_t G = (size_t)ngroups, nd = G > 1 ? G - 1 : 1;
    const size_t nf = 2 * G * TILE + 9 * nd * TILE + 13 * (size_t)TILE;
    memset(ws, 0, sizeof(*ws));
    ws->e = (float *)malloc(nf * sizeof(float));
    ws->dd = (double *)malloc(9 * nd * sizeof(double));
    ws->dus = (unsigned char *)malloc(2 * G);
    ws->reach = (int *)malloc(G * sizeof(int));
    if (ws->e == NULL || ws->dd == NULL || ws->dus == NULL || ws->reach == NULL) {
        ws_free(ws);
        return JW_ERR_ALLOC;
    }
    float *f = ws->e;
    ws->e = f; f += G * TILE;
    ws->ug = f; f += G * TILE;
    float **arrs[] = {&ws->us, &ws->d, &ws->del, &ws->idel, &ws->y1, &ws->yd, &ws->v, &ws->w,
                      &ws->dinv};
    for (size_t a = 0; a < sizeof(arrs) / sizeof(arrs[0]); a++) { *arrs[a] = f; f += nd * TILE; }
    float **pix[] = {&ws->gx, &ws->sx, &ws->valid, &ws->ieta, &ws->aus, &ws->bus, &ws->t2,
                     &ws->n, &ws->sumd, &ws->ngood, &ws->cand, &ws->sacc, &ws->wacc};
    for (size_t a = 0; a < sizeof(pix) / sizeof(pix[0]); a++) { *pix[a] = f; f += TILE; }
    double *g = ws->dd;
    double **darr[] = {&ws->dd, &ws->ddel, &ws->didel, &ws->dy1, &ws->dyd, &ws->dv, &ws->dw,
                       &ws->ddinv, &ws->dz};
    for (size_t a = 0; a < sizeof(darr) / sizeof(darr[0]); a++) { *darr[a] = g; g += nd; }
    ws->dug = ws->dus + G;
    return JW_OK;
}

static int push_event(workspace *ws, int64_t off)
{
    if (ws->nev == ws->cap) {
        size_t cap = ws->cap ? 2 * ws->cap : 256;
        int64_t *ev = (int64_t *)realloc(ws->ev, cap * sizeof(int64_t));
        if (ev == NULL) return JW_ERR_ALLOC;
        ws->ev = ev;
        ws->cap = cap;
    }
    ws->ev[ws->nev++] = off;
    return JW_OK;
}

static inline double threshold_for(int n, const jw_jump_params *P)
{
    if (n >= 4) return P->rejection_threshold;
    if (n == 3) return P->four_group_threshold;
    return P->three_group_threshold;
}

/* Double-precision GLS sweep over nd differences (us[k]: usable and not yet flagged).
 * Fills v = S^-1 1, w = S^-1 d, dinv = diag(S^-1) and returns 1' v, 1' w. */
static void gls_sweep_d(workspace *ws, int nd, double a_use, double b_use, double *S, double *W)
{
    const double *d = ws->dd;
    const unsigned char *us = ws->dus;
    double *del = ws->ddel, *idel = ws->didel, *y1 = ws->dy1, *yd = ws->dyd;
    double *v = ws->dv, *w = ws->dw, *dinv = ws->ddinv;
    for (int k = 0; k < nd; k++) {
        double a = us[k] ? a_use : 1.0;
        double b = (k > 0 && us[k] && us[k - 1]) ? b_use : 0.0;
        double l = k > 0 ? b * idel[k - 1] : 0.0;
        del[k] = a - l * b;
        idel[k] = 1.0 / del[k];
        y1[k] = (us[k] ? 1.0 : 0.0) - (k > 0 ? l * y1[k - 1] : 0.0);
        yd[k] = (us[k] ? d[k] : 0.0) - (k > 0 ? l * yd[k - 1] : 0.0);
    }
    double s1 = 0.0, sw = 0.0, ieta = 0.0;
    for (int k = nd - 1; k >= 0; k--) {
        double a = us[k] ? a_use : 1.0;
        if (k == nd - 1) {
            ieta = 1.0 / a;
            v[k] = y1[k] * idel[k];
            w[k] = yd[k] * idel[k];
            dinv[k] = idel[k];
        } else {
            double b1 = (us[k] && us[k + 1]) ? b_use : 0.0;
            double t = b1 * b1 * ieta;
            v[k] = (y1[k] - b1 * v[k + 1]) * idel[k];
            w[k] = (yd[k] - b1 * w[k + 1]) * idel[k];
            dinv[k] = 1.0 / (del[k] - t);
            ieta = 1.0 / (a - t);
        }
        if (us[k]) { s1 += v[k]; sw += w[k]; }
    }
    *S = s1;
    *W = sw;
}

/* Candidate pass for one pixel: iterate the test in double precision over a virtual ramp of
 * nint integrations of G groups (consecutive planes `plane` apart; differences across an
 * integration boundary are not used). Integrations with fewer than minimum_groups usable groups
 * take no part. Flags go to `out`; mean_out[j] (stride `plane`) gets integration j's mean
 * non-jump usable difference (DN). Returns the number of jumps. */
static int pixel_iterate(workspace *ws, const float *ramp, const uint8_t *q, uint8_t *out,
                         size_t plane, int nint, int G, double gain, double s, double c,
                         const jw_jump_params *P, int64_t off0, float *mean_out)
{
    const int GV = nint * G, nd = GV - 1;
    double *d = ws->dd, *z = ws->dz;
    unsigned char *us = ws->dus;
    unsigned char *ug = ws->dug;
    for (int j = 0; j < nint; j++) {
        int ngood = 0;
        for (int g = j * G; g < (j + 1) * G; g++) {
            float vv = ramp[(size_t)g * plane];
            ug[g] = (unsigned char)(((q[(size_t)g * plane] & BAD_BITS) == 0) && isfinite(vv));
            ngood += ug[g];
        }
        if (ngood < P->minimum_groups)
            for (int g = j * G; g < (j + 1) * G; g++) ug[g] = 0;
    }
    for (int k = 0; k < nd; k++) {
        us[k] = (unsigned char)(ug[k] && ug[k + 1] && (k % G) != G - 1);
        d[k] = us[k] ? (double)ramp[(size_t)(k + 1) * plane] * gain
                           - (double)ramp[(size_t)k * plane] * gain
                     : 0.0;
    }
    int njump = 0;
    for (;;) {
        int n = 0;
        double sum = 0.0, dmax = -INFINITY, dmin = INFINITY;
        for (int k = 0; k < nd; k++)
            if (us[k]) {
                n++;
                sum += d[k];
                dmax = d[k] > dmax ? d[k] : dmax;
                dmin = d[k] < dmin ? d[k] : dmin;
            }
        if (n < 2) break;
        double lam = n >= 4 ? (sum - dmax - dmin) / (n - 2) : sum / n;
        if (lam < 0.0) lam = 0.0;
        double a_use = lam * (1.0 - 2.0 * c) + 2.0 * s, b_use = lam * c - s;
        if (!(a_use > 0.0)) break;
        double S, W;
        gls_sweep_d(ws, nd, a_use, b_use, &S, &W);
        if (!(S > 0.0)) break;
        double m = W / S;
        int best = -1;
        double bestz = -1.0;
        for (int k = 0; k < nd; k++) {
            if (!us[k]) continue;
            double pk = ws->ddinv[k] - ws->dv[k] * ws->dv[k] / S;
            double num = ws->dw[k] - ws->dv[k] * m;
            z[k] = pk > 0.0 ? fabs(num) / sqrt(pk) : 0.0;
            if (z[k] > bestz) { bestz = z[k]; best = k; }
        }
        if (n == 2) {
            double bd = -1.0;
            for (int k = 0; k < nd; k++)
                if (us[k] && fabs(d[k]) > bd) { bd = fabs(d[k]); best = k; }
            bestz = z[best];
        }
        if (best < 0 || !(bestz > threshold_for(n, P))) break;
        us[best] = 0;
        out[(size_t)(best + 1) * plane] |= JUMP_BIT;
        njump++;
        if (P->flag_4_neighbors && bestz > P->min_jump_to_flag_neighbors
            && bestz < P->max_jump_to_flag_neighbors) {
            if (push_event(ws, off0 + (int64_t)(best + 1) * (int64_t)plane)) ws->err = JW_ERR_ALLOC;
        }
    }
    for (int j = 0; j < nint; j++) {
        int n = 0;
        double sum = 0.0;
        for (int k = j * G; k < j * G + G - 1; k++) if (us[k]) { n++; sum += d[k]; }
        mean_out[(size_t)j * plane] = n > 0 ? (float)(sum / n / gain) : NAN;
    }
    return njump;
}

/* Tile kernels: loops over the pixels of a tile, [difference][TILE] buffers. Each loads and
 * computes unconditionally and then selects, with restrict arguments, so that it vectorises. */
#define R restrict
#define FORX for (int x = 0; x < tw; x++)

static inline void tile_pixel_model(int tw, const float *R gain, const float *R rn, float *R gx,
                                    float *R sx, float *R valid, float *R ngood, float half_over_nf)
{
    FORX {
        const float g = gain[x], r = rn[x];
        const int okg = (g > 0.0f) & ((g - g) == 0.0f);
        const int okr = (r >= 0.0f) & ((r - r) == 0.0f);
        const float rg = r * g, s = rg * rg * half_over_nf;
        gx[x] = okg ? g : 0.0f;
        sx[x] = (okg & okr) ? s : 0.0f;
        valid[x] = (okg & okr) ? 1.0f : 0.0f;
        ngood[x] = 0.0f;
    }
}

/* One group: electrons and usability; copy of the DQ with JUMP_DET cleared where redundant. */
static inline void tile_gather(int tw, const float *R src, const uint8_t *R qs, uint8_t *R qo,
                               const float *R gx, float *R eg, float *R ugg, float *R ngood)
{
    FORX {
        const uint8_t q = qs[x];
        const float v = src[x], ev = v * gx[x];
        const uint8_t bad = (uint8_t)((q & BAD_BITS) != 0);
        const uint8_t keep = (uint8_t)(bad ? (uint8_t)~JUMP_BIT : 0xFFu);
        qo[x] = (uint8_t)(q & keep);
        const float ok = (bad == 0 && (v - v) == 0.0f) ? 1.0f : 0.0f;
        eg[x] = ok > 0.0f ? ev : 0.0f;
        ugg[x] = ok;
        ngood[x] += ok;
    }
}

/* Integrations with fewer than minimum_groups usable groups take no part in the test. */
static inline void tile_min_groups(int tw, float *R ugj, int G, float *R ngood, float mgroups)
{
    FORX ngood[x] = ngood[x] >= mgroups ? 1.0f : 0.0f;
    for (int g = 0; g < G; g++) {
        float *R u = ugj + (size_t)g * TILE;
        FORX u[x] *= ngood[x];
    }
    FORX ngood[x] = 0.0f;
}

static inline void tile_diff(int tw, const float *R e0, const float *R e1, const float *R u0,
                             const float *R u1, float *R uk, float *R dk, float *R nn,
                             float *R sumd, float *R dmax, float *R dmin, int first, float keep)
{
    FORX {
        const float u = u0[x] * u1[x] * keep, df = e1[x] - e0[x];
        const float dv = u > 0.0f ? df : 0.0f;
        const float hi = u > 0.0f ? df : -INFINITY, lo = u > 0.0f ? df : INFINITY;
        const float mx = first ? -INFINITY : dmax[x], mn = first ? INFINITY : dmin[x];
        uk[x] = u;
        dk[x] = dv;
        nn[x] = first ? u : nn[x] + u;
        sumd[x] = first ? dv : sumd[x] + dv;
        dmax[x] = hi > mx ? hi : mx;
        dmin[x] = lo < mn ? lo : mn;
    }
}

static inline void tile_noise(int tw, const float *R nn, const float *R sumd,
                              const float *R dmax, const float *R dmin, const float *R sx,
                              const float *R valid, float *R cand, float *R aus, float *R bus,
                              float *R t2, float one_m2c, float cf, float t_rej, float t_four,
                              float t_three)
{
    FORX {
        const float n = nn[x], sv = sx[x];
        /* Poisson rate: mean difference, the largest and smallest left out when 4 or more are
         * usable (so that a jump does not inflate the noise it is tested against). */
        const int clip = n >= 4.0f;
        const float sd = clip ? sumd[x] - dmax[x] - dmin[x] : sumd[x];
        const float nu = clip ? n - 2.0f : n;
        const float mean = sd / (nu > 0.0f ? nu : 1.0f);
        const float lam = mean > 0.0f ? mean : 0.0f;
        const float a = lam * one_m2c + 2.0f * sv;
        const float b = lam * cf - sv;
        const int act = (valid[x] > 0.0f) & (n >= 2.0f) & (a > 0.0f);
        cand[x] = act ? 1.0f : 0.0f;
        aus[x] = act ? a : 1.0f;
        bus[x] = act ? b : 0.0f;
        t2[x] = n >= 4.0f ? t_rej : (n >= 3.0f ? t_four : t_three);
    }
}

/* Mean usable difference of one integration (nd differences from uj, dj), DN. */
static inline void tile_int_mean(int tw, const float *R uj, const float *R dj, int nd,
                                 const float *R gx, float *R nacc, float *R sacc, float *R mdiff)
{
    FORX { nacc[x] = 0.0f; sacc[x] = 0.0f; }
    for (int k = 0; k < nd; k++) {
        const float *R u = uj + (size_t)k * TILE, *R d = dj + (size_t)k * TILE;
        FORX { nacc[x] += u[x]; sacc[x] += d[x]; }
    }
    FORX {
        const float n = nacc[x], gg = gx[x];
        const float md = sacc[x] / (n > 0.0f ? n : 1.0f) / (gg > 0.0f ? gg : 1.0f);
        mdiff[x] = ((gg > 0.0f) & (n > 0.0f)) ? md : NAN;
    }
}

/* Forward sweep step k of the LDL' factorisation, right-hand sides 1 and d. k = 0 has up = NULL. */
static inline void tile_forward(int tw, const float *R uk, const float *R up, const float *R dk,
                                const float *R aus, const float *R bus, const float *R idp,
                                const float *R y1p, const float *R ydp, float *R delk,
                                float *R idk, float *R y1k, float *R ydk)
{
    if (up == NULL) {
        FORX {
            const float au = aus[x];
            const float a = uk[x] > 0.0f ? au : 1.0f;
            delk[x] = a;
            idk[x] = 1.0f / a;
            y1k[x] = uk[x];
            ydk[x] = dk[x];
        }
        return;
    }
    FORX {
        const float au = aus[x], bu = bus[x];
        const float a = uk[x] > 0.0f ? au : 1.0f;
        const float b = uk[x] * up[x] > 0.0f ? bu : 0.0f;
        const float l = b * idp[x];
        const float dl = a - l * b;
        delk[x] = dl;
        idk[x] = 1.0f / dl;
        y1k[x] = uk[x] - l * y1p[x];
        ydk[x] = dk[x] - l * ydp[x];
    }
}

/* Backward sweep step k: v = S^-1 1, w = S^-1 d, diag(S^-1) and the sums 1'v, 1'w. The last
 * difference has un = NULL. ieta carries the inverse backward pivot. */
static inline void tile_backward(int tw, const float *R uk, const float *R un, const float *R aus,
                                 const float *R bus, const float *R delk, const float *R idk,
                                 const float *R y1k, const float *R ydk, const float *R vn,
                                 const float *R wn, float *R vk, float *R wk, float *R dik,
                                 float *R ieta, float *R sacc, float *R wacc)
{
    if (un == NULL) {
        FORX {
            const float au = aus[x];
            const float a = uk[x] > 0.0f ? au : 1.0f;
            const float vx = y1k[x] * idk[x], wx = ydk[x] * idk[x];
            ieta[x] = 1.0f / a;
            vk[x] = vx;
            wk[x] = wx;
            dik[x] = idk[x];
            sacc[x] = uk[x] * vx;
            wacc[x] = uk[x] * wx;
        }
        return;
    }
    FORX {
        const float au = aus[x], bu = bus[x];
        const float a = uk[x] > 0.0f ? au : 1.0f;
        const float b1 = uk[x] * un[x] > 0.0f ? bu : 0.0f;
        const float t = b1 * b1 * ieta[x];
        const float vx = (y1k[x] - b1 * vn[x]) * idk[x];
        const float wx = (ydk[x] - b1 * wn[x]) * idk[x];
        vk[x] = vx;
        wk[x] = wx;
        dik[x] = 1.0f / (delk[x] - t);
        ieta[x] = 1.0f / (a - t);
        sacc[x] += uk[x] * vx;
        wacc[x] += uk[x] * wx;
    }
}

static inline void tile_screen_prep(int tw, float *R sacc, float *R wacc, float *R hit)
{
    FORX {
        const float sv = sacc[x], inv = 1.0f / sv;
        const float is = sv > 0.0f ? inv : 0.0f;
        sacc[x] = is;
        wacc[x] = wacc[x] * is;
        hit[x] = 0.0f;
    }
}

/* hit |= (usable and num_k^2 > t2 P_kk); NaN counts as a hit. */
static inline void tile_screen(int tw, const float *R uk, const float *R vk, const float *R wk,
                               const float *R dik, const float *R is, const float *R m,
                               const float *R t2, float *R hit)
{
    FORX {
        const float pk = dik[x] - vk[x] * vk[x] * is[x];
        const float num = wk[x] - vk[x] * m[x];
        const float q = num * num - t2[x] * pk;
        const float h = ((uk[x] > 0.0f) & !(q <= 0.0f)) ? 1.0f : 0.0f;
        hit[x] = h > hit[x] ? h : hit[x];
    }
}
#undef FORX
#undef R

/* The row kernel is compiled twice on x86-64 Linux with GCC, for AVX2 and for the baseline ISA,
 * and the loader picks the one the CPU supports (the tile loops then run 8 floats wide). Results
 * are identical: no FP contraction (ISO C mode), the same IEEE operations in both. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define JW_ROW_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define JW_ROW_CLONES
#endif

/* One row y of nint integrations from i0 (nint = 1, or the whole block when pooling): copy the
 * DQ, screen in single precision, decide the candidates in double precision. */
JW_ROW_CLONES
static void process_row(workspace *ws, const float *data, const uint8_t *gdq, const float *gain,
                        const float *rn, uint8_t *out, uint32_t *pdq, float *mdiff, int i0,
                        int nint, int y, int G, int ny, int nx, const jw_jump_params *P, double c)
{
    const size_t plane = (size_t)ny * (size_t)nx;
    const int GV = nint * G, nd = GV - 1;
    const float cf = (float)c, one_m2c = (float)(1.0 - 2.0 * c);
    const float half_over_nf = 0.5f / (float)P->nframes;
    const float mgroups = (float)P->minimum_groups;
    const float t_rej = (float)(P->rejection_threshold * P->rejection_threshold) * SCREEN;
    const float t_four = (float)(P->four_group_threshold * P->four_group_threshold) * SCREEN;
    const float t_three = (float)(P->three_group_threshold * P->three_group_threshold) * SCREEN;
    const size_t T = TILE;

    for (int x0 = 0; x0 < nx; x0 += TILE) {
        const int tw = nx - x0 < TILE ? nx - x0 : TILE;
        const size_t pix0 = (size_t)y * nx + x0;
        const size_t base = (size_t)i0 * G * plane + pix0;
        float *md = mdiff + (size_t)i0 * plane + pix0;

        tile_pixel_model(tw, gain + pix0, rn + pix0, ws->gx, ws->sx, ws->valid, ws->ngood,
                         half_over_nf);
        if (i0 == 0) {
            for (int x = 0; x < tw; x++)
                if (ws->gx[x] == 0.0f) pdq[pix0 + x] |= (uint32_t)(DQ_NO_GAIN_VALUE | DQ_DO_NOT_USE);
        }
        for (int j = 0; j < nint; j++) {
            for (int g = j * G; g < (j + 1) * G; g++) {
                const size_t o = base + (size_t)g * plane;
                tile_gather(tw, data + o, gdq + o, out + o, ws->gx, ws->e + g * T, ws->ug + g * T,
                            ws->ngood);
            }
            tile_min_groups(tw, ws->ug + (size_t)j * G * T, G, ws->ngood, mgroups);
        }
        if (nd < 1) {
            for (int x = 0; x < tw; x++) md[x] = NAN;
            continue;
        }
        for (int k = 0; k < nd; k++)
            tile_diff(tw, ws->e + k * T, ws->e + (k + 1) * T, ws->ug + k * T, ws->ug + (k + 1) * T,
                      ws->us + k * T, ws->d + k * T, ws->n, ws->sumd, ws->wacc, ws->sacc,
                      k == 0, (k % G) == G - 1 ? 0.0f : 1.0f);
        tile_noise(tw, ws->n, ws->sumd, ws->wacc, ws->sacc, ws->sx, ws->valid, ws->cand, ws->aus,
                   ws->bus, ws->t2, one_m2c, cf, t_rej, t_four, t_three);
        for (int j = 0; j < nint; j++)
            tile_int_mean(tw, ws->us + (size_t)j * G * T, ws->d + (size_t)j * G * T, G - 1, ws->gx,
                          ws->ngood, ws->ieta, md + (size_t)j * plane);
        for (int k = 0; k < nd; k++) {
            const size_t o = k * T, p = k > 0 ? (k - 1) * T : 0;
            tile_forward(tw, ws->us + o, k > 0 ? ws->us + p : NULL, ws->d + o, ws->aus, ws->bus,
                         ws->idel + p, ws->y1 + p, ws->yd + p, ws->del + o, ws->idel + o,
                         ws->y1 + o, ws->yd + o);
        }
        for (int k = nd - 1; k >= 0; k--) {
            const size_t o = k * T, nxt = k < nd - 1 ? (k + 1) * T : o;
            tile_backward(tw, ws->us + o, k < nd - 1 ? ws->us + nxt : NULL, ws->aus, ws->bus,
                          ws->del + o, ws->idel + o, ws->y1 + o, ws->yd + o, ws->v + nxt,
                          ws->w + nxt, ws->v + o, ws->w + o, ws->dinv + o, ws->ieta, ws->sacc,
                          ws->wacc);
        }
        tile_screen_prep(tw, ws->sacc, ws->wacc, ws->ieta);
        for (int k = 0; k < nd; k++)
            tile_screen(tw, ws->us + k * T, ws->v + k * T, ws->w + k * T, ws->dinv + k * T,
                        ws->sacc, ws->wacc, ws->t2, ws->ieta);

        /* Decide the candidates in double precision. */
        for (int x = 0; x < tw; x++) {
            if (!(ws->cand[x] > 0.0f && ws->ieta[x] > 0.0f)) continue;
            const size_t off = base + (size_t)x;
            const double gd = (double)ws->gx[x], rd = (double)rn[pix0 + x];
            const double s = (rd * gd) * (rd * gd) / (2.0 * P->nframes);
            ws->njumps += pixel_iterate(ws, data + off, gdq + off, out + off, plane, nint, G, gd,
                                        s, c, P, (int64_t)off, md + x);
        }
    }
}

/* After-jump flagging for one row: groups following a jump of at least dn1 (dn2) DN above the
 * mean difference get JUMP_DET for n1 (n2) groups, where neither SATURATED nor DO_NOT_USE. */
static void after_jump_row(workspace *ws, const float *data, const uint8_t *gdq, uint8_t *out,
                           const float *mdiff, int i, int y, int G, int ny, int nx,
                           const jw_jump_params *P)
{
    const size_t plane = (size_t)ny * (size_t)nx;
    int *reach = ws->reach;
    for (int x = 0; x < nx; x++) {
        const size_t off = (size_t)i * G * plane + (size_t)y * nx + x;
        const double mean = mdiff[(size_t)i * plane + (size_t)y * nx + x];
        int any = 0;
        /* Sources first (from the flags before this pass), then propagate. */
        for (int g = 1; g < G; g++) {
            reach[g] = 0;
            if (!(out[off + (size_t)g * plane] & JUMP_BIT)) continue;
            const uint8_t q0 = gdq[off + (size_t)(g - 1) * plane], q1 = gdq[off + (size_t)g * plane];
            const float v0 = data[off + (size_t)(g - 1) * plane], v1 = data[off + (size_t)g * plane];
            if (((q0 | q1) & BAD_BITS) || !isfinite(v0) || !isfinite(v1) || !isfinite(mean))
                continue;
            const double amp = ((double)v1 - (double)v0) - mean;
            if (P->after_jump_flag_n1 > 0 && amp >= P->after_jump_flag_dn1)
                reach[g] = P->after_jump_flag_n1;
            if (P->after_jump_flag_n2 > 0 && amp >= P->after_jump_flag_dn2
                && P->after_jump_flag_n2 > reach[g])
                reach[g] = P->after_jump_flag_n2;
            any |= reach[g] > 0;
        }
        if (!any) continue;
        long until = 0;
        for (int g = 1; g < G; g++) {
            if (g <= until && !(gdq[off + (size_t)g * plane] & BAD_BITS))
                out[off + (size_t)g * plane] |= JUMP_BIT;
            if (reach[g] > 0 && (long)g + reach[g] > until) until = (long)g + reach[g];
        }
    }
}

int jw_detect_jumps(const float *data, const uint8_t *groupdq, const float *gain,
                    const float *readnoise, uint8_t *groupdq_out, uint32_t *pixeldq,
                    float *mean_diff, int64_t *n_jumps, int nints, int ngroups, int ny, int nx,
                    const jw_jump_params *params, int nthreads)
{
    if (nints < 0 || ngroups < 1 || ny < 0 || nx < 0) return JW_ERR_SHAPE;
    if (params->nframes < 1 || !(params->group_time > 0.0) || params->frame_time < 0.0)
        return JW_ERR_PARAM;
    *n_jumps = 0;
    if (nints == 0 || ny == 0 || nx == 0) return JW_OK;
    const int N = params->nframes;
    double c = 0.0;
    if (N > 1 && params->frame_time > 0.0)
        c = params->frame_time / params->group_time * ((double)N * N - 1.0) / (6.0 * N);
    if (c > 1.0 / 6.0) c = 1.0 / 6.0;
    const int nthr = nthreads < 1 ? 1 : nthreads;
    workspace *wss = (workspace *)calloc((size_t)nthr, sizeof(workspace));
    if (wss == NULL) return JW_ERR_ALLOC;
    int status = JW_OK;
    const int pool = params->pool_integrations != 0;
    const long nrows = pool ? (long)ny : (long)nints * ny;

    #pragma omp parallel num_threads(nthr)
    {
#ifdef _OPENMP
        workspace *ws = &wss[omp_get_thread_num()];
#else
        workspace *ws = &wss[0];
#endif
        if (ws_alloc(ws, pool ? nints * ngroups : ngroups) != JW_OK) ws->err = JW_ERR_ALLOC;
        #pragma omp for schedule(static)
        for (long r = 0; r < nrows; r++) {
            if (ws->err) continue;
            process_row(ws, data, groupdq, gain, readnoise, groupdq_out, pixeldq, mean_diff,
                        pool ? 0 : (int)(r / ny), pool ? nints : 1, (int)(r % ny), ngroups, ny,
                        nx, params, c);
        }
    }

    /* Neighbours of the jumps in range, where neither SATURATED nor DO_NOT_USE. */
    int64_t total = 0;
    for (int t = 0; t < nthr; t++) {
        workspace *ws = &wss[t];
        if (ws->err) status = ws->err;
        total += ws->njumps;
        for (size_t j = 0; j < ws->nev; j++) {
            const int64_t off = ws->ev[j];
            const int64_t x = off % nx, row = (off / nx) % ny;
            const int64_t nb[4] = {x > 0 ? off - 1 : -1, x < nx - 1 ? off + 1 : -1,
                                   row > 0 ? off - nx : -1, row < ny - 1 ? off + nx : -1};
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0 && !(groupdq[nb[k]] & BAD_BITS)) groupdq_out[nb[k]] |= JUMP_BIT;
        }
    }
    *n_jumps = total;

    if (status == JW_OK && ngroups > 2
        && (params->after_jump_flag_n1 > 0 || params->after_jump_flag_n2 > 0)) {
        #pragma omp parallel num_threads(nthr)
        {
#ifdef _OPENMP
            workspace *ws = &wss[omp_get_thread_num()];
#else
            workspace *ws = &wss[0];
#endif
            #pragma omp for schedule(static)
            for (long r = 0; r < (long)nints * ny; r++) {
                if (ws->err) continue;
                after_jump_row(ws, data, groupdq, groupdq_out, mean_diff, (int)(r / ny),
                               (int)(r % ny), ngroups, ny, nx, params);
            }
        }
    }
    for (int t = 0; t < nthr; t++) ws_free(&wss[t]);
    free(wss);
    return status;
}
