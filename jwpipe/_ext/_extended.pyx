# Cython shims over src/label.c and src/nan_convolve.c, the kernels of extended-event search
# (snowballs, showers) in jump detection: typed memoryviews in, GIL released.
from libc.stdint cimport int64_t

import numpy as np

cdef extern from "label.h" nogil:
    int JW_OK
    int JW_ERR_ALLOC
    int jw_label_components(int64_t n, int64_t nedges, const int64_t *a, const int64_t *b,
                            int64_t *label, int64_t *ncomp)

cdef extern from "nan_convolve.h" nogil:
    int jw_nan_convolve(const double *image, long ny, long nx, const double *kernel, int ksize,
                        double min_norm, double *out, int nthreads)


def label_components(int64_t n, const int64_t[::1] a, const int64_t[::1] b):
    """Connected components of the undirected graph on nodes ``0..n-1`` with edges (a[k], b[k]).

    Returns
    -------
    ncomp : int
    label : ndarray of shape (n,), int64
        Component of each node, numbered 0..ncomp-1 in order of each component's first node.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError("label_components: a and b must have the same length")
    label = np.empty(max(n, 0), np.int64)
    cdef int64_t[::1] out = label
    cdef int64_t ncomp = 0
    cdef int64_t *op = &out[0] if n > 0 else NULL
    cdef const int64_t *ap = &a[0] if a.shape[0] > 0 else NULL
    cdef const int64_t *bp = &b[0] if b.shape[0] > 0 else NULL
    cdef int status
    with nogil:
        status = jw_label_components(n, a.shape[0], ap, bp, op, &ncomp)
    if status != JW_OK:
        raise ValueError("label_components: n must be >= 0 and every edge within 0..n-1")
    return int(ncomp), label


def nan_convolve(const double[:, ::1] image, const double[:, ::1] kernel, double min_norm,
                 int nthreads=1):
    """Convolution of ``image`` normalised over its finite pixels.

    Parameters
    ----------
    image : ndarray of shape (ny, nx), float64
        NaN (or inf) marks pixels to leave out.
    kernel : ndarray of shape (k, k), float64
        ``k`` odd.
    min_norm : float
        The result is NaN where the summed weight of the contributing pixels is not above this.
    nthreads : int

    Returns
    -------
    ndarray of shape (ny, nx), float64
        ``(kernel * filled) / (kernel * good)`` (true convolutions, ``filled`` the image with
        non-finite pixels as 0, ``good`` 1 where finite; outside the image counts as good and
        0), NaN where the image is not finite or the normalisation is too small.
    """
    cdef long ny = image.shape[0], nx = image.shape[1]
    cdef int k = <int>kernel.shape[0], status
    if kernel.shape[1] != k or k % 2 == 0:
        raise ValueError("nan_convolve: the kernel must be square with an odd size")
    out = np.empty((ny, nx), np.float64)
    cdef double[:, ::1] o = out
    if ny == 0 or nx == 0:
        return out
    with nogil:
        status = jw_nan_convolve(&image[0, 0], ny, nx, &kernel[0, 0], k, min_norm, &o[0, 0],
                                 nthreads)
    if status == JW_ERR_ALLOC:
        raise MemoryError("nan_convolve: work buffers could not be allocated")
    if status != JW_OK:
        raise ValueError("nan_convolve: invalid shapes")
    return out
