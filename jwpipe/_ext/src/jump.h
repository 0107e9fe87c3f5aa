#ifndef JWPIPE_JUMP_H
#define JWPIPE_JUMP_H

#include "jwstatus.h"

#include <stdint.h>


/* Options of the two-point-difference jump detector (see jump.c for their meaning). */
typedef struct {
    double rejection_threshold;        /* |z| threshold with >= 4 usable differences left */
    double four_group_threshold;       /* ... with 3 differences left */
    double three_group_threshold;      /* ... with 2 differences left */
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
} jw_jump_params;

/* Detect jumps in a block of integrations.
 *
 * data (nints, ngroups, ny, nx) float32 DN; groupdq the same shape, uint8; gain, readnoise
 * (ny, nx) float32 (e/DN and CDS read noise in DN). Outputs, preallocated by the caller:
 * groupdq_out (same shape as groupdq; fully written), pixeldq (ny, nx) uint32 (NO_GAIN_VALUE |
 * DO_NOT_USE OR-ed in where the gain is unusable), mean_diff (nints, ny, nx) float32 (the mean
 * usable non-jump first difference, DN per group; NaN when none), n_jumps (the number of
 * primary jumps found). Results do not depend on nthreads; unless pool_integrations is set they
 * do not depend on how the exposure is cut into blocks either.
 */
int jw_detect_jumps(const float *data, const uint8_t *groupdq, const float *gain,
                    const float *readnoise, uint8_t *groupdq_out, uint32_t *pixeldq,
                    float *mean_diff, int64_t *n_jumps, int nints, int ngroups, int ny, int nx,
                    const jw_jump_params *params, int nthreads);

#endif
