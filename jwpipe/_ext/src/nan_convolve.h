/* Convolution normalised over the finite pixels (shower detection). */
#ifndef JWPIPE_NAN_CONVOLVE_H
#define JWPIPE_NAN_CONVOLVE_H

#include "jwstatus.h"

#include <stdint.h>

/* out = (k * filled) / (k * good) on an (ny, nx) image, k a (ksize, ksize) kernel (ksize odd),
 * filled the image with NaN (and inf) as 0, good 1 where finite; pixels outside the image count
 * as good with value 0. out is NaN where the image is not finite or the normalisation is not
 * above min_norm. A true convolution (the kernel flipped), evaluated directly. */
int jw_nan_convolve(const double *image, long ny, long nx, const double *kernel, int ksize,
                    double min_norm, double *out, int nthreads);

/* The shower search's statistic for group difference g of one integration (MIRI):
 * out = |(double)d1 - (double)d0 - mean_diff| / sigma where both groups' flags have none of
 * `bad` and ignore is 0, NaN elsewhere and where the value is not finite. d0, d1 (npix) float32
 * groups g-1 and g; q0, q1 their group DQ; ignore (npix) uint8 or NULL; mean_diff float32,
 * sigma float64 per pixel. */
int jw_shower_ratio(const float *d0, const float *d1, const uint8_t *q0, const uint8_t *q1,
                    const uint8_t *ignore, const float *mean_diff, const double *sigma,
                    uint8_t bad, long npix, double *out, int nthreads);

#endif
