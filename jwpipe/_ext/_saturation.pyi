import numpy as np
import numpy.typing as npt

def flag_saturation(
    data: npt.NDArray[np.float32],
    threshold: npt.NDArray[np.float32],
    groupdq: npt.NDArray[np.uint8],
    first_sat: npt.NDArray[np.int16],
    grow: int,
    nthreads: int,
    sat_flag: int = ...,
    floor_flag: int = ...,
) -> None: ...
def linearity_correct(
    data: npt.NDArray[np.float32],
    groupdq: npt.NDArray[np.uint8],
    coeffs: npt.NDArray[np.float32],
    skip_flag: int,
    nthreads: int,
) -> None: ...
