# Cython shims over src/label.c and src/nan_convolve.c, the kernels of extended-event search
# (snowballs, showers) in jump detection: typed memoryviews in, GIL released.
from libc.stdint cimport int64_t, uint8_t

import numpy as np

cdef extern from "label.h" nogil:
    int JW_OK
    int JW_ERR_ALLOC
    int64_t jw_flagged_indices(int64_t npix, const uint8_t *a, const uint8_t *b, uint8_t bits,
                               int64_t *out)
    int jw_label_pixels(int64_t n, const int64_t *lin, int64_t ny, int64_t nx, int64_t *label,
                        uint8_t *inner, int64_t *ncomp)

cdef extern from "nan_convolve.h" nogil:
    int jw_nan_convolve(const double *image, long ny, long nx, const double *kernel, int ksize,
                        double min_norm, double *out, int nthreads)
    int jw_shower_ratio(const float *d0, const float *d1, const uint8_t *q0, const uint8_t *q1,
                        const uint8_t *ignore, const float *mean_diff, const double *sigma,
                        uint8_t bad, long npix, double *out, int nthreads)


def flagged_indices(const uint8_t[:, ::1] a, const uint8_t[:, ::1] b, int bits):
    """Linear indices (increasing) of the pixels where ``a & bits`` is set and, unless ``b`` is
    None, ``b & bits`` is not: the flags newly set in ``a``.

    Parameters
    ----------
    a, b : ndarray of shape (ny, nx), uint8
        Flag planes (``b`` may be None).
    bits : int
        Flag bits, 1..255.

    Returns
    -------
    ndarray of shape (n,), int64
    """
    if not 0 < bits < 256:
        raise ValueError("flagged_indices: bits must be 1..255")
    if b is not None and (b.shape[0] != a.shape[0] or b.shape[1] != a.shape[1]):
        raise ValueError("flagged_indices: a and b must have the same shape")
    cdef int64_t npix = a.shape[0] * a.shape[1], n
    cdef const uint8_t *ap = &a[0, 0] if npix > 0 else NULL
    cdef const uint8_t *bp = &b[0, 0] if (b is not None and npix > 0) else NULL
    cdef uint8_t fb = <uint8_t>bits
    with nogil:
        n = jw_flagged_indices(npix, ap, bp, fb, NULL)
    lin = np.empty(n, np.int64)
    cdef int64_t[::1] out = lin
    if n > 0:
        with nogil:
            jw_flagged_indices(npix, ap, bp, fb, &out[0])
    return lin


def label_pixels(const int64_t[::1] lin, int64_t ny, int64_t nx):
    """8-connected regions of the set pixels of an (ny, nx) frame.

    Parameters
    ----------
    lin : ndarray of shape (n,), int64
        Linear indices of the set pixels, strictly increasing (``np.flatnonzero`` of a mask).
    ny, nx : int
        Frame shape.

    Returns
    -------
    ncomp : int
    label : ndarray of shape (n,), int64
        Region of each pixel, numbered 0..ncomp-1 in order of each region's first pixel.
    inner : ndarray of shape (n,), bool
        True where all four 4-neighbours are set.
    """
    cdef int64_t n = lin.shape[0], ncomp = 0
    label = np.empty(n, np.int64)
    inner = np.empty(n, np.uint8)
    cdef int64_t[::1] lab = label
    cdef uint8_t[::1] inn = inner
    cdef int status
    if n == 0:
        if ny < 0 or nx < 1:
            raise ValueError("label_pixels: invalid frame shape")
        return 0, label, inner.view(bool)
    with nogil:
        status = jw_label_pixels(n, &lin[0], ny, nx, &lab[0], &inn[0], &ncomp)
    if status != JW_OK:
        raise ValueError("label_pixels: the indices must be strictly increasing and within "
                         "the frame")
    return int(ncomp), label, inner.view(bool)


def nan_convolve(const double[:, ::1] image, const double[:, ::1] kernel, double min_norm,
                 int nthreads=1, out=None):
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
    out : ndarray of shape (ny, nx), float64, optional
        C-contiguous array to write the result into (not ``image``); by default a new one.

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
    if out is None:
        out = np.empty((ny, nx), np.float64)
    elif out.shape != (ny, nx) or np.shares_memory(out, np.asarray(image)):
        raise ValueError("nan_convolve: out must have the image's shape and not overlap it")
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


def shower_ratio(const float[:, ::1] d0, const float[:, ::1] d1, const uint8_t[:, ::1] q0,
                 const uint8_t[:, ::1] q1, ignore, const float[:, ::1] mean_diff,
                 const double[:, ::1] sigma, int bad, double[:, ::1] out, int nthreads=1):
    """The shower statistic of one group difference, into ``out`` (ny, nx) float64:
    ``|(d1 - d0) - mean_diff| / sigma`` in float64 where neither group's DQ has a ``bad`` bit
    and ``ignore`` (a uint8 or bool (ny, nx) array, or None) is not set; NaN elsewhere and
    where the value is not finite. All arrays (ny, nx) and C-contiguous."""
    cdef long ny = d0.shape[0], nx = d0.shape[1]
    if not (d1.shape[0] == q0.shape[0] == q1.shape[0] == mean_diff.shape[0] == sigma.shape[0]
            == out.shape[0] == ny and d1.shape[1] == q0.shape[1] == q1.shape[1]
            == mean_diff.shape[1] == sigma.shape[1] == out.shape[1] == nx):
        raise ValueError("shower_ratio: every array must have the shape of d0")
    cdef const uint8_t[:, ::1] ign
    cdef const uint8_t *ip = NULL
    if ignore is not None:
        ign = np.ascontiguousarray(ignore).view(np.uint8)
        if ign.shape[0] != ny or ign.shape[1] != nx:
            raise ValueError("shower_ratio: every array must have the shape of d0")
        if ny * nx > 0:
            ip = &ign[0, 0]
    if ny * nx == 0:
        return
    cdef uint8_t b = <uint8_t>bad
    with nogil:
        jw_shower_ratio(&d0[0, 0], &d1[0, 0], &q0[0, 0], &q1[0, 0], ip, &mean_diff[0, 0],
                        &sigma[0, 0], b, ny * nx, &out[0, 0], nthreads)
