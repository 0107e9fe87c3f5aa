# Cython shim over src/convert.c: stored (big-endian) FITS values to native float32, fused with
# the first use (dark subtraction). Typed memoryviews in, GIL released, status code out.
from libc.stdint cimport uint16_t, uint32_t

cdef extern from "convert.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int jw_be_u16_to_f32(const uint16_t *inp, float *out, long n, int nthreads)
    int jw_dark_subtract_be(float *data, long nplanes, long plane_stride, long npix,
                            const uint32_t *frames, long nframes, int nthreads)


cdef void _check(int status, str what) except *:
    if status != JW_OK:
        raise ValueError(f"{what}: invalid shape or parameter")


def be_u16_to_f32(const uint16_t[::1] stored, float[::1] out, int nthreads=1):
    """``out[i] = (stored[i] byte-swapped) ^ 0x8000`` as float32: FITS int16 with BZERO=32768,
    stored big-endian (pass the raw bytes viewed as uint16), to float32."""
    cdef long n = stored.shape[0]
    cdef int status
    if out.shape[0] != n:
        raise ValueError("be_u16_to_f32: out must have the length of stored")
    if n == 0:
        return
    with nogil:
        status = jw_be_u16_to_f32(&stored[0], &out[0], n, nthreads)
    _check(status, "be_u16_to_f32")


def dark_subtract_be(float[:, :] data, const uint32_t[:, ::1] frames, int nthreads=1):
    """``data[i] -= dark`` for every plane ``i`` (rows of ``data``, which may be strided).

    ``frames`` are the dark frames of one group, big-endian float32 (raw bytes viewed as
    uint32), shape (nframes, npix). NaN counts as 0; ``dark`` is frame 0 when nframes is 1,
    else numpy's ``frames.mean(axis=0)`` (float32 sum in frame order, divided by nframes).
    """
    cdef long nplanes = data.shape[0], npix = data.shape[1], nframes = frames.shape[0]
    cdef long stride = data.strides[0] // sizeof(float) if nplanes > 1 else npix
    cdef int status
    if frames.shape[1] != npix or nframes < 1:
        raise ValueError("dark_subtract_be: frames must have shape (nframes >= 1, npix)")
    if data.strides[1] != sizeof(float) or data.strides[0] % sizeof(float) or (
            nplanes > 1 and data.strides[0] < npix * <long>sizeof(float)):
        raise ValueError("dark_subtract_be: data must be rows of contiguous float32 pixels")
    if nplanes == 0 or npix == 0:
        return
    with nogil:
        status = jw_dark_subtract_be(&data[0, 0], nplanes, stride, npix, &frames[0, 0],
                                     nframes, nthreads)
    _check(status, "dark_subtract_be")
