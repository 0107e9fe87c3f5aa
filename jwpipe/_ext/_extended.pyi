import numpy as np
import numpy.typing as npt

def flagged_indices(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8] | None, bits: int
) -> npt.NDArray[np.int64]: ...
def label_pixels(
    lin: npt.NDArray[np.int64], ny: int, nx: int
) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.bool_]]: ...
def nan_convolve(
    image: npt.NDArray[np.float64],
    kernel: npt.NDArray[np.float64],
    min_norm: float,
    nthreads: int = 1,
    out: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]: ...
