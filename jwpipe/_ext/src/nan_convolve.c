/* Direct evaluation over the kernel's non-zero taps: a shower ring has a few dozen, so this is
 * far cheaper than FFT convolutions of the whole frame (and needs no scipy.signal import). */
#include "nan_convolve.h"

#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* As in jump.c: GCC only if-converts (so vectorises) the selects of the tap loop when FP
 * operations are not assumed to trap; no result changes. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* Built for AVX2 and for the baseline ISA, chosen at load time (x86-64 Linux, GCC); the same
 * IEEE operations either way (no FP contraction), so the same results. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx2", "default")))
#endif
static void conv_row(const double *image, long ny, long nx, long y, const int *dy, const int *dx,
                     const double *w, int ntaps, double min_norm, double *norm, double *row)
{
    for (long x = 0; x < nx; x++) {
        row[x] = 0.0;
        norm[x] = 0.0;
    }
    for (int t = 0; t < ntaps; t++) {
        const long yy = y + dy[t];
        const double wt = w[t];
        if (yy < 0 || yy >= ny) { /* a whole row outside the image: all good */
            for (long x = 0; x < nx; x++) norm[x] += wt;
            continue;
        }
        const double *src = image + (size_t)yy * nx + dx[t];
        const long x0 = dx[t] < 0 ? (-dx[t] < nx ? -dx[t] : nx) : 0;
        const long x1 = dx[t] > 0 ? (nx - dx[t] > 0 ? nx - dx[t] : 0) : nx;
        for (long x = 0; x < x0; x++) norm[x] += wt;
        for (long x = x0; x < x1; x++) {
            const double v = src[x];
            const int ok = (v - v) == 0.0; /* finite */
            row[x] += ok ? wt * v : 0.0;
            norm[x] += ok ? wt : 0.0;
        }
        for (long x = x1 > x0 ? x1 : x0; x < nx; x++) norm[x] += wt;
    }
    const double *img = image + (size_t)y * nx;
    for (long x = 0; x < nx; x++)
        row[x] = (isfinite(img[x]) && norm[x] > min_norm) ? row[x] / norm[x] : NAN;
}

int jw_nan_convolve(const double *image, long ny, long nx, const double *kernel, int ksize,
                    double min_norm, double *out, int nthreads)
{
    if (ny < 0 || nx < 0 || ksize < 1 || ksize % 2 == 0) return JW_ERR_SHAPE;
    const int half = ksize / 2;
    /* Non-zero taps as (row offset, column offset, weight) of the flipped kernel. */
    int ntaps = 0;
    int *dy = (int *)malloc((size_t)ksize * ksize * sizeof(int));
    int *dx = (int *)malloc((size_t)ksize * ksize * sizeof(int));
    double *w = (double *)malloc((size_t)ksize * ksize * sizeof(double));
    if (!dy || !dx || !w) {
        free(dy); free(dx); free(w);
        return JW_ERR_ALLOC;
    }
    for (int i = 0; i < ksize; i++)
        for (int j = 0; j < ksize; j++) {
            const double k = kernel[(size_t)i * ksize + j];
            if (k == 0.0) continue;
            dy[ntaps] = half - i;
            dx[ntaps] = half - j;
            w[ntaps] = k;
            ntaps++;
        }
    (void)nthreads;
    int status = JW_OK;
    /* Row by row, tap by tap: the numerator (the image with non-finite values as 0) into the
     * output row and the normalisation (1 where finite) into a row buffer, both in one pass over
     * the tap's source row with selects that vectorise; the columns whose tap falls outside the
     * image count as good with value 0 (so only the normalisation changes there). */
    #pragma omp parallel num_threads(nthreads)
    {
        double *norm = (double *)malloc((nx ? (size_t)nx : 1) * sizeof(double));
        if (norm == NULL) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }
        #pragma omp for schedule(static)
        for (long y = 0; y < ny; y++) {
            if (norm == NULL) continue;
            conv_row(image, ny, nx, y, dy, dx, w, ntaps, min_norm, norm, out + (size_t)y * nx);
        }
        free(norm);
    }
    free(dy); free(dx); free(w);
    return status;
}

int jw_shower_ratio(const float *d0, const float *d1, const uint8_t *q0, const uint8_t *q1,
                    const uint8_t *ignore, const float *mean_diff, const double *sigma,
                    uint8_t bad, long npix, double *out, int nthreads)
{
    if (npix < 0) return JW_ERR_SHAPE;
    (void)nthreads;
    #pragma omp parallel for num_threads(nthreads) schedule(static) if (npix > 65536)
    for (long p = 0; p < npix; p++) {
        const double r = fabs(((double)d1[p] - (double)d0[p]) - (double)mean_diff[p]) / sigma[p];
        const int use = !((q0[p] | q1[p]) & bad) && !(ignore != NULL && ignore[p]) &&
                        isfinite(r);
        out[p] = use ? r : NAN;
    }
    return JW_OK;
}
