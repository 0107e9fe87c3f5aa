/* Status codes returned by every jwpipe kernel; the Cython shims turn them into exceptions. */
#ifndef JWPIPE_STATUS_H
#define JWPIPE_STATUS_H

#define JW_OK 0
#define JW_ERR_SHAPE 1   /* array shapes or sizes the kernel cannot handle */
#define JW_ERR_ALLOC 2   /* a work buffer could not be allocated */
#define JW_ERR_PARAM 3   /* an invalid parameter value */

#endif
