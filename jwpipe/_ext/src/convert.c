/* Conversions of FITS data as stored (big-endian) to what the stage-1 kernels use, fused with
 * the first operation on them so raw values are touched once.
 *
 * jw_be_u16_to_f32     unsigned 16-bit raw ramps (stored int16 with BZERO = 32768) -> float32.
 * jw_dark_subtract_be  data[p] -= the dark group made of `nframes` big-endian float32 frames:
 *                      NaN frames values count as 0; the group is frame 0 alone when nframes
 *                      is 1, else the frames' sum in float32 (in frame order) divided by
 *                      nframes, exactly as numpy's frames.mean(axis=0) computes it.
 *
 * Parallel over pixels; results do not depend on the number of threads.
 */
#include "convert.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static inline uint16_t bswap16(uint16_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_bswap16(x);
#else
    return (uint16_t)((x >> 8) | (x << 8));
#endif
}

static inline uint32_t bswap32(uint32_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_bswap32(x);
#else
    return (x >> 24) | ((x >> 8) & 0x0000ff00u) | ((x << 8) & 0x00ff0000u) | (x << 24);
#endif
}

static inline float be_float(uint32_t x)
{
    float f;
    x = bswap32(x);
    memcpy(&f, &x, sizeof f);
    return f;
}

int jw_be_u16_to_f32(const uint16_t *in, float *out, long n, int nthreads)
{
    long i;
    if (n < 0) return JW_ERR_SHAPE;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads > 0 ? nthreads : 1) schedule(static) \
    if (n > 262144)
#endif
    for (i = 0; i < n; i++) {
        out[i] = (float)(uint16_t)(bswap16(in[i]) ^ 0x8000u);
    }
    return JW_OK;
}

int jw_dark_subtract_be(float *data, long nplanes, long plane_stride, long npix,
                        const uint32_t *frames, long nframes, int nthreads)
{
    long p;
    if (nplanes < 0 || npix < 0 || nframes < 1 || (nplanes > 1 && plane_stride < npix))
        return JW_ERR_SHAPE;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads > 0 ? nthreads : 1) schedule(static) \
    if (npix * nframes > 262144)
#endif
    for (p = 0; p < npix; p++) {
        float sum = be_float(frames[p]);
        long k, i;
        if (isnan(sum)) sum = 0.0f;
        for (k = 1; k < nframes; k++) {
            float v = be_float(frames[k * npix + p]);
            sum += isnan(v) ? 0.0f : v;
        }
        /* numpy's mean: the float32 sum divided by the (integer) count in double, rounded. */
        const float dark = nframes == 1 ? sum : (float)((double)sum / (double)nframes);
        for (i = 0; i < nplanes; i++) {
            data[i * plane_stride + p] -= dark;
        }
    }
    return JW_OK;
}
