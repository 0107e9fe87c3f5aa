import numpy as np
import numpy.typing as npt

# (slope, err, dq, var_poisson, var_rnoise), each (n, ny, nx): float32 except dq (uint32)
_Results = tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.uint32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
]
# (sums (5, ny, nx) float64, dq (ny, nx) uint32, state (ny, nx) uint8)
_Sums = tuple[npt.NDArray[np.float64], npt.NDArray[np.uint32], npt.NDArray[np.uint8]]
# fitopt (slope, sigslope, var_poisson, var_rnoise, yint, sigyint, pedestal, weights, crmag),
# float32 C-contiguous: (n, S, ny, nx) per segment, pedestal (n, ny, nx), crmag (n, C, ny, nx)
_Opt = tuple[npt.NDArray[np.float32], ...]

class RampFitKernel:
    def __init__(
        self,
        gain: npt.NDArray[np.float32],
        readnoise: npt.NDArray[np.float32],
        dark: npt.NDArray[np.float32] | None,
        dark_value: float,
        pixeldq: npt.NDArray[np.uint32] | None,
        ngroups: int,
        first: int,
        stop: int,
        nframes: int,
        group_time: float,
        frame_time: float,
        one_group_time: float,
        suppress_one_group: bool,
        pedestal_factor: float = 1.0,
        snr_from_endpoints: bool = False,
    ) -> None: ...
    def fit_block(
        self,
        data: npt.NDArray[np.float32],
        groupdq: npt.NDArray[np.uint8],
        zeroframe: npt.NDArray[np.float32] | None,
        ints: _Results,
        sums_dq_state: _Sums,
        nthreads: int,
        opt: _Opt | None = None,
    ) -> None: ...
    def fit_exposure(
        self,
        data: npt.NDArray[np.float32],
        groupdq: npt.NDArray[np.uint8],
        zeroframe: npt.NDArray[np.float32] | None,
        ints: _Results,
        rate: _Results,
        nthreads: int,
        opt: _Opt | None = None,
    ) -> None: ...
    def opt_counts(
        self,
        data: npt.NDArray[np.float32],
        groupdq: npt.NDArray[np.uint8],
        zeroframe: npt.NDArray[np.float32] | None,
        nthreads: int,
    ) -> tuple[int, int]: ...
    def finish(self, nints: int, sums_dq_state: _Sums, rate: _Results, nthreads: int) -> None: ...

def simd() -> str: ...
SIMD_LEVELS: tuple[str, ...]

def allow_simd(allow: bool | str) -> None: ...
