/* Per-pixel ramp kernels of the early stage-1 steps: saturation/A-D-floor flagging and the
 * classic polynomial linearity correction. Plain C, no Python; every loop is over independent
 * pixels so rows are shared out between threads.
 *
 * Saturation. For each integration and pixel the first group at or above the threshold is found;
 * that group and every later one get `sat_flag` (charge does not come back). Every group at or
 * below zero gets `floor_flag`. Saturation then grows into a (2*grow+1)^2 box, because charge
 * spills into neighbours: a neighbour saturates from the earliest group any pixel in its box
 * saturated. Arrays are C-contiguous: data/groupdq (nints, ngroups, ny, nx), threshold (ny, nx),
 * first_sat (nints, ny, nx) is an output (ngroups where the pixel never saturates; after growth).
 *
 * Linearity. data[g] <- c0 + c1 d + ... + c_{n-1} d^(n-1), evaluated by Horner's rule in float32
 * in the same operation order as the reference implementation (so results agree bit for bit),
 * except in groups whose group DQ has any bit of `skip_flag` (saturated groups keep their value).
 * coeffs is (ncoeffs, ny, nx). Work is ordered row by row with the groups inside, so a row of
 * coefficients is read from memory once per integration and reused from cache for every group.
 */
#include "saturation.h"
#include "dqflags.h"

#include <stdlib.h>
#include <string.h>

/* Hot row loops are compiled twice on x86-64 (AVX2 and baseline), chosen at load time. Neither
 * clone enables FMA, and C11 mode keeps a*b+c as two roundings, so results are identical. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define JW_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define JW_CLONES
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

/* Pass 1 of the saturation search for one row: the A/D floor in every group, and the first
 * group at or above the threshold (walking the groups backwards, the last hit is the earliest).
 * Groups are the outer loop so every inner loop is contiguous and vectorises. */
JW_CLONES
static void sat_row(const float *ramp, uint8_t *gdq, const float *restrict thr,
                    int16_t *restrict f, size_t npix, int ngroups, long nx, uint8_t floor_flag)
{
    for (long x = 0; x < nx; x++) f[x] = (int16_t)ngroups;
    for (int g = ngroups - 1; g >= 0; g--) {
        const float *restrict v = ramp + (size_t)g * npix;
        uint8_t *restrict q = gdq + (size_t)g * npix;
        const int16_t gg = (int16_t)g;
        for (long x = 0; x < nx; x++) {
            f[x] = (v[x] >= thr[x]) ? gg : f[x];
            q[x] |= (v[x] <= 0.0f) ? floor_flag : (uint8_t)0;
        }
    }
}

/* Pass 2 (horizontal half) for one row: out[x] = min(in[x-grow .. x+grow]), edges clipped. */
JW_CLONES
static void row_min(int16_t *restrict out, const int16_t *restrict in, long nx, int grow)
{
    for (long x = 0; x < nx; x++) out[x] = in[x];
    for (long k = 1; k <= grow && k < nx; k++) {
        for (long x = k; x < nx; x++) out[x] = in[x - k] < out[x] ? in[x - k] : out[x];
        for (long x = 0; x < nx - k; x++) out[x] = in[x + k] < out[x] ? in[x + k] : out[x];
    }
}

/* Pass 3 for one row: OR sat_flag into every group from the (grown) first saturated one on. */
JW_CLONES
static void flag_row(uint8_t *gdq, const int16_t *restrict f, size_t npix, int ngroups, long nx,
                     uint8_t sat_flag)
{
    int16_t fmin = (int16_t)ngroups;
    for (long x = 0; x < nx; x++) fmin = f[x] < fmin ? f[x] : fmin;
    for (int g = fmin; g < ngroups; g++) {
        uint8_t *restrict q = gdq + (size_t)g * npix;
        const int16_t gg = (int16_t)g;
        for (long x = 0; x < nx; x++) q[x] |= (f[x] <= gg) ? sat_flag : (uint8_t)0;
    }
}

int jw_flag_saturation(const float *data, const float *threshold, uint8_t *groupdq,
                       int16_t *first_sat, int nints, int ngroups, int ny, int nx,
                       int grow, uint8_t sat_flag, uint8_t floor_flag, int nthreads)
{
    if (nints < 0 || ngroups < 1 || ngroups > 32767 || ny < 0 || nx < 0 || grow < 0)
        return JW_ERR_SHAPE;
    if (nthreads < 1) nthreads = 1;
    const size_t npix = (size_t)ny * (size_t)nx;
    int status = JW_OK;
    (void)nthreads;

    for (int i = 0; i < nints && status == JW_OK; i++) {
        const float *ramp = data + (size_t)i * ngroups * npix;
        uint8_t *gdq = groupdq + (size_t)i * ngroups * npix;
        int16_t *first = first_sat + (size_t)i * npix;

        /* Pass 1: first saturated group and A/D floor, row by row. */
        #pragma omp parallel for schedule(static) num_threads(nthreads)
        for (long y = 0; y < ny; y++) {
            const size_t row = (size_t)y * nx;
            sat_row(ramp + row, gdq + row, threshold + row, first + row, npix, ngroups, nx,
                    floor_flag);
        }

        /* Pass 2: grow saturation by a box minimum of first-saturated groups (separable). */
        if (grow > 0) {
            int16_t *tmp = (int16_t *)malloc(npix * sizeof(int16_t));
            if (tmp == NULL) { status = JW_ERR_ALLOC; break; }
            #pragma omp parallel for schedule(static) num_threads(nthreads)
            for (long y = 0; y < ny; y++)
                row_min(tmp + (size_t)y * nx, first + (size_t)y * nx, nx, grow);
            #pragma omp parallel for schedule(static) num_threads(nthreads)
            for (long y = 0; y < ny; y++) {
                long y0 = y - grow < 0 ? 0 : y - grow, y1 = y + grow >= ny ? ny - 1 : y + grow;
                int16_t *restrict out = first + (size_t)y * nx;
                for (long x = 0; x < nx; x++) out[x] = tmp[(size_t)y0 * nx + x];
                for (long k = y0 + 1; k <= y1; k++) {
                    const int16_t *restrict t = tmp + (size_t)k * nx;
                    for (long x = 0; x < nx; x++) out[x] = t[x] < out[x] ? t[x] : out[x];
                }
            }
            free(tmp);
        }

        /* Pass 3: flag the saturated group and every later one (only rows that saturate). */
        if (sat_flag) {
            #pragma omp parallel for schedule(static) num_threads(nthreads)
            for (long y = 0; y < ny; y++) {
                flag_row(gdq + (size_t)y * nx, first + (size_t)y * nx, npix, ngroups, nx,
                         sat_flag);
            }
        }
    }
    return status;
}

/* Horner's rule for one row of one group, the degree fixed at compile time so the coefficient
 * loop unrolls and the pixel loop vectorises. Saturated groups keep their value through a bitwise
 * select (a branch would stop the vectoriser). */
#define JW_LIN_LOOP(N)                                                                   \
    for (long x = 0; x < nx; x++) {                                                      \
        const float v = d[x];                                                            \
        float a = c[(size_t)((N) - 1) * npix + x] * v;                                   \
        for (int k = (N) - 2; k >= 1; k--) a = (a + c[(size_t)k * npix + x]) * v;        \
        const float r = c[x] + a;                                                        \
        uint32_t vb, rb;                                                                 \
        memcpy(&vb, &v, sizeof vb);                                                      \
        memcpy(&rb, &r, sizeof rb);                                                      \
        const uint32_t m = (uint32_t)0 - (uint32_t)((q[x] & skip) != 0);                 \
        const uint32_t ob = (vb & m) | (rb & ~m);                                        \
        memcpy(&d[x], &ob, sizeof ob);                                                   \
    }

JW_CLONES
static void lin_row(float *restrict d, const uint8_t *restrict q, const float *restrict c,
                    size_t npix, int ncoeffs, long nx, uint8_t skip, float *restrict a)
{
    switch (ncoeffs) {
    case 2: JW_LIN_LOOP(2) return;
    case 3: JW_LIN_LOOP(3) return;
    case 4: JW_LIN_LOOP(4) return;
    case 5: JW_LIN_LOOP(5) return;
    case 6: JW_LIN_LOOP(6) return;
    case 7: JW_LIN_LOOP(7) return;
    case 8: JW_LIN_LOOP(8) return;
    default: break;
    }
    /* Any other degree: accumulate coefficient by coefficient in a row buffer. */
    for (long x = 0; x < nx; x++) a[x] = c[(size_t)(ncoeffs - 1) * npix + x] * d[x];
    for (int k = ncoeffs - 2; k >= 1; k--) {
        const float *restrict ck = c + (size_t)k * npix;
        for (long x = 0; x < nx; x++) a[x] = (a[x] + ck[x]) * d[x];
    }
    for (long x = 0; x < nx; x++) {
        const float r = c[x] + a[x];
        if (!(q[x] & skip)) d[x] = r;
    }
}

int jw_linearity(float *data, const uint8_t *groupdq, const float *coeffs, int ncoeffs,
                 int nints, int ngroups, int ny, int nx, uint8_t skip_flag, int nthreads)
{
    if (nints < 0 || ngroups < 0 || ny < 0 || nx < 0 || ncoeffs < 2)
        return JW_ERR_SHAPE;
    if (nthreads < 1) nthreads = 1;
    const size_t npix = (size_t)ny * (size_t)nx;
    int status = JW_OK;
    (void)nthreads;

    #pragma omp parallel num_threads(nthreads)
    {
        /* Per-thread row buffer (only used for polynomials of degree > 7). */
        float *acc = (float *)malloc((size_t)(nx > 0 ? nx : 1) * sizeof(float));
        if (acc == NULL) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }
        for (int i = 0; i < nints; i++) {
            /* Rows outside, groups inside: a row of coefficients stays in cache. */
            #pragma omp for schedule(static)
            for (long y = 0; y < ny; y++) {
                if (acc == NULL) continue;
                const size_t row = (size_t)y * nx;
                for (int g = 0; g < ngroups; g++) {
                    const size_t off = ((size_t)i * ngroups + g) * npix + row;
                    lin_row(data + off, groupdq + off, coeffs + row, npix, ncoeffs, nx,
                            skip_flag, acc);
                }
            }
        }
        free(acc);
    }
    return status;
}
