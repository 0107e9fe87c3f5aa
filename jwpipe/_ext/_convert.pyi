import numpy as np
import numpy.typing as npt

def be_u16_to_f32(
    stored: npt.NDArray[np.uint16], out: npt.NDArray[np.float32], nthreads: int = 1
) -> None: ...
def dark_subtract_be(
    data: npt.NDArray[np.float32], frames: npt.NDArray[np.uint32], nthreads: int = 1
) -> None: ...
