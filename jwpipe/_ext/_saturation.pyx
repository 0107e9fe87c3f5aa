# Cython shim over src/saturation.c: typed memoryviews in, status code out, GIL released.
from libc.stdint cimport uint8_t, int16_t

cdef extern from "saturation.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int JW_ERR_ALLOC
    int jw_flag_saturation(const float *data, const float *threshold, uint8_t *groupdq,
                           int16_t *first_sat, int nints, int ngroups, int ny, int nx,
                           int grow, int nthreads)


def flag_saturation(const float[:, :, :, ::1] data, const float[:, ::1] threshold,
                    uint8_t[:, :, :, ::1] groupdq, int16_t[:, :, ::1] first_sat,
                    int grow, int nthreads):
    """Flag saturated and A/D-floor groups in place; see ``jwpipe.steps.saturation``."""
    cdef int status
    cdef int nints = data.shape[0], ngroups = data.shape[1], ny = data.shape[2], nx = data.shape[3]
    if nints == 0 or ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_flag_saturation(&data[0, 0, 0, 0], &threshold[0, 0], &groupdq[0, 0, 0, 0],
                                    &first_sat[0, 0, 0], nints, ngroups, ny, nx, grow, nthreads)
    if status == JW_ERR_SHAPE:
        raise ValueError("flag_saturation: invalid shape or grow value")
    if status == JW_ERR_ALLOC:
        raise MemoryError("flag_saturation: could not allocate the growth buffer")
