/* IPC correction: convolve each image's science region with a small kernel, in place.
 *
 * For output pixel (y, x) of the region [y0, y1) x [x0, x1):
 *     out[y, x] = sum_{j, i} K[j, i] * S[y + (ky - 1 - j) - ky/2, x + (kx - 1 - i) - kx/2]
 * where S is the input region, zero outside it (reference pixels neither contribute nor change).
 * K is (ky, kx), or with per_pixel (ky, kx, y1 - y0, x1 - x0): the kernel of each output pixel.
 * The centre term is added last, as the reference pipeline does.
 *
 * In place with a ring of ky zero-padded input rows: output row y needs input rows y - ky/2 ..
 * y + (ky - 1 - ky/2); each is copied into the ring while still unmodified. Images are
 * independent and shared out between threads, each with its own ring and accumulator row.
 */
#include "ipc.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int jw_ipc_convolve(float *data, long nimg, long ny, long nx, long y0, long y1, long x0, long x1,
                    const float *kernel, long ky, long kx, int per_pixel, int nthreads)
{
    if (nimg < 0 || ky < 1 || kx < 1 || y0 < 0 || x0 < 0 || y1 > ny || x1 > nx || y1 < y0 ||
        x1 < x0)
        return JW_ERR_SHAPE;
    const long sny = y1 - y0, snx = x1 - x0;
    if (sny == 0 || snx == 0 || nimg == 0) return JW_OK;
    const long bb = ky / 2, tb = ky - bb - 1;      /* rows needed below / above an output row */
    const long lb = kx / 2, rb = kx - lb - 1;
    const long width = snx + lb + rb;              /* padded row length in the ring */
    const long cj = ky / 2, ci = kx / 2;           /* centre of the kernel */
    const size_t plane = (size_t)sny * (size_t)snx;
    int status = JW_OK;
    (void)nthreads;

    #pragma omp parallel num_threads(nthreads)
    {
        float *ring = (float *)calloc((size_t)ky * (size_t)width, sizeof(float));
        float *acc = (float *)malloc((size_t)snx * sizeof(float));
        if (ring == NULL || acc == NULL) {
            #pragma omp atomic write
            status = JW_ERR_ALLOC;
        }
        #pragma omp for schedule(static)
        for (long n = 0; n < nimg; n++) {
            if (ring == NULL || acc == NULL) continue;
            float *img = data + (size_t)n * (size_t)ny * (size_t)nx;
            /* Ring slot of region row r: (r + bb) mod ky; rows outside the region are zeros. */
            memset(ring, 0, (size_t)ky * (size_t)width * sizeof(float));
            for (long r = -bb; r < tb && r < sny; r++) {
                if (r < 0) continue;
                memcpy(ring + (size_t)((r + bb) % ky) * width + lb, img + (size_t)(y0 + r) * nx + x0,
                       (size_t)snx * sizeof(float));
            }
            for (long y = 0; y < sny; y++) {
                /* Load input row y + tb (still unmodified) or zeros past the region. */
                const long r = y + tb;
                float *slot = ring + (size_t)((r + bb) % ky) * width;
                if (r < sny)
                    memcpy(slot + lb, img + (size_t)(y0 + r) * nx + x0, (size_t)snx * sizeof(float));
                else
                    memset(slot, 0, (size_t)width * sizeof(float));
                if (ky == 3 && kx == 3 && !per_pixel) {
                    /* The usual case, fused: same summation order as the general loop below. */
                    const float *r0 = ring + (size_t)((y + 1 + bb) % ky) * width;  /* j = 0 */
                    const float *r1 = ring + (size_t)((y + bb) % ky) * width;      /* j = 1 */
                    const float *r2 = ring + (size_t)((y - 1 + bb) % ky) * width;  /* j = 2 */
                    const float k00 = kernel[0], k01 = kernel[1], k02 = kernel[2];
                    const float k10 = kernel[3], k11 = kernel[4], k12 = kernel[5];
                    const float k20 = kernel[6], k21 = kernel[7], k22 = kernel[8];
                    float *out = img + (size_t)(y0 + y) * nx + x0;
                    for (long x = 0; x < snx; x++) {
                        /* src index for (j, i) is x + lb + dx with dx = 1 - i - lb: x + 1 - i */
                        float a = 0.0f;
                        a += k00 * r0[x + 2]; a += k01 * r0[x + 1]; a += k02 * r0[x];
                        a += k10 * r1[x + 2]; a += k12 * r1[x];
                        a += k20 * r2[x + 2]; a += k21 * r2[x + 1]; a += k22 * r2[x];
                        a += k11 * r1[x + 1];
                        out[x] = a;
                    }
                    continue;
                }
                for (long x = 0; x < snx; x++) acc[x] = 0.0f;
                for (long t = 0; t <= ky * kx; t++) {
                    long j, i;
                    if (t == ky * kx) { j = cj; i = ci; }          /* centre last */
                    else {
                        j = t / kx; i = t % kx;
                        if (j == cj && i == ci) continue;
                    }
                    const long dy = (ky - 1 - j) - bb, dx = (kx - 1 - i) - lb;
                    const float *src = ring + (size_t)((y + dy + bb) % ky) * width + lb + dx;
                    if (per_pixel) {
                        const float *k = kernel + ((size_t)j * kx + i) * plane + (size_t)y * snx;
                        for (long x = 0; x < snx; x++) acc[x] += k[x] * src[x];
                    } else {
                        const float k = kernel[j * kx + i];
                        for (long x = 0; x < snx; x++) acc[x] += k * src[x];
                    }
                }
                memcpy(img + (size_t)(y0 + y) * nx + x0, acc, (size_t)snx * sizeof(float));
            }
        }
        free(ring);
        free(acc);
    }
    return status;
}
