import numpy as np
import numpy.typing as npt

def label_components(
    n: int, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> tuple[int, npt.NDArray[np.int64]]: ...
def nan_convolve(
    image: npt.NDArray[np.float64],
    kernel: npt.NDArray[np.float64],
    min_norm: float,
    nthreads: int = 1,
) -> npt.NDArray[np.float64]: ...
