"""The DQ flag table and the C header generated from it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jwpipe import dq


def test_flag_values():
    assert dq.DO_NOT_USE == 1 and dq.SATURATED == 2 and dq.JUMP_DET == 4
    assert dq.REFERENCE_PIXEL == 2**31 and dq.DQ.NO_GAIN_VALUE == 524288
    assert [bit for bit, _, _ in dq.FLAGS] == list(range(32))
    assert set(dq.GROUP_FLAGS) <= {"DO_NOT_USE", "SATURATED", "JUMP_DET", "DROPOUT",
                                   "PERSISTENCE", "AD_FLOOR", "CHARGELOSS"}


def test_interpret_and_describe():
    assert dq.interpret("DO_NOT_USE+NON_SCIENCE") == 1 + 512
    assert dq.interpret("~DO_NOT_USE") == 0xFFFFFFFE
    assert dq.interpret(["saturated", "jump_det"]) == 6
    assert dq.interpret(None) == 0
    assert dq.describe(6) == ["SATURATED", "JUMP_DET"]
    with pytest.raises(ValueError, match="NOT_A_FLAG"):
        dq.interpret("NOT_A_FLAG")


def test_generated_header_matches_table(tmp_path):
    # The generator runs at build time from the source tree; it is not part of the install.
    root = Path(__file__).resolve().parents[1] / "jwpipe"
    out = tmp_path / "dqflags.h"
    subprocess.run([sys.executable, str(root / "_ext" / "gen_dqflags.py"), str(root / "dq.py"),
                    str(out)], check=True)
    defines = dict(re.findall(r"#define DQ_(\w+) \(1u << (\d+)\)", out.read_text()))
    assert {name: 1 << int(bit) for name, bit in defines.items()} == {
        name: 1 << bit for bit, name, _ in dq.FLAGS}
