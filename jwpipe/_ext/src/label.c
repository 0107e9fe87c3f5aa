/* Flagged pixels and their regions without touching the rest of the frame: the indices are
 * found with a word-at-a-time scan, and the regions by walking the sorted indices once (the
 * right neighbour is the next index; the three below are found with a pointer into the next
 * row that only moves forward), joined by union-find with union by smaller index and path
 * halving. */
#include "label.h"

#include <string.h>

int64_t jw_flagged_indices(int64_t npix, const uint8_t *a, const uint8_t *b, uint8_t bits,
                           int64_t *out)
{
    const uint64_t mask8 = 0x0101010101010101ULL * bits;
    int64_t count = 0, p = 0;
    for (; p + 8 <= npix; p += 8) {
        uint64_t wa, wb = 0;
        memcpy(&wa, a + p, 8);
        if (b != NULL) memcpy(&wb, b + p, 8);
        if ((wa & ~wb & mask8) == 0) continue; /* usually: nothing new in these 8 pixels */
        for (int64_t q = p; q < p + 8; q++)
            if ((a[q] & bits) && !(b != NULL && (b[q] & bits))) {
                if (out != NULL) out[count] = q;
                count++;
            }
    }
    for (; p < npix; p++)
        if ((a[p] & bits) && !(b != NULL && (b[p] & bits))) {
            if (out != NULL) out[count] = p;
            count++;
        }
    return count;
}

static int64_t find_root(int64_t *parent, int64_t i)
{
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

static void unite(int64_t *parent, int64_t i, int64_t j)
{
    const int64_t ri = find_root(parent, i), rj = find_root(parent, j);
    if (ri < rj) parent[rj] = ri;
    else if (rj < ri) parent[ri] = rj;
}

enum { LEFT = 1, RIGHT = 2, UP = 4, DOWN = 8 };

int jw_label_pixels(int64_t n, const int64_t *lin, int64_t ny, int64_t nx, int64_t *label,
                    uint8_t *inner, int64_t *ncomp)
{
    if (n < 0 || ny < 0 || nx < 1) return JW_ERR_SHAPE;
    for (int64_t i = 0; i < n; i++)
        if (lin[i] < 0 || lin[i] >= ny * nx || (i > 0 && lin[i] <= lin[i - 1]))
            return JW_ERR_PARAM;
    int64_t *parent = label; /* the output doubles as the forest */
    for (int64_t i = 0; i < n; i++) {
        parent[i] = i;
        inner[i] = 0;
    }
    int64_t j = 0; /* first index not below the current pixel's lower-left neighbour */
    for (int64_t i = 0; i < n; i++) {
        const int64_t p = lin[i], y = p / nx, x = p - y * nx;
        if (x + 1 < nx && i + 1 < n && lin[i + 1] == p + 1) {
            unite(parent, i, i + 1);
            inner[i] |= RIGHT;
            inner[i + 1] |= LEFT;
        }
        if (y + 1 >= ny) continue;
        const int64_t lo = p + nx - (x > 0), hi = p + nx + (x + 1 < nx);
        if (j <= i) j = i + 1;
        while (j < n && lin[j] < lo) j++;
        for (int64_t k = j; k < n && lin[k] <= hi; k++) {
            unite(parent, i, k);
            if (lin[k] == p + nx) {
                inner[i] |= DOWN;
                inner[k] |= UP;
            }
        }
    }
    /* Every node's parent has a smaller index (or is itself), so one forward pass turns the
     * forest into region numbers in place: entries before i already hold numbers, entries from
     * i on still hold parents. */
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        label[i] = (parent[i] == i) ? count++ : label[parent[i]];
        inner[i] = inner[i] == (LEFT | RIGHT | UP | DOWN);
    }
    *ncomp = count;
    return JW_OK;
}
