/* Saturation and A/D-floor flagging of ramps, fused into one pass over the data.
 *
 * For each integration and pixel the first group at or above the saturation threshold is found;
 * that group and every later one get SATURATED|DO_NOT_USE (charge does not come back). Groups at
 * or below zero get AD_FLOOR|DO_NOT_USE. Saturation then grows into a (2*grow+1)^2 box, because
 * charge spills into neighbours: a neighbour saturates from the earliest group any pixel in its box
 * saturated. Arrays are C-contiguous: data/groupdq (nints, ngroups, ny, nx), threshold (ny, nx),
 * first_sat (nints, ny, nx) is an output (ngroups where the pixel never saturates).
 */
#include "saturation.h"
#include "dqflags.h"

#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int jw_flag_saturation(const float *data, const float *threshold, uint8_t *groupdq,
                       int16_t *first_sat, int nints, int ngroups, int ny, int nx,
                       int grow, int nthreads)
{
    if (nints < 0 || ngroups < 1 || ngroups > 32767 || ny < 0 || nx < 0 || grow < 0)
        return JW_ERR_SHAPE;
    const size_t npix = (size_t)ny * (size_t)nx;
    const uint8_t sat_flag = (uint8_t)(DQ_SATURATED | DQ_DO_NOT_USE);
    const uint8_t floor_flag = (uint8_t)(DQ_AD_FLOOR | DQ_DO_NOT_USE);
    int status = JW_OK;
    (void)nthreads;

    for (int i = 0; i < nints; i++) {
        const float *ramp = data + (size_t)i * ngroups * npix;
        uint8_t *gdq = groupdq + (size_t)i * ngroups * npix;
        int16_t *first = first_sat + (size_t)i * npix;

        /* Pass 1: first saturated group per pixel, A/D floor per group. Pixels are independent. */
        #pragma omp parallel for schedule(static) num_threads(nthreads)
        for (long y = 0; y < ny; y++) {
            for (size_t p = (size_t)y * nx; p < (size_t)(y + 1) * nx; p++) {
                const float thr = threshold[p];
                int16_t f = (int16_t)ngroups;
                for (int g = 0; g < ngroups; g++) {
                    const float v = ramp[(size_t)g * npix + p];
                    if (v >= thr) { f = (int16_t)g; break; }
                    if (v <= 0.0f) gdq[(size_t)g * npix + p] |= floor_flag;
                }
                first[p] = f;
            }
        }

        /* Pass 2: grow saturation by a box minimum of first-saturated groups (separable). */
        if (grow > 0) {
            int16_t *tmp = (int16_t *)malloc(npix * sizeof(int16_t));
            if (tmp == NULL) { status = JW_ERR_ALLOC; break; }
            #pragma omp parallel for schedule(static) num_threads(nthreads)
            for (long y = 0; y < ny; y++) {
                const int16_t *row = first + (size_t)y * nx;
                for (long x = 0; x < nx; x++) {
                    int16_t m = row[x];
                    long x0 = x - grow < 0 ? 0 : x - grow, x1 = x + grow >= nx ? nx - 1 : x + grow;
                    for (long k = x0; k <= x1; k++) if (row[k] < m) m = row[k];
                    tmp[(size_t)y * nx + x] = m;
                }
            }
            #pragma omp parallel for schedule(static) num_threads(nthreads)
            for (long y = 0; y < ny; y++) {
                long y0 = y - grow < 0 ? 0 : y - grow, y1 = y + grow >= ny ? ny - 1 : y + grow;
                for (long x = 0; x < nx; x++) {
                    int16_t m = tmp[(size_t)y * nx + x];
                    for (long k = y0; k <= y1; k++) {
                        int16_t v = tmp[(size_t)k * nx + x];
                        if (v < m) m = v;
                    }
                    first[(size_t)y * nx + x] = m;
                }
            }
            free(tmp);
        }

        /* Pass 3: flag the saturated group and every later one. */
        #pragma omp parallel for schedule(static) num_threads(nthreads)
        for (long y = 0; y < ny; y++) {
            for (size_t p = (size_t)y * nx; p < (size_t)(y + 1) * nx; p++) {
                for (int g = first[p]; g < ngroups; g++) gdq[(size_t)g * npix + p] |= sat_flag;
            }
        }
    }
    return status;
}
