import numpy as np
import numpy.typing as npt

def subtract_outer(
    data: npt.NDArray[np.float32],
    rowvec: npt.NDArray[np.float32] | None,
    colvec: npt.NDArray[np.float32] | None,
    nthreads: int = 1,
) -> None: ...
def window_median(
    padded: npt.NDArray[np.float32],
    window: int,
    out: npt.NDArray[np.float32],
    nthreads: int = 1,
) -> None: ...
def masked_row_median(
    image: npt.NDArray[np.float32],
    mask: npt.NDArray[np.uint8],
    lo: float,
    hi: float,
    nseg: int,
    out: npt.NDArray[np.float32],
    count: npt.NDArray[np.int32] | None = None,
    nthreads: int = 1,
) -> None: ...
