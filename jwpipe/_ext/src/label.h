/* Flagged pixels of a frame and their 8-connected regions (snowball search in jump detection). */
#ifndef JWPIPE_LABEL_H
#define JWPIPE_LABEL_H

#include <stdint.h>

#include "jwstatus.h"

/* The linear indices, in increasing order, of the npix pixels where (a & bits) != 0 and, when b
 * is not NULL, (b & bits) == 0 (flags newly set in a after b). With out NULL only counts them.
 * Returns the count. */
int64_t jw_flagged_indices(int64_t npix, const uint8_t *a, const uint8_t *b, uint8_t bits,
                           int64_t *out);

/* 8-connected regions of the n set pixels of an (ny, nx) frame given by their linear indices
 * lin[0..n-1] (strictly increasing, within the frame): label[i] in 0..ncomp-1, numbered in
 * order of each region's first pixel; inner[i] = 1 where all four 4-neighbours are set, else 0.
 * *ncomp receives the number of regions. Time O(n). */
int jw_label_pixels(int64_t n, const int64_t *lin, int64_t ny, int64_t nx, int64_t *label,
                    uint8_t *inner, int64_t *ncomp);

#endif
