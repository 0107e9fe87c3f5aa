# Cython shim over src/simulate.c: typed memoryviews in, status code out, GIL released.
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint64_t

cdef extern from "simulate.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int JW_ERR_ALLOC
    int JW_ERR_PARAM
    int jw_sim_ramp(const float *rate_e, const float *gain, const float *coeffs, int ncoeff,
                    const float *well, const float *offsets, const double *dt,
                    const int32_t *group, const float *weight, int nread, int ngroups,
                    const int64_t *ev_rowptr, const int32_t *ev_col, const int32_t *ev_read,
                    const float *ev_amp, float *out, float *frame0, long ny, long nx,
                    uint64_t seed, uint64_t stream, int noiseless, double gauss_threshold,
                    int nthreads)
    int jw_sim_ipc(const float *inp, float *out, const float *kernel, int kh, int kw,
                   const uint8_t *refpix, int nplanes, long ny, long nx, int nthreads)
    int jw_sim_readout(const float *signal, const float *bias, const float *sigma,
                       const uint8_t *chan, const float *chan_off, int nchan,
                       const int32_t *slow, const float *slow_off, int nslow,
                       const float *thr, const float *thr_margin, int16_t *sat,
                       int16_t *sat_margin, uint16_t *out, int ngroups, long ny, long nx,
                       uint64_t seed, uint64_t stream, int noiseless, int nthreads)


cdef _check(int status, str name):
    if status == JW_ERR_SHAPE:
        raise ValueError(f"{name}: invalid array shapes")
    if status == JW_ERR_PARAM:
        raise ValueError(f"{name}: invalid frame schedule (group index or time step)")
    if status == JW_ERR_ALLOC:
        raise MemoryError(f"{name}: allocation failed")


def sim_ramp(const float[:, ::1] rate_e, const float[:, ::1] gain, const float[:, :, ::1] coeffs,
             const float[:, ::1] well, const float[:, :, ::1] offsets, const double[::1] dt,
             const int32_t[::1] group, const float[::1] weight, const int64_t[::1] ev_rowptr,
             const int32_t[::1] ev_col, const int32_t[::1] ev_read, const float[::1] ev_amp,
             float[:, :, ::1] out, float[:, ::1] frame0, uint64_t seed, uint64_t stream,
             bint noiseless, double gauss_threshold, int nthreads):
    """Accumulate one integration; see ``jwpipe.simulate.detector`` (arrays validated there)."""
    cdef long ny = rate_e.shape[0], nx = rate_e.shape[1]
    cdef int nread = dt.shape[0], ngroups = out.shape[0]
    cdef int ncoeff = coeffs.shape[0] if coeffs is not None else 0
    cdef const float *pc = &coeffs[0, 0, 0] if coeffs is not None and coeffs.size else NULL
    cdef const float *pw = &well[0, 0] if well is not None else NULL
    cdef const float *po = &offsets[0, 0, 0] if offsets is not None else NULL
    cdef const int64_t *prow = &ev_rowptr[0] if ev_rowptr is not None else NULL
    cdef const int32_t *pcol = &ev_col[0] if ev_col is not None and ev_col.shape[0] else NULL
    cdef const int32_t *pread = &ev_read[0] if ev_read is not None and ev_read.shape[0] else NULL
    cdef const float *pamp = &ev_amp[0] if ev_amp is not None and ev_amp.shape[0] else NULL
    cdef float *pf0 = &frame0[0, 0] if frame0 is not None else NULL
    cdef int status
    if ny == 0 or nx == 0:
        return
    if pcol == NULL:
        prow = NULL
    with nogil:
        status = jw_sim_ramp(&rate_e[0, 0], &gain[0, 0], pc, ncoeff, pw, po, &dt[0], &group[0],
                             &weight[0], nread, ngroups, prow, pcol, pread, pamp,
                             &out[0, 0, 0], pf0, ny, nx, seed, stream, noiseless,
                             gauss_threshold, nthreads)
    _check(status, "sim_ramp")


def sim_ipc(const float[:, :, ::1] inp, float[:, :, ::1] out, const float[:, ::1] kernel,
            const uint8_t[:, ::1] refpix, int nthreads):
    """Convolve every plane with a small odd kernel; reference pixels excluded (see simulate.c)."""
    cdef int nplanes = inp.shape[0]
    cdef long ny = inp.shape[1], nx = inp.shape[2]
    cdef const uint8_t *pr = &refpix[0, 0] if refpix is not None else NULL
    cdef int status
    if nplanes == 0 or ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_sim_ipc(&inp[0, 0, 0], &out[0, 0, 0], &kernel[0, 0], kernel.shape[0],
                            kernel.shape[1], pr, nplanes, ny, nx, nthreads)
    _check(status, "sim_ipc")


def sim_readout(const float[:, :, ::1] signal, const float[:, ::1] bias, const float[:, ::1] sigma,
                const uint8_t[:, ::1] chan, const float[:, ::1] chan_off,
                const int32_t[:, ::1] slow, const float[:, ::1] slow_off,
                const float[:, ::1] thr, const float[:, ::1] thr_margin,
                int16_t[:, ::1] sat, int16_t[:, ::1] sat_margin,
                uint16_t[:, :, ::1] out, uint64_t seed, uint64_t stream, bint noiseless,
                int nthreads):
    """Add bias, correlated offsets and read noise; round to uint16 (see simulate.c)."""
    cdef int ngroups = signal.shape[0]
    cdef long ny = signal.shape[1], nx = signal.shape[2]
    cdef const uint8_t *pch = &chan[0, 0] if chan is not None else NULL
    cdef const float *pco = &chan_off[0, 0] if chan_off is not None else NULL
    cdef int nchan = chan_off.shape[1] if chan_off is not None else 0
    cdef const int32_t *psl = &slow[0, 0] if slow is not None else NULL
    cdef const float *pso = &slow_off[0, 0] if slow_off is not None else NULL
    cdef int nslow = slow_off.shape[1] if slow_off is not None else 0
    cdef const float *pb = &bias[0, 0] if bias is not None else NULL
    cdef const float *ps = &sigma[0, 0] if sigma is not None else NULL
    cdef const float *pt = &thr[0, 0] if thr is not None else NULL
    cdef const float *ptm = &thr_margin[0, 0] if thr_margin is not None else NULL
    cdef int16_t *psat = &sat[0, 0] if sat is not None else NULL
    cdef int16_t *psatm = &sat_margin[0, 0] if sat_margin is not None else NULL
    cdef int status
    if ny == 0 or nx == 0 or ngroups == 0:
        return
    with nogil:
        status = jw_sim_readout(&signal[0, 0, 0], pb, ps, pch, pco, nchan, psl, pso, nslow,
                                pt, ptm, psat, psatm, &out[0, 0, 0], ngroups, ny, nx, seed,
                                stream, noiseless, nthreads)
    _check(status, "sim_readout")
