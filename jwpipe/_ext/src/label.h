/* Connected components of a graph given as an edge list (union-find). */
#ifndef JWPIPE_LABEL_H
#define JWPIPE_LABEL_H

#include <stdint.h>

#include "jwstatus.h"

/* label[i] in 0..ncomp-1 for nodes 0..n-1, numbered in order of each component's smallest node;
 * *ncomp receives the number of components. Edges (a[k], b[k]) must lie in 0..n-1. */
int jw_label_components(int64_t n, int64_t nedges, const int64_t *a, const int64_t *b,
                        int64_t *label, int64_t *ncomp);

#endif
