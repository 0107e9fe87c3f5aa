# Cython shim over src/ramp_fit.c: typed memoryviews in, status code out, GIL released.
from libc.stdint cimport uint8_t, uint32_t

cdef extern from "ramp_fit.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int JW_ERR_ALLOC

    ctypedef struct jw_rf_setup:
        int ngroups, first, stop, ny, nx, nframes, suppress_one_group
        double group_time, frame_time, one_group_time
        const float *gain
        const float *readnoise
        const float *dark
        double dark_value
        const uint32_t *pixeldq
        double pedestal_factor
        int snr_from_endpoints

    ctypedef struct jw_rf_image:
        float *slope
        float *err
        float *var_poisson
        float *var_rnoise
        uint32_t *dq

    ctypedef struct jw_rf_accum:
        double *sum_rate
        double *sum_pden
        double *sum_ivar_r
        double *sum_num
        double *sum_ivar_r_cl
        uint32_t *dq
        uint8_t *state

    ctypedef struct jw_rf_opt:
        int seg_cap, cr_cap
        float *slope
        float *sigslope
        float *var_poisson
        float *var_rnoise
        float *yint
        float *sigyint
        float *weights
        float *pedestal
        float *crmag

    int jw_ramp_fit_block(const jw_rf_setup *s, int nb, const float *data, const uint8_t *groupdq,
                          const float *zeroframe, const jw_rf_image *ints, const jw_rf_accum *acc,
                          const jw_rf_image *rate, const jw_rf_opt *opt, int nthreads)
    int jw_ramp_fit_opt_counts(const jw_rf_setup *s, int nb, const float *data,
                               const uint8_t *groupdq, const float *zeroframe, int *max_segs,
                               int *max_crs, int nthreads)
    int jw_ramp_fit_finish(const jw_rf_setup *s, long nints, const jw_rf_accum *acc,
                           const jw_rf_image *rate, int nthreads)
    const char *jw_ramp_fit_simd()
    void jw_ramp_fit_allow_simd(int level)


cdef void _raise(int status, str what) except *:
    if status == JW_ERR_SHAPE:
        raise ValueError(f"{what}: inconsistent shapes or group range")
    if status == JW_ERR_ALLOC:
        raise MemoryError(f"{what}: could not allocate the per-thread buffers")
    if status != JW_OK:
        raise RuntimeError(f"{what}: kernel failed with status {status}")


cdef inline bint _same2(Py_ssize_t *shape, Py_ssize_t a, Py_ssize_t b) noexcept:
    return shape[0] == a and shape[1] == b


cdef inline bint _same3(Py_ssize_t *shape, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) noexcept:
    return shape[0] == a and shape[1] == b and shape[2] == c


cdef int _image(object arrays, Py_ssize_t n, Py_ssize_t ny, Py_ssize_t nx, jw_rf_image *out,
                str what) except -1:
    """Point ``out`` at (slope, err, dq, var_poisson, var_rnoise), each (n, ny, nx)."""
    cdef float[:, :, ::1] slope, err, vp, vr
    cdef uint32_t[:, :, ::1] dq
    slope, err, dq, vp, vr = arrays
    if not (_same3(slope.shape, n, ny, nx) and _same3(err.shape, n, ny, nx)
            and _same3(dq.shape, n, ny, nx) and _same3(vp.shape, n, ny, nx)
            and _same3(vr.shape, n, ny, nx)):
        raise ValueError(f"{what}: result arrays must have shape {(n, ny, nx)}")
    if n == 0:
        out.slope = out.err = out.var_poisson = out.var_rnoise = NULL
        out.dq = NULL
        return 0
    out.slope = &slope[0, 0, 0]
    out.err = &err[0, 0, 0]
    out.dq = &dq[0, 0, 0]
    out.var_poisson = &vp[0, 0, 0]
    out.var_rnoise = &vr[0, 0, 0]
    return 0


cdef int _accum(object sums_dq_state, Py_ssize_t ny, Py_ssize_t nx, jw_rf_accum *acc) except -1:
    """Point ``acc`` at (sums (5, ny, nx) float64, dq (ny, nx) uint32, state (ny, nx) uint8)."""
    cdef double[:, :, ::1] sums
    cdef uint32_t[:, ::1] dq
    cdef uint8_t[:, ::1] state
    sums, dq, state = sums_dq_state
    if not (_same3(sums.shape, 5, ny, nx) and _same2(dq.shape, ny, nx)
            and _same2(state.shape, ny, nx)):
        raise ValueError("sums must be (5, ny, nx), dq and state (ny, nx)")
    acc.sum_rate = &sums[0, 0, 0]
    acc.sum_pden = &sums[1, 0, 0]
    acc.sum_ivar_r = &sums[2, 0, 0]
    acc.sum_num = &sums[3, 0, 0]
    acc.sum_ivar_r_cl = &sums[4, 0, 0]
    acc.dq = &dq[0, 0]
    acc.state = &state[0, 0]
    return 0


cdef int _opt(object arrays, Py_ssize_t n, Py_ssize_t ny, Py_ssize_t nx, jw_rf_opt *out) except -1:
    """Point ``out`` at the fitopt arrays (slope, sigslope, var_poisson, var_rnoise, yint, sigyint,
    pedestal, weights, crmag): float32, (n, S, ny, nx) per segment, pedestal (n, ny, nx), crmag
    (n, C, ny, nx)."""
    cdef float[:, :, :, ::1] slope, sigslope, vp, vr, yint, sigyint, weights, crmag
    cdef float[:, :, ::1] pedestal
    slope, sigslope, vp, vr, yint, sigyint, pedestal, weights, crmag = arrays
    cdef Py_ssize_t cap = slope.shape[1]
    want = (n, cap, ny, nx)
    for a in arrays[:6] + arrays[7:8]:
        if tuple(a.shape) != want:
            raise ValueError(f"fitopt segment arrays must have shape {want}")
    if not _same3(pedestal.shape, n, ny, nx):
        raise ValueError(f"fitopt pedestal must have shape {(n, ny, nx)}")
    if not (crmag.shape[0] == n and crmag.shape[2] == ny and crmag.shape[3] == nx):
        raise ValueError(f"fitopt crmag must have shape (n, C, ny, nx) with n, ny, nx = {(n, ny, nx)}")
    if cap < 1:
        raise ValueError("fitopt arrays need at least one segment")
    out.seg_cap = <int>cap
    out.cr_cap = <int>crmag.shape[1]
    if n == 0:
        raise ValueError("fitopt arrays need at least one integration")
    out.slope = &slope[0, 0, 0, 0]
    out.sigslope = &sigslope[0, 0, 0, 0]
    out.var_poisson = &vp[0, 0, 0, 0]
    out.var_rnoise = &vr[0, 0, 0, 0]
    out.yint = &yint[0, 0, 0, 0]
    out.sigyint = &sigyint[0, 0, 0, 0]
    out.weights = &weights[0, 0, 0, 0]
    out.pedestal = &pedestal[0, 0, 0]
    out.crmag = NULL
    if out.cr_cap > 0:
        out.crmag = &crmag[0, 0, 0, 0]
    return 0


def simd() -> str:
    """The instruction set the block fit runs with: ``"avx512"``, ``"avx2"`` or ``"baseline"``."""
    return jw_ramp_fit_simd().decode()


SIMD_LEVELS = ("baseline", "avx2", "avx512")


def allow_simd(allow):
    """Cap the instruction set of the block fit: True (default) lets it use the best build the CPU
    runs, False forces the baseline, ``"avx2"`` (or another of ``SIMD_LEVELS``) caps it there.

    Every build gives bit-identical results; tests compare them.
    """
    if isinstance(allow, str):
        if allow not in SIMD_LEVELS:
            raise ValueError(f"allow_simd: {allow!r} is not one of {SIMD_LEVELS}")
        level = SIMD_LEVELS.index(allow)
    else:
        level = len(SIMD_LEVELS) - 1 if allow else 0
    jw_ramp_fit_allow_simd(level)


cdef class RampFitKernel:
    """Per-exposure constants of the ramp-fitting kernel; see ``jwpipe.ramp_fitting``.

    Holds the 2-D inputs (gain, CDS read noise in DN, dark current or None for the constant
    ``dark_value``, PIXELDQ or None, all C-contiguous (ny, nx)) and the group range and times.
    Results go to caller-allocated arrays passed as tuples ``(slope, err, dq, var_poisson,
    var_rnoise)`` of shape (n, ny, nx); the running sums as ``(sums (5, ny, nx) float64 zeroed,
    dq (ny, nx) uint32, state (ny, nx) uint8)``.
    """
    cdef jw_rf_setup s
    cdef object _keep

    def __cinit__(self, const float[:, ::1] gain, const float[:, ::1] readnoise,
                  const float[:, ::1] dark, double dark_value, const uint32_t[:, ::1] pixeldq,
                  int ngroups, int first, int stop, int nframes, double group_time,
                  double frame_time, double one_group_time, bint suppress_one_group,
                  double pedestal_factor=1.0, bint snr_from_endpoints=False):
        cdef Py_ssize_t ny = gain.shape[0], nx = gain.shape[1]
        if not _same2(readnoise.shape, ny, nx):
            raise ValueError("RampFitKernel: readnoise must have the shape of gain")
        if dark is not None and not _same2(dark.shape, ny, nx):
            raise ValueError("RampFitKernel: dark must have the shape of gain")
        if pixeldq is not None and not _same2(pixeldq.shape, ny, nx):
            raise ValueError("RampFitKernel: pixeldq must have the shape of gain")
        if ny * nx == 0:
            raise ValueError("RampFitKernel: empty image")
        if not (0 <= first < stop <= ngroups):
            raise ValueError("RampFitKernel: need 0 <= first < stop <= ngroups")
        if nframes < 1:
            raise ValueError("RampFitKernel: nframes must be >= 1")
        self._keep = (gain.base, readnoise.base, None if dark is None else dark.base,
                      None if pixeldq is None else pixeldq.base)
        self.s.ngroups = ngroups
        self.s.first = first
        self.s.stop = stop
        self.s.ny = <int>ny
        self.s.nx = <int>nx
        self.s.nframes = nframes
        self.s.suppress_one_group = suppress_one_group
        self.s.group_time = group_time
        self.s.frame_time = frame_time
        self.s.one_group_time = one_group_time
        self.s.gain = &gain[0, 0]
        self.s.readnoise = &readnoise[0, 0]
        self.s.dark = NULL
        self.s.dark_value = dark_value
        self.s.pixeldq = NULL
        self.s.pedestal_factor = pedestal_factor
        self.s.snr_from_endpoints = snr_from_endpoints
        if dark is not None:
            self.s.dark = &dark[0, 0]
        if pixeldq is not None:
            self.s.pixeldq = &pixeldq[0, 0]

    cdef int _check_block(self, const float[:, :, :, ::1] data,
                          const uint8_t[:, :, :, ::1] groupdq,
                          const float[:, :, ::1] zeroframe) except -1:
        """Raise unless data/groupdq are (nb, ngroups, ny, nx) and zeroframe (nb, ny, nx)."""
        if (data.shape[1] != self.s.ngroups or data.shape[2] != self.s.ny
                or data.shape[3] != self.s.nx):
            raise ValueError("data must have shape (nb, ngroups, ny, nx)")
        for d in range(4):
            if groupdq.shape[d] != data.shape[d]:
                raise ValueError("groupdq must have the shape of data")
        if zeroframe is not None and not _same3(zeroframe.shape, <int>data.shape[0], self.s.ny,
                                                self.s.nx):
            raise ValueError("zeroframe must have shape (nb, ny, nx)")
        return 0

    cdef int _block(self, const float[:, :, :, ::1] data, const uint8_t[:, :, :, ::1] groupdq,
                    const float[:, :, ::1] zeroframe, object ints, jw_rf_accum *acc,
                    jw_rf_image *rate, object opt, int nthreads) except -1:
        cdef int nb = <int>data.shape[0], status
        cdef jw_rf_image out
        cdef jw_rf_opt o
        cdef jw_rf_opt *op = NULL
        cdef const float *zf = NULL
        cdef const float *dp = NULL
        cdef const uint8_t *qp = NULL
        self._check_block(data, groupdq, zeroframe)
        _image(ints, nb, self.s.ny, self.s.nx, &out, "ints")
        if opt is not None:
            _opt(opt, nb, self.s.ny, self.s.nx, &o)
            op = &o
        if nb > 0:
            dp = &data[0, 0, 0, 0]
            qp = &groupdq[0, 0, 0, 0]
            if zeroframe is not None:
                zf = &zeroframe[0, 0, 0]
        with nogil:
            status = jw_ramp_fit_block(&self.s, nb, dp, qp, zf, &out, acc, rate, op, nthreads)
        _raise(status, "ramp fit")
        return 0

    def fit_block(self, data, groupdq, zeroframe, ints, sums_dq_state, int nthreads, opt=None):
        """Fit a block of integrations into ``ints`` (nb, ny, nx) and add them to the sums.

        ``opt``: the fitopt arrays to fill as well (see ``opt_counts`` for their sizes).
        """
        cdef jw_rf_accum acc
        _accum(sums_dq_state, self.s.ny, self.s.nx, &acc)
        self._block(data, groupdq, zeroframe, ints, &acc, NULL, opt, nthreads)

    def fit_exposure(self, data, groupdq, zeroframe, ints, rate, int nthreads, opt=None):
        """Fit a whole exposure: ``ints`` (nints, ny, nx) and ``rate`` (1, ny, nx), no sums kept."""
        cdef jw_rf_image r
        _image(rate, 1, self.s.ny, self.s.nx, &r, "rate")
        self._block(data, groupdq, zeroframe, ints, NULL, &r, opt, nthreads)

    def opt_counts(self, const float[:, :, :, ::1] data, const uint8_t[:, :, :, ::1] groupdq,
                   const float[:, :, ::1] zeroframe, int nthreads):
        """(largest segment count, largest cosmic-ray count) of any pixel-integration of a block."""
        cdef int nb = <int>data.shape[0], status, segs = 0, crs = 0
        cdef const float *zf = NULL
        self._check_block(data, groupdq, zeroframe)
        if nb == 0:
            return 0, 0
        if zeroframe is not None:
            zf = &zeroframe[0, 0, 0]
        with nogil:
            status = jw_ramp_fit_opt_counts(&self.s, nb, &data[0, 0, 0, 0], &groupdq[0, 0, 0, 0],
                                            zf, &segs, &crs, nthreads)
        _raise(status, "fitopt counts")
        return segs, crs

    def finish(self, long nints, sums_dq_state, rate, int nthreads):
        """Write the exposure results ``rate`` (1, ny, nx) from the sums after nints integrations."""
        cdef int status
        cdef jw_rf_accum acc
        cdef jw_rf_image r
        _accum(sums_dq_state, self.s.ny, self.s.nx, &acc)
        _image(rate, 1, self.s.ny, self.s.nx, &r, "rate")
        with nogil:
            status = jw_ramp_fit_finish(&self.s, nints, &acc, &r, nthreads)
        _raise(status, "finish")
