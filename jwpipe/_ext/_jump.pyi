import numpy as np
import numpy.typing as npt

def detect_jumps(
    data: npt.NDArray[np.float32],
    groupdq: npt.NDArray[np.uint8],
    gain: npt.NDArray[np.float32],
    readnoise: npt.NDArray[np.float32],
    groupdq_out: npt.NDArray[np.uint8],
    pixeldq: npt.NDArray[np.uint32],
    mean_diff: npt.NDArray[np.float32],
    *,
    rejection_threshold: float,
    four_group_threshold: float,
    three_group_threshold: float,
    flag_4_neighbors: bool,
    min_jump_to_flag_neighbors: float,
    max_jump_to_flag_neighbors: float,
    after_jump_flag_dn1: float,
    after_jump_flag_n1: int,
    after_jump_flag_dn2: float,
    after_jump_flag_n2: int,
    minimum_groups: int,
    pool_integrations: bool,
    nframes: int,
    frame_time: float,
    group_time: float,
    nthreads: int,
) -> int: ...
