"""Write ``tests/data/ramp_flags/stcal_flags.npz``: the reference ramp fitter's slopes and DQ on
ramps whose group DQ runs through every flag pattern (``test_ramp_fit_kernel.
test_flag_patterns_match_the_reference``).

Run with the reference pipeline's environment (stcal 1.20, stdatamodels; jwpipe is not needed)::

    /work/venv-jwst/bin/python tests/_reference/make_ramp_flags_oracle.py

Inputs: 2 integrations x 6 groups x 40 x 40 pixels, 10 DN/s ramps with read noise; each
pixel-integration's groups are flagged at random (JUMP_DET, DO_NOT_USE, JUMP_DET|DO_NOT_USE,
AD_FLOOR, CHARGELOSS|DO_NOT_USE from some group on, SATURATED from some group on, group 0 flagged
or not), so that ramps with 0, 1, 2 and more good groups, suppressed single groups and flagged
first groups all occur many times. Outputs for suppress_one_group True and False, with the
reference's end-point S/N power choice (jwpipe's ``power_snr="endpoints"``).
"""

from pathlib import Path

import numpy as np
from stcal.ramp_fitting.ramp_fit import ramp_fit_data
from stcal.ramp_fitting.ramp_fit_class import RampData
from stdatamodels.jwst.datamodels import dqflags

DNU, SAT, JUMP, AD_FLOOR, CL = 1, 2, 4, 64, 128
GROUP_TIME = 10.737
OUT = Path(__file__).resolve().parent.parent / "data" / "ramp_flags" / "stcal_flags.npz"


def inputs(seed=4, nints=2, ngroups=6, ny=40, nx=40):
    rng = np.random.default_rng(seed)
    shape = (nints, ngroups, ny, nx)
    t = (np.arange(ngroups) + 1.0) * GROUP_TIME
    data = (10.0 * t[None, :, None, None] + 500.0 + rng.normal(0, 5, shape)).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    single = rng.choice([JUMP, DNU, JUMP | DNU, AD_FLOOR], size=shape)
    gdq |= np.where(rng.random(shape) < 0.3, single, 0).astype(np.uint8)
    start = rng.integers(0, ngroups + 1, (nints, ny, nx))
    kind = rng.choice([SAT, SAT | DNU, CL | DNU, 0], size=(nints, ny, nx))
    later = np.arange(ngroups)[None, :, None, None] >= start[:, None]
    gdq |= np.where(later, kind[:, None], 0).astype(np.uint8)
    gdq[:, 0][rng.random((nints, ny, nx)) < 0.5] = 0        # half the ramps start clean
    return dict(data=data, groupdq=gdq, gain=np.full((ny, nx), 2.0, np.float32),
                readnoise=np.full((ny, nx), 7.0, np.float32),
                pixeldq=np.zeros((ny, nx), np.uint32),
                avg_dark_current=np.zeros((ny, nx), np.float32))


def fit(case, suppress):
    rd = RampData()
    rd.set_arrays(case["data"].copy(), case["groupdq"].copy(), case["pixeldq"].copy(),
                  case["avg_dark_current"].copy())
    rd.set_meta("NIRCAM", GROUP_TIME, GROUP_TIME, 0, 1)
    rd.set_dqflags(dqflags.pixel)
    rd.suppress_one_group_ramps = suppress
    image, cube, _ = ramp_fit_data(rd, False, case["readnoise"].copy(), case["gain"].copy(),
                                   "OLS_C", "optimal", "none")
    return image, cube


def main():
    case = inputs()
    out = dict(case)
    for suppress in (True, False):
        image, cube = fit(case, suppress)
        tag = "suppress" if suppress else "keep"
        out[f"{tag}_slope"], out[f"{tag}_dq"] = image["slope"], image["dq"]
        out[f"{tag}_int_slope"], out[f"{tag}_int_dq"] = cube["slope"], cube["dq"]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
