/* Direct evaluation over the kernel's non-zero taps: a shower ring has a few dozen, so this is
 * far cheaper than FFT convolutions of the whole frame (and needs no scipy.signal import). */
#include "nan_convolve.h"

#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int jw_nan_convolve(const double *image, long ny, long nx, const double *kernel, int ksize,
                    double min_norm, double *out, int nthreads)
{
    if (ny < 0 || nx < 0 || ksize < 1 || ksize % 2 == 0) return JW_ERR_SHAPE;
    const int half = ksize / 2;
    const size_t npix = (size_t)ny * (size_t)nx;
    /* Non-zero taps as (row offset, column offset, weight) of the flipped kernel. */
    int ntaps = 0;
    int *dy = (int *)malloc((size_t)ksize * ksize * sizeof(int));
    int *dx = (int *)malloc((size_t)ksize * ksize * sizeof(int));
    double *w = (double *)malloc((size_t)ksize * ksize * sizeof(double));
    double *filled = (double *)malloc((npix ? npix : 1) * sizeof(double));
    double *good = (double *)malloc((npix ? npix : 1) * sizeof(double));
    if (!dy || !dx || !w || !filled || !good) {
        free(dy); free(dx); free(w); free(filled); free(good);
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
    #pragma omp parallel num_threads(nthreads)
    {
        #pragma omp for schedule(static)
        for (long p = 0; p < (long)npix; p++) {
            const double v = image[p];
            const int ok = isfinite(v);
            filled[p] = ok ? v : 0.0;
            good[p] = ok ? 1.0 : 0.0;
        }
        #pragma omp for schedule(static)
        for (long y = 0; y < ny; y++) {
            double *row = out + (size_t)y * nx;
            for (long x = 0; x < nx; x++) row[x] = 0.0;
            /* numerator first, in `row`; then the normalisation tap by tap into a second pass */
            for (int t = 0; t < ntaps; t++) {
                const long yy = y + dy[t];
                if (yy < 0 || yy >= ny) continue;
                const double *src = filled + (size_t)yy * nx;
                const long x0 = dx[t] < 0 ? -dx[t] : 0, x1 = dx[t] > 0 ? nx - dx[t] : nx;
                const double wt = w[t];
                for (long x = x0; x < x1; x++) row[x] += wt * src[x + dx[t]];
            }
        }
    }
    /* The normalisation needs a row buffer per thread; done in a second parallel region so the
     * numerator loop above stays a plain multiply-add the compiler vectorises. */
    int status = JW_OK;
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
            for (long x = 0; x < nx; x++) norm[x] = 0.0;
            for (int t = 0; t < ntaps; t++) {
                const long yy = y + dy[t];
                const double wt = w[t];
                if (yy < 0 || yy >= ny) { /* a whole row outside the image: all good */
                    for (long x = 0; x < nx; x++) norm[x] += wt;
                    continue;
                }
                /* Inside the image a plain multiply-add (it vectorises); the columns whose tap
                 * falls outside count as good. */
                const double *src = good + (size_t)yy * nx;
                const long x0 = dx[t] < 0 ? (-dx[t] < nx ? -dx[t] : nx) : 0;
                const long x1 = dx[t] > 0 ? (nx - dx[t] > 0 ? nx - dx[t] : 0) : nx;
                for (long x = 0; x < x0; x++) norm[x] += wt;
                for (long x = x0; x < x1; x++) norm[x] += wt * src[x + dx[t]];
                for (long x = x1 > x0 ? x1 : x0; x < nx; x++) norm[x] += wt;
            }
            double *row = out + (size_t)y * nx;
            const double *img = image + (size_t)y * nx;
            for (long x = 0; x < nx; x++)
                row[x] = (isfinite(img[x]) && norm[x] > min_norm) ? row[x] / norm[x] : NAN;
        }
        free(norm);
    }
    free(dy); free(dx); free(w); free(filled); free(good);
    return status;
}
