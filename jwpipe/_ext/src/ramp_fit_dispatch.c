/* Run-time choice between the builds of ramp_fit.c (see the note at its top): the AVX2 one when
 * the build made it (JW_HAVE_AVX2) and the CPU has AVX2, else the baseline. Only the block fit is
 * dispatched; the other entry points cost little and use the baseline. */
#include "ramp_fit.h"

#define JW_RF_DECLARE(sfx)                                                                      \
    int jw_ramp_fit_block##sfx(const jw_rf_setup *s, int nb, const float *data,                \
                               const uint8_t *groupdq, const float *zeroframe,                 \
                               const jw_rf_image *ints, const jw_rf_accum *acc,                \
                               const jw_rf_image *rate, const jw_rf_opt *opt, int nthreads);   \
    int jw_ramp_fit_opt_counts##sfx(const jw_rf_setup *s, int nb, const float *data,           \
                                    const uint8_t *groupdq, const float *zeroframe,            \
                                    int *max_segs, int *max_crs, int nthreads);                \
    int jw_ramp_fit_finish##sfx(const jw_rf_setup *s, long nints, const jw_rf_accum *acc,      \
                                const jw_rf_image *rate, int nthreads);

JW_RF_DECLARE(_baseline)
#ifdef JW_HAVE_AVX2
JW_RF_DECLARE(_avx2)
#endif

static int allow_simd = 1;

static int use_avx2(void)
{
#ifdef JW_HAVE_AVX2
    /* the answer never changes, so concurrent first calls racing here is harmless */
    static int cpu_has_avx2 = -1;
    if (cpu_has_avx2 < 0) {
        __builtin_cpu_init();
        cpu_has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return allow_simd && cpu_has_avx2;
#else
    return 0;
#endif
}

const char *jw_ramp_fit_simd(void) { return use_avx2() ? "avx2" : "baseline"; }

void jw_ramp_fit_allow_simd(int allow) { allow_simd = allow ? 1 : 0; }

int jw_ramp_fit_block(const jw_rf_setup *s, int nb, const float *data, const uint8_t *groupdq,
                      const float *zeroframe, const jw_rf_image *ints, const jw_rf_accum *acc,
                      const jw_rf_image *rate, const jw_rf_opt *opt, int nthreads)
{
#ifdef JW_HAVE_AVX2
    if (use_avx2())
        return jw_ramp_fit_block_avx2(s, nb, data, groupdq, zeroframe, ints, acc, rate, opt,
                                      nthreads);
#endif
    return jw_ramp_fit_block_baseline(s, nb, data, groupdq, zeroframe, ints, acc, rate, opt,
                                      nthreads);
}

int jw_ramp_fit_opt_counts(const jw_rf_setup *s, int nb, const float *data,
                           const uint8_t *groupdq, const float *zeroframe, int *max_segs,
                           int *max_crs, int nthreads)
{
    return jw_ramp_fit_opt_counts_baseline(s, nb, data, groupdq, zeroframe, max_segs, max_crs,
                                           nthreads);
}

int jw_ramp_fit_finish(const jw_rf_setup *s, long nints, const jw_rf_accum *acc,
                       const jw_rf_image *rate, int nthreads)
{
    return jw_ramp_fit_finish_baseline(s, nints, acc, rate, nthreads);
}
