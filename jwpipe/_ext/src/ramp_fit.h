#ifndef JWPIPE_RAMP_FIT_H
#define JWPIPE_RAMP_FIT_H

#include "jwstatus.h"

#include <stddef.h>
#include <stdint.h>


/* Variances at or above this are reported as 0 (the reference pipeline's LARGE_VARIANCE_THRESHOLD). */
#define JW_RF_LARGE_VARIANCE 1.0e6

/* Bits of jw_rf_accum.state. */
#define JW_RF_STATE_USABLE 1u     /* at least one integration was not DO_NOT_USE */
#define JW_RF_STATE_CHARGELOSS 2u /* at least one integration had CHARGELOSS groups */

/* What stays fixed for a whole exposure. 2-D arrays are C-contiguous (ny, nx). */
typedef struct jw_rf_setup {
    int ngroups;            /* groups per integration in the input arrays */
    int first, stop;        /* groups [first, stop) are fitted, as if the others did not exist */
    int ny, nx;
    int nframes;            /* frames averaged per group */
    int suppress_one_group; /* 1: a ramp with a single usable group gets no slope */
    double group_time;      /* TGROUP, s */
    double frame_time;      /* TFRAME, s (slope of a ZEROFRAME-rescued ramp) */
    double one_group_time;  /* (NFRAMES + 1) * TFRAME / 2, s (ramps whose only good group is 0) */
    const float *gain;      /* e-/DN */
    const float *readnoise; /* CDS read noise, DN (the READNOISE reference file) */
    const float *dark;      /* average dark current, DN/s; NULL: dark_value everywhere */
    double dark_value;
    const uint32_t *pixeldq; /* NULL: no flags */
    double pedestal_factor;  /* ((NFRAMES + 1) / 2 + DRPFRMS1) / (NFRAMES + GROUPGAP) (fitopt) */
    int snr_from_endpoints;  /* signal of the S/N that picks a segment's weighting power:
                                1: last - first group (the reference); 0: the unweighted
                                least-squares slope times (len - 1), which is unbiased */
} jw_rf_setup;

/* Results for n images of (ny, nx): per integration (n = block size) or for the exposure (n = 1). */
typedef struct jw_rf_image {
    float *slope, *err, *var_poisson, *var_rnoise;
    uint32_t *dq;
} jw_rf_image;

/* Per-pixel running sums over integrations, each (ny, nx); start zeroed. */
typedef struct jw_rf_accum {
    double *sum_rate;       /* per-integration median rates, DN/s */
    double *sum_pden;       /* Poisson denominators: var_P of a segment is (rate + dark) / pden */
    double *sum_ivar_r;     /* sum of 1 / var_R over segments */
    double *sum_num;        /* sum of slope / var_R over segments */
    double *sum_ivar_r_cl;  /* read-noise sum with CHARGELOSS groups put back */
    uint32_t *dq;           /* OR of the integrations' JUMP_DET and SATURATED flags */
    uint8_t *state;         /* JW_RF_STATE_* bits */
} jw_rf_accum;

/* The optional per-segment results (save_opt, the _fitopt product) of nb integrations. Segment k
 * of an integration is its k-th fitted segment in ramp order; entries past a pixel's count are 0.
 * C-contiguous float32: (nb, seg_cap, ny, nx) per-segment arrays, pedestal (nb, ny, nx), crmag
 * (nb, cr_cap, ny, nx) (may be NULL when cr_cap is 0). */
typedef struct jw_rf_opt {
    int seg_cap, cr_cap;
    float *slope, *sigslope, *var_poisson, *var_rnoise, *yint, *sigyint, *weights;
    float *pedestal, *crmag;
} jw_rf_opt;

/* Fit nb integrations: data/groupdq (nb, ngroups, ny, nx), zeroframe (nb, ny, nx) or NULL.
 * Writes ints (nb, ny, nx) and adds to acc. With rate non-NULL the block is the whole exposure:
 * acc is not used (may be NULL) and the exposure results are written to rate (ny, nx) directly.
 * With opt non-NULL the fitopt arrays are written too (JW_ERR_SHAPE if a pixel has more segments
 * or cosmic rays than their capacity; jw_ramp_fit_opt_counts gives the sizes needed). */
int jw_ramp_fit_block(const jw_rf_setup *s, int nb, const float *data, const uint8_t *groupdq,
                      const float *zeroframe, const jw_rf_image *ints, const jw_rf_accum *acc,
                      const jw_rf_image *rate, const jw_rf_opt *opt, int nthreads);

/* The largest number of fitted segments and of cosmic rays (groups after the first flagged
 * JUMP_DET) of any pixel-integration of a block: the fitopt capacities it needs. */
int jw_ramp_fit_opt_counts(const jw_rf_setup *s, int nb, const float *data,
                           const uint8_t *groupdq, const float *zeroframe, int *max_segs,
                           int *max_crs, int nthreads);

/* Exposure-level results from the sums after nints integrations; writes rate (ny, nx). */
int jw_ramp_fit_finish(const jw_rf_setup *s, long nints, const jw_rf_accum *acc,
                       const jw_rf_image *rate, int nthreads);

/* The instruction set jw_ramp_fit_block runs with: "avx512", "avx2" or "baseline".
 * jw_ramp_fit_allow_simd(level) caps it (0 baseline, 1 AVX2, 2 AVX-512F, the default; tests
 * compare the variants); the CPU and the build may give less. */
const char *jw_ramp_fit_simd(void);
void jw_ramp_fit_allow_simd(int level);

#endif
