#ifndef JWPIPE_SIMULATE_H
#define JWPIPE_SIMULATE_H

#include "jwstatus.h"

#include <stdint.h>


/* One integration of charge accumulation, read frame by read frame (see simulate.c). */
int jw_sim_ramp(const float *rate_e, const float *gain, const float *coeffs, int ncoeff,
                const float *well, const float *offsets, const double *dt,
                const int32_t *group, const float *weight, int nread, int ngroups,
                const int64_t *ev_rowptr, const int32_t *ev_col, const int32_t *ev_read,
                const float *ev_amp, float *out, float *frame0, long ny, long nx,
                uint64_t seed, uint64_t stream, int noiseless, double gauss_threshold,
                int nthreads);

/* Small-kernel convolution of planes (inter-pixel capacitance), reference pixels excluded. */
int jw_sim_ipc(const float *in, float *out, const float *kernel, int kh, int kw,
               const uint8_t *refpix, int nplanes, long ny, long nx, int nthreads);

/* Bias, correlated offsets and white read noise added to group signals, rounded to uint16;
 * optionally the first group reaching a saturation threshold (noiseless). */
int jw_sim_readout(const float *signal, const float *bias, const float *sigma,
                   const uint8_t *chan, const float *chan_off, int nchan,
                   const int32_t *slow, const float *slow_off, int nslow,
                   const float *thr, const float *thr_margin, int16_t *sat, int16_t *sat_margin,
                   uint16_t *out, int ngroups, long ny, long nx, uint64_t seed, uint64_t stream,
                   int noiseless, int nthreads);

#endif
