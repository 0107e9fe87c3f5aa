import numpy as np
import numpy.typing as npt

def flag_saturation(
    data: npt.NDArray[np.float32],
    threshold: npt.NDArray[np.float32],
    groupdq: npt.NDArray[np.uint8],
    first_sat: npt.NDArray[np.int16],
    grow: int,
    nthreads: int,
) -> None: ...
