"""charge_migration (skipped by default): flag groups affected by charge migration.

In undersampled bright stars, charge spills out of pixels nearing saturation, so their ramps
flatten above ~25,000 DN. The first group whose value exceeds ``signal_threshold`` (ignoring
groups whose DQ is exactly DO_NOT_USE) and every later group get CHARGELOSS|DO_NOT_USE, in the
pixel and its four nearest neighbours. Ramp fitting still uses these groups for the read-noise
variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dq
from ..logs import get_logger
from .base import RampBlock, RampStep, StepParams

__all__ = ["flag_charge_migration", "ChargeMigrationStep"]

log = get_logger("step.charge_migration")


def flag_charge_migration(data: np.ndarray, groupdq: np.ndarray, signal_threshold: float):
    """Flag CHARGELOSS|DO_NOT_USE in place.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, ny, nx), float32
    groupdq : ndarray of shape (nints, ngroups, ny, nx), uint8
        Updated in place.
    signal_threshold : float
        DN above which a group is affected.

    Returns
    -------
    ndarray of shape (nints, ny, nx), int16
        First flagged group per pixel (ngroups where none), after spreading to neighbours.
    """
    nints, ngroups = data.shape[:2]
    flag = np.uint8(dq.CHARGELOSS | dq.DO_NOT_USE)
    dnu = np.uint8(dq.DO_NOT_USE)
    thr = np.float32(signal_threshold)
    result = np.full((nints,) + data.shape[2:], ngroups, np.int16)
    hit = np.empty(data.shape[2:], bool)
    sparse = max(1, hit.size // 64)          # below this many pixels, index instead of sweep
    for i in range(nints):
        first = result[i]
        # Earliest exceeding group per pixel (groups whose DQ is exactly DO_NOT_USE ignored).
        for g in range(ngroups - 1, -1, -1):
            np.greater(data[i, g], thr, out=hit)
            count = int(np.count_nonzero(hit))
            if count == 0:
                continue
            if count < sparse:
                ys, xs = np.nonzero(hit)
                ok = groupdq[i, g, ys, xs] != dnu
                first[ys[ok], xs[ok]] = g
            else:
                hit &= groupdq[i, g] != dnu
                np.putmask(first, hit, g)
        start = int(first.min())
        if start >= ngroups:
            continue
        # Spread to the four nearest neighbours.
        spread = first.copy()
        np.minimum(spread[1:], first[:-1], out=spread[1:])
        np.minimum(spread[:-1], first[1:], out=spread[:-1])
        np.minimum(spread[:, 1:], first[:, :-1], out=spread[:, 1:])
        np.minimum(spread[:, :-1], first[:, 1:], out=spread[:, :-1])
        result[i] = spread
        affected = spread < ngroups
        if np.count_nonzero(affected) < sparse:
            ys, xs = np.nonzero(affected)
            columns = groupdq[i][:, ys, xs]
            later = np.arange(ngroups)[:, None] >= spread[ys, xs][None, :]
            groupdq[i][:, ys, xs] = np.where(later, columns | flag, columns)
        else:
            for g in range(int(spread.min()), ngroups):
                np.less_equal(spread, g, out=hit)
                np.bitwise_or(groupdq[i, g], flag, out=groupdq[i, g], where=hit)
    return result


@dataclass
class ChargeMigrationParams(StepParams):
    skip: bool = True
    #: Group value (DN) above which charge migration is assumed.
    signal_threshold: float = 25000.0


class ChargeMigrationStep(RampStep):
    """Flag groups above ``signal_threshold`` (and later groups, and 4 neighbours) CHARGELOSS."""

    name = "charge_migration"
    class_name = "ChargeMigrationStep"
    cal_step = "charge_migration"
    Params = ChargeMigrationParams

    def prepare(self, model, refs):
        log.info("using signal_threshold %.2f", self.params.signal_threshold)
        return None

    def process_block(self, block: RampBlock, state) -> None:
        flag_charge_migration(block.data, block.groupdq, self.params.signal_threshold)
