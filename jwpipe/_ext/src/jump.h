#ifndef JWPIPE_JUMP_H
#define JWPIPE_JUMP_H

#include "jwstatus.h"

#include <stdint.h>


/* Options of the two-point-difference jump detector (see jump.c for their meaning). */
typedef struct {
    double rejection_threshold;        /* threshold on z > 0 with >= 4 usable differences left */
    double four_group_threshold;       /* ... with 3 differences left */
    double three_group_threshold;      /* ... with 2 differences left */
    double neg_rejection_threshold;    /* threshold on -z (z < 0), the same three cases; equal */
    double neg_four_group_threshold;   /* to the above for the symmetric |z| test */
    double neg_three_group_threshold;
    int flag_4_neighbors;              /* flag the 4 neighbours of jumps with |z| in range */
    double min_jump_to_flag_neighbors; /* exclusive bounds of that range */
    double max_jump_to_flag_neighbors;
    double after_jump_flag_dn1;        /* jumps of at least this many DN ... */
    int after_jump_flag_n1;            /* ... flag this many following groups (0: off) */
    double after_jump_flag_dn2;
    int after_jump_flag_n2;
    int minimum_groups;                /* fewer usable groups: pixel-integration not tested */
    int pool_integrations;             /* test all integrations of the block as one ramp */
    int nframes;                       /* frames averaged per group */
    double frame_time;                 /* s; with group_time sets the frame-averaging terms */
    double group_time;                 /* s */
    int split_frames;                  /* > 1 (frames per group): also test the template
                                        * (e_k + e_k+1) / 2 of hits arriving between frames
                                        * (positive steps; thresholds not symmetric only) */
    int line_axis;                     /* common-mode lines: 0 none, 1 rows, 2 columns */
    int line_segments;                 /* segments (amplifiers) per line, along the fast axis */
    int line_fused;                    /* rows: jw_detect_jumps computes the offsets itself */
} jw_jump_params;

/* Common-mode offsets of the first differences along detector lines, for detection only.
 *
 * For each integration, difference k (groups k -> k+1), line (a row when params->line_axis is 1,
 * a column when 2) and segment of that line (params->line_segments equal parts along the line,
 * the amplifiers), a robust inverse-variance weighted mean of d_k - m over the segment's pixels
 * (d_k in DN, m the pixel's mean difference), clipped at 5 then 4 sigma of each pixel; 0 where
 * fewer than JW_LINE_MIN_PIXELS pixels contribute. Inputs as for jw_detect_jumps; output
 * offsets (nints, ngroups - 1, nlines, line_segments) float32 DN, nlines = ny (rows) or nx.
 * Results do not depend on nthreads.
 */
#define JW_LINE_MIN_PIXELS 32
int jw_line_offsets(const float *data, const uint8_t *groupdq, const float *gain,
                    const float *readnoise, float *offsets, int nints, int ngroups, int ny, int nx,
                    const jw_jump_params *params, int nthreads);

/* Detect jumps in a block of integrations.
 *
 * line_offsets: NULL, or the output of jw_line_offsets for the same block and params (subtracted
 * from the differences before they are tested; the data are not modified). With line_fused
 * (rows only) it is instead filled here, row by row as the rows are tested (one pass over the
 * data instead of two), with the same values.
 * data (nints, ngroups, ny, nx) float32 DN; groupdq the same shape, uint8; gain, readnoise
 * (ny, nx) float32 (e/DN and CDS read noise in DN). Outputs, preallocated by the caller:
 * groupdq_out (same shape as groupdq; fully written), pixeldq (ny, nx) uint32 (NO_GAIN_VALUE |
 * DO_NOT_USE OR-ed in where the gain is unusable), mean_diff (nints, ny, nx) float32 (the mean
 * usable non-jump first difference, DN per group, line offsets removed; NaN when none), n_jumps
 * (the number of primary jumps found). Results do not depend on nthreads; unless
 * pool_integrations is set they do not depend on how the exposure is cut into blocks either.
 */
int jw_detect_jumps(const float *data, const uint8_t *groupdq, const float *gain,
                    const float *readnoise, float *line_offsets, uint8_t *groupdq_out,
                    uint32_t *pixeldq, float *mean_diff, int64_t *n_jumps, int nints, int ngroups,
                    int ny, int nx, const jw_jump_params *params, int nthreads);

#endif
