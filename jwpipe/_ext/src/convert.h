#ifndef JWPIPE_CONVERT_H
#define JWPIPE_CONVERT_H

#include "jwstatus.h"

#include <stdint.h>


int jw_be_u16_to_f32(const uint16_t *in, float *out, long n, int nthreads);

int jw_dark_subtract_be(float *data, long nplanes, long plane_stride, long npix,
                        const uint32_t *frames, long nframes, int nthreads);

#endif
