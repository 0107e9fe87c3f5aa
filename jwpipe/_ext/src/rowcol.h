#ifndef JWPIPE_ROWCOL_H
#define JWPIPE_ROWCOL_H

#include <stdint.h>

/* Status codes shared by the jwpipe kernels (same values as saturation.h). */
#ifndef JW_OK
#define JW_OK 0
#endif
#ifndef JW_ERR_SHAPE
#define JW_ERR_SHAPE 1
#endif
#ifndef JW_ERR_ALLOC
#define JW_ERR_ALLOC 2
#endif

int jw_subtract_outer(float *data, long nimg, long ny, long nx, const float *rowvec,
                      const float *colvec, int nthreads);

int jw_window_median(const float *padded, long nimg, long nrows, long k, long window,
                     float *out, int nthreads);

int jw_masked_row_median(const float *image, long ny, long nx, long sy, long sx,
                         const uint8_t *mask, long my, long mx, double lo, double hi,
                         long nseg, float *out, int32_t *count, int nthreads);

#endif
