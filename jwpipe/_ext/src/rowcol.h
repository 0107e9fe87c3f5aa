#ifndef JWPIPE_ROWCOL_H
#define JWPIPE_ROWCOL_H

#include "jwstatus.h"

#include <stdint.h>


int jw_subtract_outer(float *data, long nimg, long ny, long nx, const float *rowvec,
                      const float *colvec, int nthreads);

int jw_window_median(const float *padded, long nimg, long nrows, long k, long window,
                     float *out, int nthreads);

int jw_masked_row_median(const float *image, long ny, long nx, long sy, long sx,
                         const uint8_t *mask, long my, long mx, double lo, double hi,
                         long nseg, float *out, int32_t *count, int nthreads);

#endif
