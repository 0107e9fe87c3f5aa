# Cython shim over src/ipc.c: typed memoryviews in, status code out, GIL released.

cdef extern from "ipc.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int JW_ERR_ALLOC
    int jw_ipc_convolve(float *data, long nimg, long ny, long nx, long y0, long y1, long x0,
                        long x1, const float *kernel, long ky, long kx, int per_pixel,
                        int nthreads)


def ipc_convolve(float[:, :, ::1] data, long y0, long y1, long x0, long x1,
                 const float[:, :, :, ::1] kernel, bint per_pixel, int nthreads=1):
    """Convolve the region ``[y0:y1, x0:x1]`` of every image in place; see ``jwpipe.steps.ipc``.

    ``kernel`` is (ky, kx, 1, 1) for one small kernel, or (ky, kx, y1 - y0, x1 - x0) with
    ``per_pixel`` for a kernel per output pixel.
    """
    cdef long nimg = data.shape[0], ny = data.shape[1], nx = data.shape[2]
    cdef long ky = kernel.shape[0], kx = kernel.shape[1]
    cdef int status
    if per_pixel and (kernel.shape[2] != y1 - y0 or kernel.shape[3] != x1 - x0):
        raise ValueError("ipc_convolve: a per-pixel kernel must cover the region")
    if ky < 1 or kx < 1:
        raise ValueError("ipc_convolve: empty kernel")
    if nimg == 0 or ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_ipc_convolve(&data[0, 0, 0], nimg, ny, nx, y0, y1, x0, x1,
                                 &kernel[0, 0, 0, 0], ky, kx, per_pixel, nthreads)
    if status == JW_ERR_SHAPE:
        raise ValueError("ipc_convolve: region outside the image")
    if status == JW_ERR_ALLOC:
        raise MemoryError("ipc_convolve: could not allocate the row buffers")
