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
 * group of the difference. That is the symmetric test (the same thresholds for both signs). With
 * different thresholds for z > 0 (the thresholds above) and z < 0 (neg_*), the candidate is the
 * largest |z_k| over the threshold of its sign (two differences left: the larger d_k, as a
 * positive step), and with split_frames > 1 also the positive "split" template (e_k + e_k+1) / 2
 * of a hit arriving between the frames of a group: z = t'P d / sqrt(t'P t), which needs
 * P_k,k+1 = (S^-1)_k,k+1 - v_k v_k+1 / 1'v with (S^-1)_k,k+1 = -(b_k / del_k) (S^-1)_k+1,k+1
 * from the same factorisation.
 *
 * Common mode (jw_line_offsets, optional): per integration, difference and detector line segment
 * (rows or columns, amplifier segments), the clipped inverse-variance weighted mean of d_k - m
 * over the segment's pixels, subtracted from d_k before the test (1/f noise that is the same
 * along a line and that no per-pixel noise model covers).
 *
 * Implementation. S is tridiagonal; S^-1 1, S^-1 d and diag(S^-1) come from one forward and one
 * backward sweep (diag via (S^-1)_kk = 1 / (delta_k + eta_k - a_k) with forward and backward
 * pivots). A row is processed in tiles of TILE pixels with the groups gathered into small per-thread
 * buffers laid out [difference][pixel], so every sweep is a loop over pixels that the compiler
 * vectorises; this first pass runs in single precision and only screens, in two stages. The
 * forward sweep alone gives the chi-square of the constant-rate fit, d'Pd, which bounds every
 * z^2 (Cauchy-Schwarz), so a pixel whose chi-square is below 0.998 of its threshold squared
 * cannot have a jump: that stops ~95% of clean pixels. The rest are moved to the front of the
 * tile buffers for the backward sweep and the z screen (largest z^2 below 0.998 of the threshold
 * squared: no jump). The few candidates left are redone from the data in double precision,
 * iterating, and only those decisions set flags. Unusable differences are
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
    float *gx, *sx, *valid, *ieta, *aus, *bus, *t2, *n, *sumd, *ngood, *cand, *sacc, *wacc, *co;
    float *mu, *q11, *q1d, *qdd;
    int *idx;  /* the tile's pixels that pass the chi-square screen */
    /* Scalar (double) buffers for the candidate pass, [difference]. */
    double *dd, *ddel, *didel, *dy1, *dyd, *dv, *dw, *ddinv, *dz, *dco;
    unsigned char *dus, *dug;
    int *reach;
    /* Neighbour events: offsets of jumps whose four neighbours are to be flagged. */
    int64_t *ev;
    size_t nev, cap;
    int64_t njumps;
    int err;
    float *lbuf;  /* line buffer for the row offsets computed with the rows (line_fused) */
} workspace;

/* The calling thread's workspace (one per OpenMP thread). */
static inline workspace *thread_workspace(workspace *wss)
{
#ifdef _OPENMP
    return &wss[omp_get_thread_num()];
#else
    return &wss[0];
#endif
}

static void ws_free(workspace *ws)
{
    free(ws->e);
    free(ws->dd);
    free(ws->dus);
    free(ws->reach);
    free(ws->idx);
    free(ws->ev);
    free(ws->lbuf);
    memset(ws, 0, sizeof(*ws));
}

static int ws_alloc(workspace *ws, int ngroups, size_t nlbuf)
{
    const size_t G = (size_t)ngroups, nd = G > 1 ? G - 1 : 1;
    const size_t nf = 2 * G * TILE + 9 * nd * TILE + 18 * (size_t)TILE;
    memset(ws, 0, sizeof(*ws));
    ws->e = (float *)malloc(nf * sizeof(float));
    ws->dd = (double *)malloc(10 * nd * sizeof(double));
    ws->dus = (unsigned char *)malloc(2 * G);
    ws->reach = (int *)malloc(G * sizeof(int));
    ws->idx = (int *)malloc(TILE * sizeof(int));
    ws->lbuf = nlbuf > 0 ? (float *)malloc(nlbuf * sizeof(float)) : NULL;
    if (ws->e == NULL || ws->dd == NULL || ws->dus == NULL || ws->reach == NULL || ws->idx == NULL
        || (nlbuf > 0 && ws->lbuf == NULL)) {
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
                     &ws->n, &ws->sumd, &ws->ngood, &ws->cand, &ws->sacc, &ws->wacc, &ws->co,
                     &ws->mu, &ws->q11, &ws->q1d, &ws->qdd};
    for (size_t a = 0; a < sizeof(pix) / sizeof(pix[0]); a++) { *pix[a] = f; f += TILE; }
    double *g = ws->dd;
    double **darr[] = {&ws->dd, &ws->ddel, &ws->didel, &ws->dy1, &ws->dyd, &ws->dv, &ws->dw,
                       &ws->ddinv, &ws->dz, &ws->dco};
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

static inline double neg_threshold_for(int n, const jw_jump_params *P)
{
    if (n >= 4) return P->neg_rejection_threshold;
    if (n == 3) return P->neg_four_group_threshold;
    return P->neg_three_group_threshold;
}

/* The same threshold for both signs: the |z| test (decisions as with a single threshold). */
static inline int symmetric(const jw_jump_params *P)
{
    return P->rejection_threshold == P->neg_rejection_threshold
           && P->four_group_threshold == P->neg_four_group_threshold
           && P->three_group_threshold == P->neg_three_group_threshold;
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
 * take no part. dco: NULL or the common-mode offset (DN) of each virtual difference, subtracted.
 * Flags go to `out`; mean_out[j] (stride `plane`) gets integration j's mean non-jump usable
 * difference (DN). Returns the number of jumps. */
static int pixel_iterate(workspace *ws, const float *ramp, const uint8_t *q, uint8_t *out,
                         size_t plane, int nint, int G, double gain, double s, double c,
                         const jw_jump_params *P, int64_t off0, float *mean_out,
                         const double *dco)
{
    const int sym = symmetric(P);
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
                           - (dco != NULL ? dco[k] * gain : 0.0)
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
        double bestz = -1.0, bests = -1.0;
        const double tp = threshold_for(n, P), tn = neg_threshold_for(n, P);
        for (int k = 0; k < nd; k++) {
            if (!us[k]) continue;
            double pk = ws->ddinv[k] - ws->dv[k] * ws->dv[k] / S;
            double num = ws->dw[k] - ws->dv[k] * m;
            z[k] = pk > 0.0 ? fabs(num) / sqrt(pk) : 0.0;
            /* Score: |z| for the symmetric test, else |z| over the threshold of its sign. */
            double sc = sym ? z[k] : z[k] / (num > 0.0 ? tp : tn);
            if (sc > bests) { bests = sc; bestz = z[k]; best = k; }
        }
        /* A hit arriving at frame j > 0 of a group of NF averaged frames puts (NF - j) / NF of
         * its charge in difference k and the rest in k + 1. One template, the even share
         * t = (e_k + e_k+1) / 2, covers the uneven ones well: z = t'P d / sqrt(t'P t), with
         * P_k,k+1 = (S^-1)_k,k+1 - v_k v_k+1 / 1'S^-1 1 and (S^-1)_k,k+1 = -(b_k / del_k)
         * (S^-1)_k+1,k+1 (LDL' of the tridiagonal S). Positive steps only; the flag goes on the
         * later group of the difference with the larger part. */
        for (int k = 0; !sym && P->split_frames > 1 && k + 1 < nd; k++) {
            if (!(us[k] && us[k + 1])) continue;
            const double vk = ws->dv[k], vk1 = ws->dv[k + 1];
            const double pkk = ws->ddinv[k] - vk * vk / S;
            const double p11 = ws->ddinv[k + 1] - vk1 * vk1 / S;
            const double pk1 = -b_use * ws->didel[k] * ws->ddinv[k + 1] - vk * vk1 / S;
            const double a0 = ws->dw[k] - vk * m, a1 = ws->dw[k + 1] - vk1 * m;
            const double num = 0.5 * a0 + 0.5 * a1;
            const double den = 0.25 * pkk + 0.5 * pk1 + 0.25 * p11;
            if (!(num > 0.0 && den > 0.0)) continue;
            const double zs = num / sqrt(den);
            if (zs / tp > bests) { bests = zs / tp; bestz = zs; best = a0 >= a1 ? k : k + 1; }
        }

        if (n == 2) {
            /* Then |z_0| = |z_1|: a step in either. The symmetric test takes the larger |d_k|;
             * the positive one the larger d_k, as a positive step (the sign cosmic rays have). */
            double bd = -INFINITY;
            for (int k = 0; k < nd; k++) {
                const double dk = sym ? fabs(d[k]) : d[k];
                if (us[k] && dk > bd) { bd = dk; best = k; }
            }
            bestz = z[best];
            bests = sym ? bestz : bestz / tp;
        }
        if (best < 0 || !(sym ? bestz > tp : bests > 1.0)) break;
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
    float all = 1.0f;
    FORX {
        const float m = ngood[x] >= mgroups ? 1.0f : 0.0f;
        ngood[x] = m;
        all = m < all ? m : all;
    }
    /* Usually every pixel of the tile has enough groups: then there is nothing to mask. */
    for (int g = 0; all == 0.0f && g < G; g++) {
        float *R u = ugj + (size_t)g * TILE;
        FORX u[x] *= ngood[x];
    }
    FORX ngood[x] = 0.0f;
}

/* Difference k of the tile, electrons, less its common-mode offset: co[x], or with `uniform`
 * o * gx[x] (a tile within one segment of a row: offset o DN, with no pass of its own to spread
 * it over the tile; the same product, then subtracted). Usability, value, and the running count,
 * sum, max and min of the pixel's usable differences. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void tile_diff_at(int tw, const float *R e0, const float *R e1, const float *R u0,
                                const float *R u1, const float *R co, float o,
                                const float *R gx, float *R uk, float *R dk, float *R nn,
                                float *R sumd, float *R dmax, float *R dmin, int first,
                                float keep, int uniform)
{
    /* Two loops rather than `first ? ... : acc[x]` inside one: a load under a condition keeps
     * GCC from vectorising the loop. The first starts each accumulator as the second would
     * from n = 0, max = -inf, min = +inf (sumd = dv exactly, even for dv = -0). */
    if (first) {
        FORX {
            const float off = uniform ? o * gx[x] : co[x];
            const float u = u0[x] * u1[x] * keep, df = e1[x] - e0[x] - off;
            const float dv = u > 0.0f ? df : 0.0f;
            const float hi = u > 0.0f ? df : -INFINITY, lo = u > 0.0f ? df : INFINITY;
            const float mx = -INFINITY, mn = INFINITY;
            uk[x] = u;
            dk[x] = dv;
            nn[x] = u;
            sumd[x] = dv;
            dmax[x] = hi > mx ? hi : mx;
            dmin[x] = lo < mn ? lo : mn;
        }
        return;
    }
    FORX {
        const float off = uniform ? o * gx[x] : co[x];
        const float u = u0[x] * u1[x] * keep, df = e1[x] - e0[x] - off;
        const float dv = u > 0.0f ? df : 0.0f;
        const float hi = u > 0.0f ? df : -INFINITY, lo = u > 0.0f ? df : INFINITY;
        const float mx = dmax[x], mn = dmin[x];
        uk[x] = u;
        dk[x] = dv;
        nn[x] = nn[x] + u;
        sumd[x] = sumd[x] + dv;
        dmax[x] = hi > mx ? hi : mx;
        dmin[x] = lo < mn ? lo : mn;
    }
}

/* tile_diff_at with the offsets co, or o * gx where co is NULL. */
static inline void tile_diff(int tw, const float *R e0, const float *R e1, const float *R u0,
                             const float *R u1, const float *R co, float o, const float *R gx,
                             float *R uk, float *R dk, float *R nn, float *R sumd, float *R dmax,
                             float *R dmin, int first, float keep)
{
    if (co == NULL)
        tile_diff_at(tw, e0, e1, u0, u1, NULL, o, gx, uk, dk, nn, sumd, dmax, dmin, first, keep,
                     1);
    else
        tile_diff_at(tw, e0, e1, u0, u1, co, 0.0f, gx, uk, dk, nn, sumd, dmax, dmin, first, keep,
                     0);
}

static inline void tile_noise(int tw, const float *R nn, const float *R sumd,
                              const float *R dmax, const float *R dmin, const float *R sx,
                              const float *R valid, float *R cand, float *R aus, float *R bus,
                              float *R t2, float *R mu, float one_m2c, float cf, float t_rej,
                              float t_four, float t_three)
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
        mu[x] = act ? mean : 0.0f;
        aus[x] = act ? a : 1.0f;
        bus[x] = act ? b : 0.0f;
        t2[x] = n >= 4.0f ? t_rej : (n >= 3.0f ? t_four : t_three);
    }
}

/* Mean difference from a count and sum of usable differences, DN (NaN: none, or no gain). */
static inline void tile_mean_of(int tw, const float *R nacc, const float *R sacc,
                                const float *R gx, float *R mdiff)
{
    FORX {
        const float n = nacc[x], gg = gx[x];
        const float md = sacc[x] / (n > 0.0f ? n : 1.0f) / (gg > 0.0f ? gg : 1.0f);
        mdiff[x] = ((gg > 0.0f) & (n > 0.0f)) ? md : NAN;
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
    tile_mean_of(tw, nacc, sacc, gx, mdiff);
}

/* The same for a lone integration, from tile_diff's count and sum of the same differences
 * (added in the same order; + 0 turns a sum of -0 into the +0 the loop above starts from). */
static inline void tile_lone_mean(int tw, const float *R nn, const float *R sumd,
                                  const float *R gx, float *R sacc, float *R mdiff)
{
    FORX sacc[x] = sumd[x] + 0.0f;
    tile_mean_of(tw, nn, sacc, gx, mdiff);
}

/* Forward sweep step k of the LDL' factorisation S = L D L', right-hand sides 1 and d - mu (the
 * differences less the pixel's mean: z and chi-square do not change with a constant added to d,
 * and their single-precision sums then do not cancel for bright pixels). k = 0 has up = NULL.
 * With `chi`, the screen's pass over the whole tile: it adds up the chi-square of the
 * constant-rate fit, chi2 = y'D^-1 y - (y1'D^-1 y)^2 / y1'D^-1 y1 with y = L^-1 (d - mu) and
 * y1 = L^-1 1, in qdd, q1d and q11, and keeps only what step k + 1 needs (not delk). Without,
 * the pass the backward sweep follows, on the pixels the screen lets through. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void tile_forward_at(int tw, const float *R uk, const float *R up,
                                   const float *R dk, const float *R mu, const float *R aus,
                                   const float *R bus, const float *R idp, const float *R y1p,
                                   const float *R ydp, float *R delk, float *R idk, float *R y1k,
                                   float *R ydk, float *R q11, float *R q1d, float *R qdd,
                                   int first, int chi)
{
    FORX {
        const float au = aus[x], bu = first ? 0.0f : bus[x];
        const float a = uk[x] > 0.0f ? au : 1.0f;
        const float b = first ? 0.0f : (uk[x] * up[x] > 0.0f ? bu : 0.0f);
        const float l = first ? 0.0f : b * idp[x];
        const float dl = first ? a : a - l * b, id = 1.0f / dl;
        const float yc = dk[x] - mu[x] * uk[x];
        const float y1 = first ? uk[x] : uk[x] - l * y1p[x], yd = first ? yc : yc - l * ydp[x];
        if (!chi) delk[x] = dl;
        idk[x] = id;
        y1k[x] = y1;
        ydk[x] = yd;
        if (chi) {
            q11[x] = (first ? 0.0f : q11[x]) + y1 * y1 * id;
            q1d[x] = (first ? 0.0f : q1d[x]) + y1 * yd * id;
            qdd[x] = (first ? 0.0f : qdd[x]) + yd * yd * id;
        }
    }
}

/* tile_forward_at, instances by step (first or not) and pass (chi or not). */
static inline void tile_forward(int tw, const float *R uk, const float *R up, const float *R dk,
                                const float *R mu, const float *R aus, const float *R bus,
                                const float *R idp, const float *R y1p, const float *R ydp,
                                float *R delk, float *R idk, float *R y1k, float *R ydk,
                                float *R q11, float *R q1d, float *R qdd)
{
    const int chi = q11 != NULL;
    if (up == NULL && chi)
        tile_forward_at(tw, uk, NULL, dk, mu, aus, bus, NULL, NULL, NULL, NULL, idk, y1k, ydk,
                        q11, q1d, qdd, 1, 1);
    else if (chi)
        tile_forward_at(tw, uk, up, dk, mu, aus, bus, idp, y1p, ydp, NULL, idk, y1k, ydk, q11,
                        q1d, qdd, 0, 1);
    else if (up == NULL)
        tile_forward_at(tw, uk, NULL, dk, mu, aus, bus, NULL, NULL, NULL, delk, idk, y1k, ydk,
                        NULL, NULL, NULL, 1, 0);
    else
        tile_forward_at(tw, uk, up, dk, mu, aus, bus, idp, y1p, ydp, delk, idk, y1k, ydk, NULL,
                        NULL, NULL, 0, 0);
}

/* The first screen, after the chi-square forward sweep: a tested pixel goes on to the z test
 * (its index into idx; returns how many) unless chi2 <= t2. Every z of the test, and of the
 * split template, is a normalised t'P(d - mu) with P positive semi-definite, so
 * z^2 <= (t'Pt)(d'Pd) / t'Pt = chi2 (Cauchy-Schwarz): a pixel below the threshold in
 * chi-square has no z above it. Most pixels stop here (chi-square with 8 degrees of freedom,
 * 9 differences, passes 16 in 4% of clean pixels), without the backward sweep. NaN goes on. */
static inline int tile_chi_screen(int tw, const float *R cand, const float *R q11,
                                  const float *R q1d, const float *R qdd, const float *R t2,
                                  float *R flag, int *R idx)
{
    FORX {
        const float s = q11[x] > 0.0f ? q11[x] : 1.0f;
        const float chi2 = qdd[x] - q1d[x] * q1d[x] / s;
        flag[x] = ((cand[x] > 0.0f) & !(chi2 <= t2[x])) ? 1.0f : 0.0f;
    }
    int m = 0;
    for (int x = 0; x < tw; x++) {  /* without a branch: the flags are random */
        idx[m] = x;
        m += flag[x] > 0.0f;
    }
    return m;
}

/* Move the m pixels idx[] (increasing) of a per-pixel array to its front, in place. */
static inline void tile_compact(int m, const int *R idx, float *a)
{
    for (int j = 0; j < m; j++) a[j] = a[idx[j]];
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

/* Split template of differences k, k+1 (see pixel_iterate): hit |= (a_k + a_k+1) / 2 > 0 and
 * its square > t2 t'P t. */
static inline void tile_screen_split(int tw, const float *R uk, const float *R uk1,
                                     const float *R vk, const float *R vk1, const float *R wk,
                                     const float *R wk1, const float *R idk, const float *R dik,
                                     const float *R dik1, const float *R bus, const float *R is,
                                     const float *R m, const float *R t2, float *R hit)
{
    {
        const float f = 0.5f, h = 0.5f;
        FORX {
            const float v0 = vk[x], v1 = vk1[x], sx = is[x];
            const float pkk = dik[x] - v0 * v0 * sx, p11 = dik1[x] - v1 * v1 * sx;
            const float pk1 = -bus[x] * idk[x] * dik1[x] - v0 * v1 * sx;
            const float a0 = wk[x] - v0 * m[x], a1 = wk1[x] - v1 * m[x];
            const float num = f * a0 + h * a1;
            const float den = f * f * pkk + 2.0f * f * h * pk1 + h * h * p11;
            const float q = num * num - t2[x] * den;
            const float h1 = ((uk[x] * uk1[x] > 0.0f) & !(num <= 0.0f) & !(q <= 0.0f)) ? 1.0f
                                                                                       : 0.0f;
            hit[x] = h1 > hit[x] ? h1 : hit[x];
        }
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

/* The row kernels are compiled three times on x86-64 Linux with GCC, for AVX-512, AVX2 and the
 * baseline ISA, and the loader picks the best the CPU supports (the tile loops then run 16 or 8
 * floats wide). Results are identical: no FP contraction (ISO C mode), the same IEEE operations
 * in each. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define JW_ROW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JW_ROW_CLONES
#endif

/* Index of pixel (y, x) in one difference's offset table [nlines][nseg]: lines are rows (axis 1)
 * or columns (axis 2), cut into nseg equal segments along their length. */
static inline int line_index(int axis, int nseg, int y, int x, int ny, int nx)
{
    if (axis == 1) return y * nseg + (int)((int64_t)x * nseg / nx);
    return x * nseg + (int)((int64_t)y * nseg / ny);
}

/* Common-mode offset of one difference at each pixel of the tile of row y from x0, electrons:
 * lo[line_index(...)] * gx[x], lo the difference's table [nlines][nseg]. Written per segment run
 * (rows) or as a strided load (columns), loops that vectorise, rather than a gather through a
 * per-pixel index with a 64-bit division each. */
static inline void tile_offsets(int tw, int axis, int nseg, int y, int x0, int ny, int nx,
                                const float *restrict lo, const float *restrict gx,
                                float *restrict co)
{
    if (axis == 1) {
        const float *restrict lr = lo + (size_t)y * nseg;
        int sg = (int)((int64_t)x0 * nseg / nx);
        for (int x = 0; x < tw; sg++) {
            /* First pixel of segment sg + 1: the smallest x with x nseg / nx >= sg + 1. */
            const int64_t nb = ((int64_t)(sg + 1) * nx + nseg - 1) / nseg - x0;
            const int e = nb < tw ? (int)nb : tw;
            const float o = lr[sg];
            for (int p = x; p < e; p++) co[p] = o * gx[p];
            x = e > x ? e : x;
        }
        return;
    }
    const int sy = (int)((int64_t)y * nseg / ny);
    const float *restrict lc = lo + (size_t)x0 * nseg + sy;
    if (nseg == 1)
        for (int x = 0; x < tw; x++) co[x] = lc[x] * gx[x];
    else
        for (int x = 0; x < tw; x++) co[x] = lc[(size_t)x * nseg] * gx[x];
}

/* Common-mode offsets (jw_line_offsets). The loops run over the pixels of a line with selects
 * rather than branches, so that they vectorise. */
#define LANES 16
#define LINE_CHUNK 512
#define R restrict
/* Row length in the line buffer: npix rounded up to whole blocks of 8 pixels, plus one cache
 * line so that rows of a power-of-two length do not all map to the same L1 sets (a loop over
 * the pixels touches a dozen rows at once). */
static size_t line_stride(int npix)
{
    return ((size_t)npix + 7) / 8 * 8 + 16;
}

static size_t line_buf_floats(int G, int npix)
{
    return (2 * (size_t)(G > 1 ? G - 1 : 1) + 5) * line_stride(npix);
}

/* A clipped weighted sum keeps LANES partial sums (of w, w x and the count of pixels kept),
 * filled pixel by pixel from the segment's start: in the main part pixel p - p0 goes to lane
 * (p - p0) % LANES, the tail after the last whole LANES to lanes 0, 1, ...; the lanes are then
 * added in order in double precision. Vectorised, and the same for any thread count. These
 * three helpers are its arithmetic, shared by the row (line_clipped_mean) and column
 * (column_clipped_means) versions so that both give the same offsets. */
#define CLIP_MAIN(w, x, off, clip2, sw, swr, sc)                                                   \
    do {                                                                                          \
        const float e_ = (x) - (off);                                                             \
        /* w >= 0 always; w = 0 adds nothing, so only the clip needs a mask. */                   \
        const float keep_ = e_ * e_ * (w) < (clip2) ? 1.0f : 0.0f;                                \
        const float kw_ = keep_ * (w);                                                            \
        (sw) += kw_;                                                                              \
        (swr) += kw_ * (x);                                                                       \
        (sc) += (w) > 0.0f ? keep_ : 0.0f;                                                        \
    } while (0)
#define CLIP_TAIL(w, x, off, clip2, sw, swr, sc)                                                   \
    do {                                                                                          \
        const float e_ = (x) - (off);                                                             \
        const int keep_ = ((w) > 0.0f) & (e_ * e_ * (w) < (clip2));                               \
        (sw) += keep_ ? (w) : 0.0f;                                                               \
        (swr) += keep_ ? (w) * (x) : 0.0f;                                                        \
        (sc) += keep_ ? 1.0f : 0.0f;                                                              \
    } while (0)

/* The offset from LANES partial sums `stride` apart; 0 with too few pixels. */
static inline float clip_offset(const float *sw, const float *swr, const float *sc,
                                size_t stride)
{
    double tw = 0.0, twr = 0.0, tc = 0.0;
    for (int l = 0; l < LANES; l++) {
        tw += sw[(size_t)l * stride];
        twr += swr[(size_t)l * stride];
        tc += sc[(size_t)l * stride];
    }
    return (tc >= JW_LINE_MIN_PIXELS && tw > 0.0) ? (float)(twr / tw) : 0.0f;
}

/* Clipped weighted mean of (rk, weights wk) over [p0, p1) around off, clip2 the squared clip in
 * units of each pixel's sigma. */
static inline float line_clipped_mean(const float *R rk, const float *R wk, int p0, int p1,
                                      float off, float clip2)
{
    float sw[LANES], swr[LANES], sc[LANES];
    for (int l = 0; l < LANES; l++) { sw[l] = 0.0f; swr[l] = 0.0f; sc[l] = 0.0f; }
    int p = p0;
    for (; p + LANES <= p1; p += LANES)
        for (int l = 0; l < LANES; l++)
            CLIP_MAIN(wk[p + l], rk[p + l], off, clip2, sw[l], swr[l], sc[l]);
    for (int l = 0; p < p1; p++, l++)
        CLIP_TAIL(wk[p], rk[p], off, clip2, sw[l], swr[l], sc[l]);
    return clip_offset(sw, swr, sc, 1);
}
#undef R

#define R restrict
/* Difference k of a line straight from the data (groups k and k+1, contiguous pixels):
 * d into dk (0 where unusable), usability into wk; the pixel's usable groups (group k+1, and
 * group 0 with `first`) and its count, sum, max and min of the usable differences (started here
 * with `first`, from 0 groups, 0, -inf and +inf, as the running loop would). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void line_diff_at(int np, const float *R v0, const float *R v1,
                                const uint8_t *R q0, const uint8_t *R q1, float *R dk,
                                float *R wk, float *R ng, float *R cnt, float *R sum, float *R mx,
                                float *R mn, int first)
{
    for (int p = 0; p < np; p++) {
        const float a = v0[p], b = v1[p];
        const int ok0 = ((q0[p] & BAD_BITS) == 0) & ((a - a) == 0.0f);
        const int ok1 = ((q1[p] & BAD_BITS) == 0) & ((b - b) == 0.0f);
        const float u = (ok0 & ok1) ? 1.0f : 0.0f;
        const float d = (ok0 & ok1) ? b - a : 0.0f;
        const float hi = u > 0.0f ? d : -INFINITY, lo = u > 0.0f ? d : INFINITY;
        const float ng0 = first ? (ok0 ? 1.0f : 0.0f) : ng[p];
        const float cnt0 = first ? 0.0f : cnt[p], sum0 = first ? 0.0f : sum[p];
        const float mx0 = first ? -INFINITY : mx[p], mn0 = first ? INFINITY : mn[p];
        dk[p] = d;
        wk[p] = u;
        ng[p] = ng0 + (ok1 ? 1.0f : 0.0f);
        cnt[p] = cnt0 + u;
        sum[p] = sum0 + d;
        mx[p] = hi > mx0 ? hi : mx0;
        mn[p] = lo < mn0 ? lo : mn0;
    }
}

/* line_diff_at, with separate instances for the first difference and the others. */
static inline void line_diff(int np, const float *R v0, const float *R v1, const uint8_t *R q0,
                             const uint8_t *R q1, float *R dk, float *R wk, float *R ng,
                             float *R cnt, float *R sum, float *R mx, float *R mn, int first)
{
    if (first)
        line_diff_at(np, v0, v1, q0, q1, dk, wk, ng, cnt, sum, mx, mn, 1);
    else
        line_diff_at(np, v0, v1, q0, q1, dk, wk, ng, cnt, sum, mx, mn, 0);
}

/* The pixel's mean difference m (largest and smallest left out with 4 or more) into sum and its
 * weight 1/var(d_k) as the test models the noise into cnt (0 where the pixel is not tested). */
static inline void line_model(int np, const float *R gain, const float *R rn,
                              const float *R ngood, float *R sum, float *R cnt,
                              const float *R mx, const float *R mn, float mgroups,
                              float one_m2c, float inv_nf)
{
    for (int p = 0; p < np; p++) {
        const float g_ = gain[p], r_ = rn[p], n = cnt[p];
        const int okg = (g_ > 0.0f) & ((g_ - g_) == 0.0f) & (r_ >= 0.0f) & ((r_ - r_) == 0.0f);
        const int clip = n >= 4.0f;
        const float sd = clip ? sum[p] - mx[p] - mn[p] : sum[p];
        const float nu = clip ? n - 2.0f : n;
        const float m = sd / (nu > 0.0f ? nu : 1.0f);
        const float gg = okg ? g_ : 1.0f;
        const float lam = m * gg > 0.0f ? m * gg : 0.0f;
        const float rg = (okg ? r_ : 0.0f) * gg;
        const float var = (lam * one_m2c + rg * rg * inv_nf) / (gg * gg);
        const int ok = okg & (ngood[p] >= mgroups) & (n >= 2.0f) & (var > 0.0f);
        sum[p] = m;
        cnt[p] = ok ? 1.0f / (var > 0.0f ? var : 1.0f) : 0.0f;
    }
}

static inline void line_resid(int np, float *R rk, float *R wk, const float *R m,
                              const float *R w)
{
    for (int p = 0; p < np; p++) {
        rk[p] = rk[p] - m[p];
        wk[p] = wk[p] * w[p];
    }
}
#undef R

/* Differences, per-pixel model and residuals of np contiguous pixels (v, q: their group 0;
 * groups `plane` apart): the differences' residuals d_k - m into res + k kstride and their
 * weights into wgt + k kstride; ng, cnt, sum, mx, mn: np floats of scratch. */
#if defined(__GNUC__)
__attribute__((always_inline))  /* compiled into each clone of its callers */
#endif
static inline void line_pixels(int np, const float *v, const uint8_t *q, size_t plane,
                               const float *gain, const float *rn, int nd, float *res,
                               float *wgt, size_t kstride, float *ng, float *cnt, float *sum,
                               float *mx, float *mn, float c, int nframes, float mgroups)
{
    for (int k = 0; k < nd; k++)
        line_diff(np, v + (size_t)k * plane, v + (size_t)(k + 1) * plane, q + (size_t)k * plane,
                  q + (size_t)(k + 1) * plane, res + (size_t)k * kstride,
                  wgt + (size_t)k * kstride, ng, cnt, sum, mx, mn, k == 0);
    line_model(np, gain, rn, ng, sum, cnt, mx, mn, mgroups, 1.0f - 2.0f * c,
               1.0f / (float)nframes);
    for (int k = 0; k < nd; k++)
        line_resid(np, res + (size_t)k * kstride, wgt + (size_t)k * kstride, sum, cnt);
}

/* Common-mode offsets of one row (npix pixels from `first`, a pixel index into the (ny, nx)
 * plane) of integration i: out[k * kstride + seg] for each difference k and segment.
 * buf: per-thread buffer of line_buf_floats(G, npix) floats. */
JW_ROW_CLONES
static void line_offsets_one(const float *data, const uint8_t *gdq, const float *gain,
                             const float *rn, size_t plane, size_t ibase, size_t first,
                             int npix, int G, int nseg, float c, int nframes, float mgroups,
                             float *buf, float *out, size_t kstride)
{
    const int nd = G - 1;
    const size_t NP = line_stride(npix);
    /* buf rows of NP floats: [nd] differences then residuals d_k - m (DN), [nd] usability then
     * weights 1 / var(d_k) (0: not used), then per pixel count, sum, max, min, usable groups. */
    float *res = buf, *wgt = res + (size_t)nd * NP;
    float *cnt = wgt + (size_t)nd * NP, *sum = cnt + NP, *mx = sum + NP, *mn = mx + NP;
    float *ng = mn + NP;
    const float *src = data + ibase + first;
    const uint8_t *qs = gdq + ibase + first;
    /* Differences, per-pixel model and residuals chunk by chunk, so that the per-pixel
     * accumulators and the chunk's rows stay in L1 across the differences. */
    for (int c0 = 0; c0 < npix; c0 += LINE_CHUNK) {
        const int cw = npix - c0 < LINE_CHUNK ? npix - c0 : LINE_CHUNK;
        line_pixels(cw, src + c0, qs + c0, plane, gain + first + c0, rn + first + c0, nd,
                    res + c0, wgt + c0, NP, ng + c0, cnt + c0, sum + c0, mx + c0, mn + c0, c,
                    nframes, mgroups);
    }
    /* Per difference and segment: inverse-variance weighted mean, clipped at 5 sigma of each
     * pixel around 0 (which the offsets are small compared with), then at 4 sigma around that
     * first value (so sources, hits and bad pixels drop out). */
    for (int k = 0; k < nd; k++) {
        const float *rk = res + (size_t)k * NP, *wk = wgt + (size_t)k * NP;
        for (int sgm = 0; sgm < nseg; sgm++) {
            const int p0 = (int)((int64_t)sgm * npix / nseg);
            const int p1 = (int)((int64_t)(sgm + 1) * npix / nseg);
            const float o = line_clipped_mean(rk, wk, p0, p1, 0.0f, 25.0f);
            out[(size_t)k * kstride + sgm] = line_clipped_mean(rk, wk, p0, p1, o, 16.0f);
        }
    }
}
/* Columns as lines (fast axis y), a block of adjacent columns at a time, walking down the rows:
 * the per-pixel steps are the row case's loops on the block's contiguous pixels of each row,
 * and the clipped sums along each column are kept per column in the same LANES partial sums,
 * filled in the same order, as line_clipped_mean keeps along a contiguous line. So the offsets
 * are those of line_offsets_one on each column, without copying the columns out (reading a
 * column in place would touch a new cache line per pixel). */

#define COL_AHEAD 4  /* rows ahead to prefetch */

/* Column block width: 128 columns (a row's 512 bytes of a group: whole cache lines, and loops
 * long enough to vectorise well), halved down to 8 while the block's residuals and weights
 * (2 nd rows floats per column) would pass 16 MB. Measured (2 threads, A/B over 4 rounds):
 * 128 beats 64 by 12-14% on full-frame columns (121-125 ms against 141-147 ms) and on the
 * 256 x 2048 TSO stream, and 64 beats 32 and 16, even when the buffer outgrows L2 (the rows are
 * read once; the buffer twice). The width changes no result: each column keeps its own sums. */
static int column_block_width(int nd, int rows)
{
    const size_t per_col = 2 * (size_t)(nd > 0 ? nd : 1) * (size_t)rows * sizeof(float);
    int w = 128;
    while (w > 8 && (size_t)w * per_col > ((size_t)16 << 20)) w /= 2;
    return w;
}

/* line_clipped_mean of each of the W columns of rk, wk ([ny][W]: rows p0 to p1), around
 * off[W], into o[W]: the lanes of each column W floats apart. acc: 3 LANES W floats. */
#if defined(__GNUC__)
__attribute__((always_inline))  /* compiled into each clone of column_block_offsets */
#endif
static inline void column_clipped_means(const float *restrict rk, const float *restrict wk,
                                        int W, int p0, int p1, const float *restrict off,
                                        float clip2, float *restrict acc, float *restrict o)
{
    float *restrict sw = acc, *restrict swr = acc + (size_t)LANES * W;
    float *restrict sc = swr + (size_t)LANES * W;
    for (size_t j = 0; j < (size_t)3 * LANES * W; j++) acc[j] = 0.0f;
    const int pm = p0 + (p1 - p0) / LANES * LANES;
    for (int p = p0; p < pm; p++) {
        const size_t l = (size_t)((p - p0) % LANES) * W;
        const float *restrict r = rk + (size_t)p * W, *restrict wv = wk + (size_t)p * W;
        for (int x = 0; x < W; x++)
            CLIP_MAIN(wv[x], r[x], off[x], clip2, sw[l + x], swr[l + x], sc[l + x]);
    }
    for (int p = pm; p < p1; p++) {
        const size_t l = (size_t)(p - pm) * W;
        const float *restrict r = rk + (size_t)p * W, *restrict wv = wk + (size_t)p * W;
        for (int x = 0; x < W; x++)
            CLIP_TAIL(wv[x], r[x], off[x], clip2, sw[l + x], swr[l + x], sc[l + x]);
    }
    for (int x = 0; x < W; x++) o[x] = clip_offset(sw + x, swr + x, sc + x, (size_t)W);
}

/* Offsets of the W columns from x0 of integration i (ibase its first sample): out[k * kstride
 * + j * nseg + seg] for column x0 + j. Segment by segment (the per-pixel model is that of one
 * pixel, the sums those of one segment), so buf holds one segment: 2 nd rows W + (8 + 3 LANES)
 * W floats, rows the longest segment. */
JW_ROW_CLONES
static void column_block_offsets(const float *data, const uint8_t *gdq, const float *gain,
                                 const float *rn, size_t ibase, int x0, int W, int ny, int nx,
                                 int G, int nseg, float c, int nframes, float mgroups,
                                 float *buf, int rows, float *out, size_t kstride)
{
    const int nd = G - 1;
    const size_t plane = (size_t)ny * (size_t)nx, kw = (size_t)rows * W;
    float *res = buf, *wgt = res + (size_t)nd * kw;
    float *ng = wgt + (size_t)nd * kw, *cnt = ng + W, *sum = cnt + W, *mx = sum + W, *mn = mx + W;
    float *acc = mn + W, *zero = acc + (size_t)3 * LANES * W, *o1 = zero + W, *o2 = o1 + W;
    for (int x = 0; x < W; x++) zero[x] = 0.0f;
    for (int sgm = 0; sgm < nseg; sgm++) {
        const int p0 = (int)((int64_t)sgm * ny / nseg);
        const int p1 = (int)((int64_t)(sgm + 1) * ny / nseg);
        for (int y = p0; y < p1; y++) {
            const size_t at = ibase + (size_t)y * nx + (size_t)x0, r = (size_t)(y - p0) * W;
#if defined(__GNUC__)
            /* The hardware prefetchers do not follow a dozen streams a row apart. */
            if (y + COL_AHEAD < ny)
                for (int g = 0; g < G; g++) {
                    const size_t a2 = at + (size_t)COL_AHEAD * nx + (size_t)g * plane;
                    for (int x = 0; x < W; x += 16) __builtin_prefetch(data + a2 + x, 0, 3);
                    for (int x = 0; x < W; x += 64) __builtin_prefetch(gdq + a2 + x, 0, 3);
                }
#endif
            line_pixels(W, data + at, gdq + at, plane, gain + (size_t)y * nx + x0,
                        rn + (size_t)y * nx + x0, nd, res + r, wgt + r, kw, ng, cnt, sum, mx, mn,
                        c, nframes, mgroups);
        }
        for (int k = 0; k < nd; k++) {
            const float *rk = res + (size_t)k * kw, *wk = wgt + (size_t)k * kw;
            column_clipped_means(rk, wk, W, 0, p1 - p0, zero, 25.0f, acc, o1);
            column_clipped_means(rk, wk, W, 0, p1 - p0, o1, 16.0f, acc, o2);
            for (int j = 0; j < W; j++) out[(size_t)k * kstride + (size_t)j * nseg + sgm] = o2[j];
        }
    }
}

static int column_offsets(const float *data, const uint8_t *gdq, const float *gain,
                          const float *rn, float *offsets, int nints, int G, int ny, int nx,
                          int nseg, float c, int nframes, float mgroups, int nthr)
{
    const size_t plane = (size_t)ny * (size_t)nx;
    /* Rows of the longest segment (segment starts are floor(s ny / nseg)). */
    const int rows = (ny + nseg - 1) / nseg;
    const int nd = G - 1, W = column_block_width(nd, rows), nblocks = (nx + W - 1) / W;
    int status = JW_OK;

    #pragma omp parallel num_threads(nthr)
    {
        float *buf = (float *)malloc(((size_t)2 * nd * rows + 8 + 3 * LANES) * (size_t)W
                                     * sizeof(float));
        const int err = buf == NULL;
        #pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < (long)nints * nblocks; t++) {
            if (err) continue;
            const int i = (int)(t / nblocks), x0 = (int)(t % nblocks) * W;
            const int w = nx - x0 < W ? nx - x0 : W;
            column_block_offsets(data, gdq, gain, rn, (size_t)i * (size_t)G * plane, x0, w, ny,
                                 nx, G, nseg, c, nframes, mgroups, buf, rows,
                                 offsets + ((size_t)i * nd * nx + (size_t)x0) * nseg,
                                 (size_t)nx * nseg);
        }
        if (err) {
            #pragma omp critical
            status = JW_ERR_ALLOC;
        }
        free(buf);
    }
    return status;
}

#undef CLIP_MAIN
#undef CLIP_TAIL
#undef LANES
#undef LINE_CHUNK

int jw_line_offsets(const float *data, const uint8_t *groupdq, const float *gain,
                    const float *readnoise, float *offsets, int nints, int ngroups, int ny, int nx,
                    const jw_jump_params *params, int nthreads)
{
    if (nints < 0 || ngroups < 1 || ny < 0 || nx < 0) return JW_ERR_SHAPE;
    if (params->nframes < 1 || !(params->group_time > 0.0) || params->frame_time < 0.0
        || (params->line_axis != 1 && params->line_axis != 2) || params->line_segments < 1)
        return JW_ERR_PARAM;
    if (nints == 0 || ny == 0 || nx == 0 || ngroups < 2) return JW_OK;
    const int N = params->nframes, nd = ngroups - 1, nseg = params->line_segments;
    double c = 0.0;
    if (N > 1 && params->frame_time > 0.0)
        c = params->frame_time / params->group_time * ((double)N * N - 1.0) / (6.0 * N);
    if (c > 1.0 / 6.0) c = 1.0 / 6.0;
    const size_t plane = (size_t)ny * (size_t)nx;
    const int nthr = nthreads < 1 ? 1 : nthreads;
    int status = JW_OK;

    if (params->line_axis == 2)
        return column_offsets(data, groupdq, gain, readnoise, offsets, nints, ngroups, ny, nx,
                              nseg, (float)c, N, (float)params->minimum_groups, nthr);

    #pragma omp parallel num_threads(nthr)
    {
        float *buf = (float *)malloc(line_buf_floats(ngroups, nx) * sizeof(float));
        int err = buf == NULL;
        #pragma omp for schedule(dynamic, 8)
        for (long t = 0; t < (long)nints * ny; t++) {
            if (err) continue;
            const int i = (int)(t / ny), y = (int)(t % ny);
            line_offsets_one(data, groupdq, gain, readnoise, plane,
                             (size_t)i * ngroups * plane, (size_t)y * nx, nx, ngroups, nseg,
                             (float)c, N, (float)params->minimum_groups, buf,
                             offsets + ((size_t)i * nd * ny + y) * nseg, (size_t)ny * nseg);
        }
        if (err) {
            #pragma omp critical
            status = JW_ERR_ALLOC;
        }
        free(buf);
    }
    return status;
}


/* Prefetch the same tile of the next row (ng planes from `base`, pixel pix of gain and rn): read
 * while the current row is computed, it is in cache when its turn comes. The hardware
 * prefetchers do not follow the many short streams (one per group, DQ and data) a row reads. */
static inline void prefetch_tile(const float *data, const uint8_t *gdq, const float *gain,
                                 const float *rn, size_t plane, size_t base, size_t pix, int ng,
                                 int tw)
{
#if defined(__GNUC__)
    for (int g = 0; g < ng; g++) {
        const float *v = data + base + (size_t)g * plane;
        const uint8_t *q = gdq + base + (size_t)g * plane;
        for (int x = 0; x < tw; x += 16) __builtin_prefetch(v + x, 0, 3);
        for (int x = 0; x < tw; x += 64) __builtin_prefetch(q + x, 0, 3);
    }
    for (int x = 0; x < tw; x += 16) {
        __builtin_prefetch(gain + pix + x, 0, 3);
        __builtin_prefetch(rn + pix + x, 0, 3);
    }
#else
    (void)data; (void)gdq; (void)gain; (void)rn; (void)plane; (void)base; (void)pix; (void)ng;
    (void)tw;
#endif
}

/* One row y of nint integrations from i0 (nint = 1, or the whole block when pooling): copy the
 * DQ, screen in single precision, decide the candidates in double precision. */
JW_ROW_CLONES
static void process_row(workspace *ws, const float *data, const uint8_t *gdq, const float *gain,
                        const float *rn, float *loff, uint8_t *out, uint32_t *pdq,
                        float *mdiff, int i0, int nint, int y, int G, int ny, int nx,
                        const jw_jump_params *P, double c)
{
    const size_t plane = (size_t)ny * (size_t)nx;
    const int GV = nint * G, nd = GV - 1;
    const float cf = (float)c, one_m2c = (float)(1.0 - 2.0 * c);
    const float half_over_nf = 0.5f / (float)P->nframes;
    const float mgroups = (float)P->minimum_groups;
    /* The screen tests |z| against the lower of the two signs' thresholds. */
    const double r_lo = fmin(P->rejection_threshold, P->neg_rejection_threshold);
    const double f_lo = fmin(P->four_group_threshold, P->neg_four_group_threshold);
    const double h_lo = fmin(P->three_group_threshold, P->neg_three_group_threshold);
    const float t_rej = (float)(r_lo * r_lo) * SCREEN;
    const float t_four = (float)(f_lo * f_lo) * SCREEN;
    const float t_three = (float)(h_lo * h_lo) * SCREEN;
    const int axis = loff != NULL ? P->line_axis : 0;
    const int nseg = P->line_segments > 0 ? P->line_segments : 1;
    const size_t nlines = axis == 2 ? (size_t)nx : (size_t)ny;
    const size_t T = TILE;

    /* Row offsets computed here, while the row's data are in cache (rather than in a pass of
     * their own over the block): the same function and inputs as jw_line_offsets. */
    if (axis == 1 && ws->lbuf != NULL)
        for (int j = 0; j < nint; j++)
            line_offsets_one(data, gdq, gain, rn, plane, (size_t)(i0 + j) * G * plane,
                             (size_t)y * nx, nx, G, nseg, (float)c, P->nframes, mgroups,
                             ws->lbuf, loff + ((size_t)(i0 + j) * (G - 1) * ny + y) * nseg,
                             (size_t)ny * nseg);

    for (int x0 = 0; x0 < nx; x0 += TILE) {
        const int tw = nx - x0 < TILE ? nx - x0 : TILE;
        const size_t pix0 = (size_t)y * nx + x0;
        const size_t base = (size_t)i0 * G * plane + pix0;
        float *md = mdiff + (size_t)i0 * plane + pix0;

        if (y + 1 < ny)
            prefetch_tile(data, gdq, gain, rn, plane, base + (size_t)nx, pix0 + (size_t)nx, nint * G,
                          tw);
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
        /* A tile within one segment of a row has one offset per difference. */
        const int seg0 = (int)((int64_t)x0 * nseg / nx);
        const int one_segment = axis == 1 && (int)((int64_t)(x0 + tw - 1) * nseg / nx) == seg0;
        for (int k = 0; k < nd; k++)
        {
            /* Common-mode offset of this difference at each pixel, electrons: o * gain, or
             * from a table co made for the tile. */
            const int j = k / G, kk = k % G;
            const float *co = NULL;
            float o = 0.0f;
            if (axis != 0 && kk != G - 1) {
                const float *lo = loff + ((size_t)(i0 + j) * (G - 1) + kk) * nlines * nseg;
                if (one_segment) {
                    o = lo[(size_t)y * nseg + (size_t)seg0];
                } else {
                    tile_offsets(tw, axis, nseg, y, x0, ny, nx, lo, ws->gx, ws->co);
                    co = ws->co;
                }
            }
            tile_diff(tw, ws->e + k * T, ws->e + (k + 1) * T, ws->ug + k * T, ws->ug + (k + 1) * T,
                      co, o, ws->gx, ws->us + k * T, ws->d + k * T, ws->n, ws->sumd, ws->wacc,
                      ws->sacc, k == 0, (k % G) == G - 1 ? 0.0f : 1.0f);
        }
        tile_noise(tw, ws->n, ws->sumd, ws->wacc, ws->sacc, ws->sx, ws->valid, ws->cand, ws->aus,
                   ws->bus, ws->t2, ws->mu, one_m2c, cf, t_rej, t_four, t_three);
        if (nint == 1)
            tile_lone_mean(tw, ws->n, ws->sumd, ws->gx, ws->ieta, md);
        else
            for (int j = 0; j < nint; j++)
                tile_int_mean(tw, ws->us + (size_t)j * G * T, ws->d + (size_t)j * G * T, G - 1,
                              ws->gx, ws->ngood, ws->ieta, md + (size_t)j * plane);
        /* Chi-square screen (its forward sweep keeps the last two steps only, rows 0 and 1 of
         * idel, y1 and yd); the z test on the pixels it lets through, moved to the front. */
        for (int k = 0; k < nd; k++) {
            const size_t o = (k & 1) * T, p = ((k + 1) & 1) * T;
            tile_forward(tw, ws->us + k * T, k > 0 ? ws->us + (k - 1) * T : NULL, ws->d + k * T,
                         ws->mu, ws->aus, ws->bus, ws->idel + p, ws->y1 + p, ws->yd + p, NULL,
                         ws->idel + o, ws->y1 + o, ws->yd + o, ws->q11, ws->q1d, ws->qdd);
        }
        const int m = tile_chi_screen(tw, ws->cand, ws->q11, ws->q1d, ws->qdd, ws->t2, ws->sacc,
                                      ws->idx);
        if (m == 0) continue;
        if (m < tw) {
            for (int k = 0; k < nd; k++) {
                tile_compact(m, ws->idx, ws->us + k * T);
                tile_compact(m, ws->idx, ws->d + k * T);
            }
            float *pix[] = {ws->mu, ws->aus, ws->bus, ws->t2};
            for (int a = 0; a < 4; a++) tile_compact(m, ws->idx, pix[a]);
        }
        for (int k = 0; k < nd; k++) {
            const size_t o = k * T, p = k > 0 ? (k - 1) * T : 0;
            tile_forward(m, ws->us + o, k > 0 ? ws->us + p : NULL, ws->d + o, ws->mu, ws->aus,
                         ws->bus, ws->idel + p, ws->y1 + p, ws->yd + p, ws->del + o,
                         ws->idel + o, ws->y1 + o, ws->yd + o, NULL, NULL, NULL);
        }
        for (int k = nd - 1; k >= 0; k--) {
            const size_t o = k * T, nxt = k < nd - 1 ? (k + 1) * T : o;
            tile_backward(m, ws->us + o, k < nd - 1 ? ws->us + nxt : NULL, ws->aus, ws->bus,
                          ws->del + o, ws->idel + o, ws->y1 + o, ws->yd + o, ws->v + nxt,
                          ws->w + nxt, ws->v + o, ws->w + o, ws->dinv + o, ws->ieta, ws->sacc,
                          ws->wacc);
        }
        tile_screen_prep(m, ws->sacc, ws->wacc, ws->ieta);
        for (int k = 0; k < nd; k++)
            tile_screen(m, ws->us + k * T, ws->v + k * T, ws->w + k * T, ws->dinv + k * T,
                        ws->sacc, ws->wacc, ws->t2, ws->ieta);
        if (!symmetric(P) && P->split_frames > 1)
            for (int k = 0; k + 1 < nd; k++)
                tile_screen_split(m, ws->us + k * T, ws->us + (k + 1) * T, ws->v + k * T,
                                  ws->v + (k + 1) * T, ws->w + k * T, ws->w + (k + 1) * T,
                                  ws->idel + k * T, ws->dinv + k * T, ws->dinv + (k + 1) * T,
                                  ws->bus, ws->sacc, ws->wacc, ws->t2, ws->ieta);

        /* Decide the candidates (pixel idx[j] where hit j) in double precision. */
        for (int j = 0; j < m; j++) {
            if (!(ws->ieta[j] > 0.0f)) continue;
            const int x = ws->idx[j];
            const size_t off = base + (size_t)x;
            const double gd = (double)ws->gx[x], rd = (double)rn[pix0 + x];
            const double s = (rd * gd) * (rd * gd) / (2.0 * P->nframes);
            if (axis != 0) {
                const int li = line_index(axis, nseg, y, x0 + x, ny, nx);
                for (int k = 0; k < nd; k++) {
                    const int j2 = k / G, kk = k % G;
                    ws->dco[k] = kk == G - 1 ? 0.0
                        : (double)loff[((size_t)(i0 + j2) * (G - 1) + kk) * nlines * nseg
                                       + (size_t)li];
                }
            }
            ws->njumps += pixel_iterate(ws, data + off, gdq + off, out + off, plane, nint, G, gd,
                                        s, c, P, (int64_t)off, md + x,
                                        axis != 0 ? ws->dco : NULL);
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
                    const float *readnoise, float *line_offsets, uint8_t *groupdq_out,
                    uint32_t *pixeldq, float *mean_diff, int64_t *n_jumps, int nints, int ngroups,
                    int ny, int nx, const jw_jump_params *params, int nthreads)
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
    const int fused = line_offsets != NULL && params->line_fused && params->line_axis == 1
                      && ngroups > 1;

    #pragma omp parallel num_threads(nthr)
    {
        workspace *ws = thread_workspace(wss);
        const size_t nlbuf = fused ? line_buf_floats(ngroups, nx) : 0;
        if (ws_alloc(ws, pool ? nints * ngroups : ngroups, nlbuf) != JW_OK) ws->err = JW_ERR_ALLOC;
        /* Rows are independent (results do not depend on the order): hand them out in small
         * chunks, so that a thread slowed by the other work on its core does not hold up the
         * whole block as with fixed halves (median 97 -> 77 ms on the full-frame benchmark). */
        #pragma omp for schedule(dynamic, 8)
        for (long r = 0; r < nrows; r++) {
            if (ws->err) continue;
            process_row(ws, data, groupdq, gain, readnoise, line_offsets, groupdq_out, pixeldq,
                        mean_diff,
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
            workspace *ws = thread_workspace(wss);
            #pragma omp for schedule(dynamic, 8)
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
