/* Row/column statistics and corrections for detector-noise steps (refpix, clean_flicker_noise).
 *
 * jw_subtract_outer     data[i, y, x] -= rowvec[i, y] + colvec[i, x] in one pass.
 * jw_window_median      running median over a window of rows of a few columns (NaN = bad),
 *                       kept as a sorted buffer that the window slides through.
 * jw_masked_row_median  median of the unmasked, in-range values of each row (or row segment).
 *
 * Medians follow numpy: the mean of the two middle values for an even count. Selection is an
 * in-place quickselect on a per-thread buffer; nothing is allocated inside the loops.
 */
#include "rowcol.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* k-th smallest of buf[0..n-1] (reorders buf; afterwards buf[k] is in place and every element
 * after it is >= buf[k]). */
static float select_kth(float *buf, long n, long k)
{
    long lo = 0, hi = n - 1;
    while (hi > lo) {
        const float pivot = buf[k];
        long i = lo, j = hi;
        do {
            while (buf[i] < pivot) i++;
            while (pivot < buf[j]) j--;
            if (i <= j) {
                float t = buf[i]; buf[i] = buf[j]; buf[j] = t;
                i++; j--;
            }
        } while (i <= j);
        if (j < k) lo = i;
        if (k < i) hi = j;
    }
    return buf[k];
}

/* Median of buf[0..n-1], n >= 1 (reorders buf). */
static float median_of(float *buf, long n)
{
    const long lo = (n - 1) / 2;
    const float a = select_kth(buf, n, lo);
    if (n % 2) return a;
    float b = buf[lo + 1];
    for (long m = lo + 2; m < n; m++) if (buf[m] < b) b = buf[m];
    return (float)(0.5 * ((double)a + (double)b));
}

int jw_subtract_outer(float *data, long nimg, long ny, long nx, const float *rowvec,
                      const float *colvec, int nthreads)
{
    if (nimg < 0 || ny < 0 || nx < 0) return JW_ERR_SHAPE;
    const long nrows = nimg * ny;
    (void)nthreads;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long r = 0; r < nrows; r++) {
        const long i = r / ny;
        float *row = data + (size_t)r * nx;
        const float rv = rowvec ? rowvec[r] : 0.0f;
        if (colvec) {
            const float *cv = colvec + (size_t)i * nx;
            for (long x = 0; x < nx; x++) row[x] -= cv[x] + rv;
        } else {
            for (long x = 0; x < nx; x++) row[x] -= rv;
        }
    }
    return JW_OK;
}

/* Insert v into the sorted buf[0..n-1] (n < capacity). */
static void sorted_insert(float *buf, long *n, float v)
{
    long lo = 0, hi = *n;
    while (lo < hi) {
        const long mid = (lo + hi) / 2;
        if (buf[mid] < v) lo = mid + 1; else hi = mid;
    }
    memmove(buf + lo + 1, buf + lo, (size_t)(*n - lo) * sizeof(float));
    buf[lo] = v;
    (*n)++;
}

/* Remove one element equal to v from the sorted buf[0..n-1] (it is there). */
static void sorted_remove(float *buf, long *n, float v)
{
    long lo = 0, hi = *n;
    while (lo < hi) {
        const long mid = (lo + hi) / 2;
        if (buf[mid] < v) lo = mid + 1; else hi = mid;
    }
    if (lo < *n && buf[lo] == v) {
        memmove(buf + lo, buf + lo + 1, (size_t)(*n - lo - 1) * sizeof(float));
        (*n)--;
    }
}

int jw_window_median(const float *padded, long nimg, long nrows, long k, long window,
                     float *out, int nthreads)
{
    if (nimg < 0 || nrows < 0 || k < 1 || window < 1) return JW_ERR_SHAPE;
    const long prow = nrows + window - 1;
    int status = JW_OK;
    (void)nthreads;
    /* Each image's window slides down one row at a time: k values leave, k enter a sorted
     * buffer, and the median is read off its middle. */
    #pragma omp parallel num_threads(nthreads)
    {
        float *buf = (float *)malloc((size_t)(window * k) * sizeof(float));
        if (buf == NULL) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }
        #pragma omp for schedule(static)
        for (long i = 0; i < nimg; i++) {
            if (buf == NULL) continue;
            const float *img = padded + (size_t)i * prow * k;
            long n = 0;
            for (long m = 0; m < (window - 1) * k; m++)
                if (!isnan(img[m])) sorted_insert(buf, &n, img[m]);
            for (long r = 0; r < nrows; r++) {
                const float *enter = img + (size_t)(r + window - 1) * k;
                for (long c = 0; c < k; c++)
                    if (!isnan(enter[c])) sorted_insert(buf, &n, enter[c]);
                float med = NAN;
                if (n) {
                    const long lo = (n - 1) / 2;
                    med = (n % 2) ? buf[lo] : (float)(0.5 * ((double)buf[lo] + (double)buf[lo + 1]));
                }
                out[(size_t)i * nrows + r] = med;
                const float *leave = img + (size_t)r * k;
                for (long c = 0; c < k; c++)
                    if (!isnan(leave[c])) sorted_remove(buf, &n, leave[c]);
            }
        }
        free(buf);
    }
    return status;
}

int jw_masked_row_median(const float *image, long ny, long nx, long sy, long sx,
                         const uint8_t *mask, long my, long mx, double lo, double hi,
                         long nseg, float *out, int32_t *count, int nthreads)
{
    if (ny < 0 || nx < 0 || nseg < 1 || nx % nseg) return JW_ERR_SHAPE;
    const long width = nx / nseg;
    const long total = ny * nseg;
    int status = JW_OK;
    (void)nthreads;
    #pragma omp parallel num_threads(nthreads)
    {
        float *buf = (float *)malloc((size_t)(width > 0 ? width : 1) * sizeof(float));
        if (buf == NULL) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }
        #pragma omp for schedule(static)
        for (long t = 0; t < total; t++) {
            if (buf == NULL) continue;
            const long y = t / nseg, s = t % nseg;
            const float *src = image + y * sy;
            const uint8_t *msk = mask + y * my;
            long n = 0;
            for (long x = s * width; x < (s + 1) * width; x++) {
                if (!msk[x * mx]) continue;
                const float v = src[x * sx];
                if (v >= lo && v <= hi) buf[n++] = v;   /* NaN fails both comparisons */
            }
            out[t] = n ? median_of(buf, n) : NAN;
            if (count) count[t] = (int32_t)n;
        }
        free(buf);
    }
    return status;
}
