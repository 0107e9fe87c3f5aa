#ifndef JWPIPE_SATURATION_H
#define JWPIPE_SATURATION_H

#include <stdint.h>

/* Status codes shared by the jwpipe kernels. */
#define JW_OK 0
#define JW_ERR_SHAPE 1
#define JW_ERR_ALLOC 2

int jw_flag_saturation(const float *data, const float *threshold, uint8_t *groupdq,
                       int16_t *first_sat, int nints, int ngroups, int ny, int nx,
                       int grow, uint8_t sat_flag, uint8_t floor_flag, int nthreads);

int jw_linearity(float *data, const uint8_t *groupdq, const float *coeffs, int ncoeffs,
                 int nints, int ngroups, int ny, int nx, uint8_t skip_flag, int nthreads);

#endif
