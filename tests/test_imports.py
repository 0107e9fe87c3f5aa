"""What importing the stage-1 code costs: no heavy optional libraries at import time.

Every detector1 process imports the driver and the step modules of its pipeline. scipy's
subpackages (scipy.ndimage alone: 0.1-0.15 s and 18 MB of resident memory on the development
machine), photutils and gwcs belong inside the functions that need them, so a detector1 run that
does not use them never pays for them.
"""

from __future__ import annotations

import json
import subprocess
import sys

STAGE1_STEPS = ("group_scale", "dq_init", "saturation", "ipc", "superbias", "refpix",
                "linearity", "persistence", "dark_current", "charge_migration", "jump",
                "clean_flicker_noise", "ramp_fit", "gain_scale", "firstframe", "lastframe",
                "reset", "rscd")
HEAVY = ("scipy", "photutils", "gwcs", "matplotlib")


def test_stage1_step_modules_import_no_heavy_library(tmp_path):
    code = (
        "import json, sys\n"
        "import jwpipe.driver\n"
        "from jwpipe.steps import get_step_class\n"
        f"for alias in {STAGE1_STEPS!r}:\n"
        "    get_step_class(alias)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps(heavy))\n")
    # From an empty folder: "-c" puts the working directory first on sys.path, and the source
    # tree's jwpipe (without its compiled kernels) must not shadow the installed one.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
