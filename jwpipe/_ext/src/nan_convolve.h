/* Convolution normalised over the finite pixels (shower detection). */
#ifndef JWPIPE_NAN_CONVOLVE_H
#define JWPIPE_NAN_CONVOLVE_H

#include "jwstatus.h"

/* out = (k * filled) / (k * good) on an (ny, nx) image, k a (ksize, ksize) kernel (ksize odd),
 * filled the image with NaN (and inf) as 0, good 1 where finite; pixels outside the image count
 * as good with value 0. out is NaN where the image is not finite or the normalisation is not
 * above min_norm. A true convolution (the kernel flipped), evaluated directly. */
int jw_nan_convolve(const double *image, long ny, long nx, const double *kernel, int ksize,
                    double min_norm, double *out, int nthreads);

#endif
