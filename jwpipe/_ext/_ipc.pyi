import numpy as np
import numpy.typing as npt

def ipc_convolve(
    data: npt.NDArray[np.float32],
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    kernel: npt.NDArray[np.float32],
    per_pixel: bool,
    nthreads: int = 1,
) -> None: ...
