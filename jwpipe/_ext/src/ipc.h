#ifndef JWPIPE_IPC_H
#define JWPIPE_IPC_H

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

int jw_ipc_convolve(float *data, long nimg, long ny, long nx, long y0, long y1, long x0, long x1,
                    const float *kernel, long ky, long kx, int per_pixel, int nthreads);

#endif
