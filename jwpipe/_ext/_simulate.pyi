import numpy as np
import numpy.typing as npt

def sim_ramp(
    rate_e: npt.NDArray[np.float32],
    gain: npt.NDArray[np.float32],
    coeffs: npt.NDArray[np.float32] | None,
    well: npt.NDArray[np.float32] | None,
    offsets: npt.NDArray[np.float32] | None,
    dt: npt.NDArray[np.float64],
    group: npt.NDArray[np.int32],
    weight: npt.NDArray[np.float32],
    ev_rowptr: npt.NDArray[np.int64] | None,
    ev_col: npt.NDArray[np.int32] | None,
    ev_read: npt.NDArray[np.int32] | None,
    ev_amp: npt.NDArray[np.float32] | None,
    out: npt.NDArray[np.float32],
    frame0: npt.NDArray[np.float32] | None,
    seed: int,
    stream: int,
    noiseless: bool,
    gauss_threshold: float,
    nthreads: int,
) -> None: ...
def sim_ipc(
    inp: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    kernel: npt.NDArray[np.float32],
    refpix: npt.NDArray[np.uint8] | None,
    nthreads: int,
) -> None: ...
def sim_readout(
    signal: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None,
    sigma: npt.NDArray[np.float32] | None,
    chan: npt.NDArray[np.uint8] | None,
    chan_off: npt.NDArray[np.float32] | None,
    slow: npt.NDArray[np.int32] | None,
    slow_off: npt.NDArray[np.float32] | None,
    thr: npt.NDArray[np.float32] | None,
    thr_margin: npt.NDArray[np.float32] | None,
    sat: npt.NDArray[np.int16] | None,
    sat_margin: npt.NDArray[np.int16] | None,
    out: npt.NDArray[np.uint16],
    seed: int,
    stream: int,
    noiseless: bool,
    nthreads: int,
) -> None: ...
