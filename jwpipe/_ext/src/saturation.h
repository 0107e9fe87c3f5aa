#ifndef JWPIPE_SATURATION_H
#define JWPIPE_SATURATION_H

#include "jwstatus.h"

#include <stdint.h>


int jw_flag_saturation(const float *data, const float *threshold, uint8_t *groupdq,
                       int16_t *first_sat, int nints, int ngroups, int ny, int nx,
                       int grow, uint8_t sat_flag, uint8_t floor_flag, int nthreads);

int jw_linearity(float *data, const uint8_t *groupdq, const float *coeffs, int ncoeffs,
                 int nints, int ngroups, int ny, int nx, uint8_t skip_flag, int nthreads);

#endif
