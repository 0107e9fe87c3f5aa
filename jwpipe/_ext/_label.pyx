# Cython shim over src/label.c: connected components of an edge list, GIL released.
from libc.stdint cimport int64_t

import numpy as np

cdef extern from "label.h" nogil:
    int JW_OK
    int jw_label_components(int64_t n, int64_t nedges, const int64_t *a, const int64_t *b,
                            int64_t *label, int64_t *ncomp)


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
