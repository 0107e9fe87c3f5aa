"""Compiled kernels. Each ``_<family>`` module is a thin Cython shim over plain C in ``src/``.

Kernels take typed, C-contiguous arrays and preallocated outputs, release the GIL for their whole
loop and return a status code; callers go through the array-level functions in ``jwpipe.steps``.
"""
