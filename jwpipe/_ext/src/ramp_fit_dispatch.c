/* Run-time choice between the builds of ramp_fit.c (see the note at its top): the AVX-512F one
 * when the build made it (JW_HAVE_AVX512) and the CPU has AVX-512F, else the AVX2 one likewise,
 * else the baseline. Only the block fit is dispatched; the other entry points cost little and use
 * the baseline. */
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
#ifdef JW_HAVE_AVX512
JW_RF_DECLARE(_avx512)
#endif

enum { LEVEL_BASELINE = 0, LEVEL_AVX2 = 1, LEVEL_AVX512 = 2 };

/* The highest build the caller allows (jw_ramp_fit_allow_simd); the best by default. */
static int allowed_level = LEVEL_AVX512;

/* The highest build that is both compiled in and supported by this CPU. */
static int available_level(void)
{
    /* the answer never changes, so concurrent first calls racing here is harmless */
    static int level = -1;
    if (level < 0) {
        int found = LEVEL_BASELINE;
#if defined(JW_HAVE_AVX2) || defined(JW_HAVE_AVX512)
        __builtin_cpu_init();
#endif
#ifdef JW_HAVE_AVX2
        if (__builtin_cpu_supports("avx2")) found = LEVEL_AVX2;
#endif
#ifdef JW_HAVE_AVX512
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f"))
            found = LEVEL_AVX512;
#endif
        level = found;
    }
    return level;
}

static int chosen_level(void)
{
    const int available = available_level();
    return available < allowed_level ? available : allowed_level;
}

const char *jw_ramp_fit_simd(void)
{
    switch (chosen_level()) {
    case LEVEL_AVX512: return "avx512";
    case LEVEL_AVX2: return "avx2";
    default: return "baseline";
    }
}

void jw_ramp_fit_allow_simd(int level)
{
    allowed_level = level < LEVEL_BASELINE ? LEVEL_BASELINE
                    : level > LEVEL_AVX512 ? LEVEL_AVX512 : level;
}

int jw_ramp_fit_block(const jw_rf_setup *s, int nb, const float *data, const uint8_t *groupdq,
                      const float *zeroframe, const jw_rf_image *ints, const jw_rf_accum *acc,
                      const jw_rf_image *rate, const jw_rf_opt *opt, int nthreads)
{
    switch (chosen_level()) {
#ifdef JW_HAVE_AVX512
    case LEVEL_AVX512:
        return jw_ramp_fit_block_avx512(s, nb, data, groupdq, zeroframe, ints, acc, rate, opt,
                                        nthreads);
#endif
#ifdef JW_HAVE_AVX2
    case LEVEL_AVX2:
        return jw_ramp_fit_block_avx2(s, nb, data, groupdq, zeroframe, ints, acc, rate, opt,
                                      nthreads);
#endif
    default:
        return jw_ramp_fit_block_baseline(s, nb, data, groupdq, zeroframe, ints, acc, rate, opt,
                                          nthreads);
    }
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
