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
def shower_ratio(
    d0: npt.NDArray[np.float32],
    d1: npt.NDArray[np.float32],
    q0: npt.NDArray[np.uint8],
    q1: npt.NDArray[np.uint8],
    ignore: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None,
    mean_diff: npt.NDArray[np.float32],
    sigma: npt.NDArray[np.float64],
    bad: int,
    out: npt.NDArray[np.float64],
    nthreads: int = 1,
) -> None: ...
