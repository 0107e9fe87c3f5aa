# Cython shim over src/rowcol.c: typed memoryviews in, status code out, GIL released.
from libc.stdint cimport uint8_t, int32_t

cdef extern from "rowcol.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int JW_ERR_ALLOC
    int jw_subtract_outer(float *data, long nimg, long ny, long nx, const float *rowvec,
                          const float *colvec, int nthreads)
    int jw_window_median(const float *padded, long nimg, long nrows, long k, long window,
                         float *out, int nthreads)
    int jw_masked_row_median(const float *image, long ny, long nx, long sy, long sx,
                             const uint8_t *mask, long my, long mx, double lo, double hi,
                             long nseg, float *out, int32_t *count, int nthreads)


cdef void _check(int status, str what) except *:
    if status == JW_ERR_SHAPE:
        raise ValueError(f"{what}: invalid shape or parameter")
    if status == JW_ERR_ALLOC:
        raise MemoryError(f"{what}: could not allocate a work buffer")


def subtract_outer(float[:, :, ::1] data, const float[:, ::1] rowvec, const float[:, ::1] colvec,
                   int nthreads=1):
    """``data[i, y, x] -= rowvec[i, y] + colvec[i, x]`` in place (either vector may be None)."""
    cdef long nimg = data.shape[0], ny = data.shape[1], nx = data.shape[2]
    cdef const float *rp = NULL
    cdef const float *cp = NULL
    cdef int status
    if rowvec is not None:
        if rowvec.shape[0] != nimg or rowvec.shape[1] != ny:
            raise ValueError("subtract_outer: rowvec must have shape (nimg, ny)")
        if nimg and ny:
            rp = &rowvec[0, 0]
    if colvec is not None:
        if colvec.shape[0] != nimg or colvec.shape[1] != nx:
            raise ValueError("subtract_outer: colvec must have shape (nimg, nx)")
        if nimg and nx:
            cp = &colvec[0, 0]
    if nimg == 0 or ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_subtract_outer(&data[0, 0, 0], nimg, ny, nx, rp, cp, nthreads)
    _check(status, "subtract_outer")


def window_median(const float[:, :, ::1] padded, long window, float[:, ::1] out, int nthreads=1):
    """``out[i, r]`` = median of the non-NaN values of ``padded[i, r:r+window, :]``."""
    cdef long nimg = padded.shape[0], k = padded.shape[2]
    cdef long nrows = padded.shape[1] - window + 1
    cdef int status
    if window < 1 or nrows < 0 or out.shape[0] != nimg or out.shape[1] != nrows:
        raise ValueError("window_median: out must have shape (nimg, nrows_padded - window + 1)")
    if nimg == 0 or nrows == 0:
        return
    with nogil:
        status = jw_window_median(&padded[0, 0, 0], nimg, nrows, k, window, &out[0, 0], nthreads)
    _check(status, "window_median")


def masked_row_median(const float[:, :] image, const uint8_t[:, :] mask, double lo, double hi,
                      long nseg, float[:, ::1] out, int32_t[:, ::1] count=None, int nthreads=1):
    """Median of each row segment over pixels with ``mask`` set and ``lo <= value <= hi``.

    ``image`` and ``mask`` may be strided views (a transposed image reads its columns as rows).
    ``out[y, s]`` is NaN (and ``count[y, s]`` 0) where a segment has no such pixel.
    """
    cdef long ny = image.shape[0], nx = image.shape[1]
    cdef int32_t *cp = NULL
    cdef int status
    if mask.shape[0] != ny or mask.shape[1] != nx:
        raise ValueError("masked_row_median: mask must match image")
    if nseg < 1 or nx % nseg or out.shape[0] != ny or out.shape[1] != nseg:
        raise ValueError("masked_row_median: out must have shape (ny, nseg), nseg dividing nx")
    if count is not None:
        if count.shape[0] != ny or count.shape[1] != nseg:
            raise ValueError("masked_row_median: count must have shape (ny, nseg)")
        if ny:
            cp = &count[0, 0]
    if ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_masked_row_median(
            &image[0, 0], ny, nx, image.strides[0] // sizeof(float),
            image.strides[1] // sizeof(float), &mask[0, 0], mask.strides[0], mask.strides[1],
            lo, hi, nseg, &out[0, 0], cp, nthreads)
    _check(status, "masked_row_median")
