# Cython shim over src/jump.c: typed memoryviews in, preallocated outputs, status code out,
# GIL released for the whole kernel.
from libc.stdint cimport uint8_t, uint32_t, int64_t

cdef extern from "jump.h" nogil:
    int JW_OK
    int JW_ERR_SHAPE
    int JW_ERR_ALLOC
    int JW_ERR_PARAM
    ctypedef struct jw_jump_params:
        double rejection_threshold
        double four_group_threshold
        double three_group_threshold
        double neg_rejection_threshold
        double neg_four_group_threshold
        double neg_three_group_threshold
        int flag_4_neighbors
        double min_jump_to_flag_neighbors
        double max_jump_to_flag_neighbors
        double after_jump_flag_dn1
        int after_jump_flag_n1
        double after_jump_flag_dn2
        int after_jump_flag_n2
        int minimum_groups
        int pool_integrations
        int nframes
        double frame_time
        double group_time
        int split_frames
        int line_axis
        int line_segments
        int line_fused
    int jw_detect_jumps(const float *data, const uint8_t *groupdq, const float *gain,
                        const float *readnoise, float *line_offsets,
                        uint8_t *groupdq_out, uint32_t *pixeldq, float *mean_diff,
                        int64_t *n_jumps, int nints, int ngroups, int ny, int nx,
                        const jw_jump_params *params, int nthreads)
    int jw_line_offsets(const float *data, const uint8_t *groupdq, const float *gain,
                        const float *readnoise, float *offsets, int nints, int ngroups, int ny,
                        int nx, const jw_jump_params *params, int nthreads)


cdef int _check(int status) except -1:
    if status == JW_ERR_SHAPE:
        raise ValueError("detect_jumps: invalid array shape")
    if status == JW_ERR_PARAM:
        raise ValueError("detect_jumps: invalid nframes, group_time, frame_time or line options")
    if status == JW_ERR_ALLOC:
        raise MemoryError("detect_jumps: could not allocate the per-thread buffers")
    return 0


def line_offsets(const float[:, :, :, ::1] data, const uint8_t[:, :, :, ::1] groupdq,
                 const float[:, ::1] gain, const float[:, ::1] readnoise,
                 float[:, :, :, ::1] offsets, *, int line_axis, int line_segments,
                 int minimum_groups, int nframes, double frame_time, double group_time,
                 int nthreads):
    """Common-mode offsets of the first differences along detector lines (DN), into
    ``offsets`` (nints, ngroups - 1, nlines, line_segments); see ``jw_line_offsets`` in jump.h.
    Shapes are checked by the caller."""
    cdef jw_jump_params p
    cdef int status
    cdef int nints = data.shape[0], ngroups = data.shape[1], ny = data.shape[2], nx = data.shape[3]
    p.minimum_groups = minimum_groups
    p.nframes = nframes
    p.frame_time = frame_time
    p.group_time = group_time
    p.line_axis = line_axis
    p.line_segments = line_segments
    if nints == 0 or ngroups < 2 or ny == 0 or nx == 0:
        return
    with nogil:
        status = jw_line_offsets(&data[0, 0, 0, 0], &groupdq[0, 0, 0, 0], &gain[0, 0],
                                 &readnoise[0, 0], &offsets[0, 0, 0, 0], nints, ngroups, ny, nx,
                                 &p, nthreads)
    _check(status)


def detect_jumps(const float[:, :, :, ::1] data, const uint8_t[:, :, :, ::1] groupdq,
                 const float[:, ::1] gain, const float[:, ::1] readnoise,
                 uint8_t[:, :, :, ::1] groupdq_out, uint32_t[:, ::1] pixeldq,
                 float[:, :, ::1] mean_diff, *, double rejection_threshold,
                 double four_group_threshold, double three_group_threshold,
                 double neg_rejection_threshold, double neg_four_group_threshold,
                 double neg_three_group_threshold,
                 bint flag_4_neighbors, double min_jump_to_flag_neighbors,
                 double max_jump_to_flag_neighbors, double after_jump_flag_dn1,
                 int after_jump_flag_n1, double after_jump_flag_dn2, int after_jump_flag_n2,
                 int minimum_groups, bint pool_integrations, int nframes, double frame_time,
                 double group_time, int nthreads, float[:, :, :, ::1] line_offsets=None,
                 int line_axis=0, int line_segments=1, int split_frames=1,
                 bint line_fused=False):
    """Two-point-difference jump detection on one block; see ``jwpipe.jump_detection``.

    ``line_offsets``: None, or :func:`line_offsets` of the same block with the same
    ``line_axis`` and ``line_segments``; with ``line_fused`` (rows only) an array of that shape
    that the kernel fills itself (the same values, without a pass of their own).
    ``split_frames`` > 1 (thresholds not symmetric only): also test the template of hits
    arriving between the frames of a group. Returns the number of primary jumps. Shapes are
    checked by the caller.
    """
    cdef jw_jump_params p
    cdef float *loff = NULL
    cdef int status
    cdef int64_t n_jumps = 0
    cdef int nints = data.shape[0], ngroups = data.shape[1], ny = data.shape[2], nx = data.shape[3]
    p.rejection_threshold = rejection_threshold
    p.four_group_threshold = four_group_threshold
    p.three_group_threshold = three_group_threshold
    p.neg_rejection_threshold = neg_rejection_threshold
    p.neg_four_group_threshold = neg_four_group_threshold
    p.neg_three_group_threshold = neg_three_group_threshold
    p.flag_4_neighbors = flag_4_neighbors
    p.min_jump_to_flag_neighbors = min_jump_to_flag_neighbors
    p.max_jump_to_flag_neighbors = max_jump_to_flag_neighbors
    p.after_jump_flag_dn1 = after_jump_flag_dn1
    p.after_jump_flag_n1 = after_jump_flag_n1
    p.after_jump_flag_dn2 = after_jump_flag_dn2
    p.after_jump_flag_n2 = after_jump_flag_n2
    p.minimum_groups = minimum_groups
    p.pool_integrations = pool_integrations
    p.nframes = nframes
    p.frame_time = frame_time
    p.group_time = group_time
    p.line_axis = line_axis if line_offsets is not None else 0
    p.line_segments = line_segments
    p.split_frames = split_frames
    p.line_fused = line_fused
    if nints == 0 or ngroups == 0 or ny == 0 or nx == 0:
        return 0
    if line_offsets is not None and ngroups > 1:
        loff = &line_offsets[0, 0, 0, 0]
    with nogil:
        status = jw_detect_jumps(&data[0, 0, 0, 0], &groupdq[0, 0, 0, 0], &gain[0, 0],
                                 &readnoise[0, 0], loff, &groupdq_out[0, 0, 0, 0],
                                 &pixeldq[0, 0], &mean_diff[0, 0, 0], &n_jumps, nints, ngroups,
                                 ny, nx, &p, nthreads)
    _check(status)
    return n_jumps
