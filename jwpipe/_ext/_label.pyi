import numpy as np
import numpy.typing as npt

def label_components(
    n: int, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> tuple[int, npt.NDArray[np.int64]]: ...
