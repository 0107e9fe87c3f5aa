# Cython shim over src/saturation.c: typed memoryviews in, status code out, GIL released.
# Kernels of the early stage-1 steps: saturation/A-D floor flagging and polynomial linearity.
from libc.stdint cimport uint8_t, int16_t

cdef extern from "saturation.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int JW_ERR_ALLOC
    int jw_flag_saturation(const float *data, const float *threshold, uint8_t *groupdq,
                           int16_t *first_sat, int nints, int ngroups, int ny, int nx,
                           int grow, uint8_t sat_flag, uint8_t floor_flag, int nthreads)
    int jw_linearity(float *data, const uint8_t *groupdq, const float *coeffs, int ncoeffs,
                     int nints, int ngroups, int ny, int nx, uint8_t skip_flag, int nthreads)


def flag_saturation(const float[:, :, :, ::1] data, const float[:, ::1] threshold,
                    uint8_t[:, :, :, ::1] groupdq, int16_t[:, :, ::1] first_sat,
                    int grow, int nthreads, uint8_t sat_flag=2, uint8_t floor_flag=65):
    """Flag saturated and A/D-floor groups in place; see ``jwpipe.steps.saturation``.

    ``sat_flag`` is ORed into the first saturated group and every later one (after growing
    by ``grow`` pixels), ``floor_flag`` into every group at or below zero.
    """
    cdef int status
    cdef int nints = data.shape[0], ngroups = data.shape[1], ny = data.shape[2], nx = data.shape[3]
    if (groupdq.shape[0] != nints or groupdq.shape[1] != ngroups or groupdq.shape[2] != ny
            or groupdq.shape[3] != nx):
        raise ValueError("flag_saturation: groupdq must have the shape of data")
    if threshold.shape[0] != ny or threshold.shape[1] != nx:
        raise ValueError("flag_saturation: threshold must have shape (ny, nx)")
    if first_sat.shape[0] != nints or first_sat.shape[1] != ny or first_sat.shape[2] != nx:
        raise ValueError("flag_saturation: first_sat must have shape (nints, ny, nx)")
    if nints == 0 or ngroups == 0 or ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_flag_saturation(&data[0, 0, 0, 0], &threshold[0, 0], &groupdq[0, 0, 0, 0],
                                    &first_sat[0, 0, 0], nints, ngroups, ny, nx, grow,
                                    sat_flag, floor_flag, nthreads)
    if status == JW_ERR_SHAPE:
        raise ValueError("flag_saturation: invalid shape or grow value")
    if status == JW_ERR_ALLOC:
        raise MemoryError("flag_saturation: could not allocate the growth buffer")


def linearity_correct(float[:, :, :, ::1] data, const uint8_t[:, :, :, ::1] groupdq,
                      const float[:, :, ::1] coeffs, uint8_t skip_flag, int nthreads):
    """Apply the per-pixel polynomial in place; see ``jwpipe.steps.linearity``."""
    cdef int status
    cdef int nints = data.shape[0], ngroups = data.shape[1], ny = data.shape[2], nx = data.shape[3]
    cdef int ncoeffs = coeffs.shape[0]
    if (groupdq.shape[0] != nints or groupdq.shape[1] != ngroups or groupdq.shape[2] != ny
            or groupdq.shape[3] != nx):
        raise ValueError("linearity_correct: groupdq must have the shape of data")
    if coeffs.shape[1] != ny or coeffs.shape[2] != nx:
        raise ValueError("linearity_correct: coeffs must have shape (ncoeffs, ny, nx)")
    if ncoeffs < 2:
        raise ValueError("linearity_correct: at least 2 coefficients are needed")
    if nints == 0 or ngroups == 0 or ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_linearity(&data[0, 0, 0, 0], &groupdq[0, 0, 0, 0], &coeffs[0, 0, 0],
                              ncoeffs, nints, ngroups, ny, nx, skip_flag, nthreads)
    if status == JW_ERR_SHAPE:
        raise ValueError("linearity_correct: invalid shape")
    if status == JW_ERR_ALLOC:
        raise MemoryError("linearity_correct: could not allocate a row buffer")
