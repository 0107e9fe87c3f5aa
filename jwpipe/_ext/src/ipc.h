#ifndef JWPIPE_IPC_H
#define JWPIPE_IPC_H

#include "jwstatus.h"


int jw_ipc_convolve(float *data, long nimg, long ny, long nx, long y0, long y1, long x0, long x1,
                    const float *kernel, long ky, long kx, int per_pixel, int nthreads);

#endif
