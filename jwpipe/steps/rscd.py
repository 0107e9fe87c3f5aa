"""rscd: flag the first groups of MIRI integrations affected by the reset switch charge decay.

The RSCD reference's RSCD_GROUP_SKIP table gives, per (SUBARRAY, READPATT), how many initial
groups to flag DO_NOT_USE in the first integration (``group_skip1``) and in later ones
(``group_skip``). Each is lowered so that at least 3 groups remain (NGROUPS - 3, not below 0; with
fewer than 3 groups the step is SKIPPED). In segmented exposures only the segment holding
integration 1 uses the first-integration value.

With ``bright_use_2groups`` the number is lowered per pixel so that a pixel that saturates early
keeps two usable groups: a pixel whose first saturated group (0-based) is f <= n_skip + 1 is
flagged in its first max(f - 2, 0) groups only, and gets FLUX_ESTIMATED in PIXELDQ. Pixels
saturated from the first group are left with the full n_skip (they have no usable group anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dq
from ..logs import get_logger
from ._stage1_refs import is_miri, open_ref
from .base import RampBlock, RampStep, StepParams

__all__ = ["rscd_skip_groups", "limit_skip", "flag_rscd_groups", "RscdStep"]

log = get_logger("step.rscd")


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip().upper()


def rscd_skip_groups(table, subarray: str, readpatt: str):
    """(group_skip1, group_skip) for a subarray/readout pattern, or None if the table has none.

    ``table`` is the RSCD_GROUP_SKIP table (structured array with columns subarray, readpatt,
    group_skip1, group_skip; any case).
    """
    if table is None:
        return None
    names = {n.lower(): n for n in table.dtype.names}
    sub = _text(subarray)
    if sub == "SUBPRISM":  # the old name of the LRS slitless subarray
        sub = "SLITLESSPRISM"
    patt = _text(readpatt)
    for row in table:
        if _text(row[names["subarray"]]) == sub and _text(row[names["readpatt"]]) == patt:
            return int(row[names["group_skip1"]]), int(row[names["group_skip"]])
    return None


def limit_skip(n_skip: int, ngroups: int) -> int:
    """Lower a group count to skip so that at least 3 groups remain."""
    if ngroups < n_skip + 3:
        return max(0, ngroups - 3)
    return n_skip


def flag_rscd_groups(groupdq: np.ndarray, n_skip: int, bright_use_2groups: bool = True):
    """Flag the first ``n_skip`` groups of one integration DO_NOT_USE, in place.

    Parameters
    ----------
    groupdq : ndarray of shape (ngroups, ny, nx), uint8
        One integration's group DQ (SATURATED already set); updated in place.
    n_skip : int
        Groups to flag.
    bright_use_2groups : bool
        Lower the count per pixel for pixels that saturate early (see the module docstring).

    Returns
    -------
    ndarray of shape (ny, nx), bool
        Pixels whose count was lowered (to get FLUX_ESTIMATED).

    Notes
    -----
    The reference lowers the count level by level: starting at group ``n_skip + 1`` and going
    down while any pixel is saturated at the current group, every pixel saturated there loses
    one flagged group. Only pixels with a saturated group among the first ``n_skip + 2`` can be
    touched, so the levels are replayed on those pixels alone; the rest of the frame gets plain
    plane-wide flagging.
    """
    ngroups = groupdq.shape[0]
    dnu, sat = np.uint8(dq.DO_NOT_USE), np.uint8(dq.SATURATED)
    lowered = np.zeros(groupdq.shape[1:], bool)
    n_skip = max(0, min(n_skip, ngroups))
    check = n_skip + 2
    candidates = None
    if bright_use_2groups and check <= ngroups:
        # Pixels saturated from the first group have no usable group either way: not lowered.
        not_first = (groupdq[0] & sat) == 0
        if np.any((groupdq[check - 1] & sat != 0) & not_first):
            touched = np.bitwise_or.reduce(groupdq[:check], axis=0) & sat
            candidates = np.nonzero((touched != 0) & not_first)
    if candidates is None or candidates[0].size == 0:
        groupdq[:n_skip] |= dnu
        return lowered
    ys, xs = candidates
    columns = groupdq[:check, ys, xs]                      # (check, ncandidates)
    drop = np.zeros(ys.size, np.int32)
    hit_any = np.zeros(ys.size, bool)
    for level in range(check - 1, -1, -1):
        hit = (columns[level] & sat) != 0
        if not hit.any():
            break
        drop += hit
        hit_any |= hit
    skip = np.maximum(n_skip - drop, 0)
    before = groupdq[:n_skip, ys, xs]
    groupdq[:n_skip] |= dnu
    keep = np.arange(n_skip)[:, None] >= skip[None, :]     # groups no longer flagged
    groupdq[:n_skip, ys, xs] = np.where(keep, before, before | dnu)
    lowered[ys[hit_any], xs[hit_any]] = True
    return lowered


@dataclass
class RscdParams(StepParams):
    #: Lower the flagged group count per pixel so that early-saturating pixels keep two groups.
    bright_use_2groups: bool = True


@dataclass
class _RscdState:
    skip_first: int
    skip_later: int
    first_in_file: bool
    apply: bool


class RscdStep(RampStep):
    """Flag the RSCD-affected initial groups of MIRI integrations DO_NOT_USE."""

    name = "rscd"
    class_name = "RscdStep"
    cal_step = "rscd"
    reference_types = ("rscd",)
    Params = RscdParams

    def prepare(self, model, refs):
        meta = model.meta
        off = _RscdState(0, 0, True, False)
        if not is_miri(meta):
            log.warning("RSCD correction is only for MIRI data; step skipped")
            return off
        path = refs["rscd"]
        ref = open_ref(path, "rscd")
        found = rscd_skip_groups(ref.rscd_table, meta.subarray.name or "",
                                 meta.exposure.readpatt or "")
        if found is None:
            log.warning("%s: READPATT, SUBARRAY combination not in the reference; RSCD step "
                        "skipped", path)
            return off
        ngroups = int(meta.exposure.ngroups)
        if ngroups < 3:
            log.warning("too few groups (%d) to apply the RSCD correction; step skipped",
                        ngroups)
            return off
        skip1, skip2 = limit_skip(found[0], ngroups), limit_skip(found[1], ngroups)
        start = meta.exposure.integration_start
        first_in_file = start is None or int(start) == 1
        meta.set("rscd.ngroups_skip_int1", skip1)
        if int(meta.exposure.nints or 1) > 1:
            meta.set("rscd.ngroups_skip_int2p", skip2)
        log.info("groups flagged: %d in integration 1, %d in later integrations", skip1, skip2)
        return _RscdState(skip1, skip2, first_in_file, True)

    def process_block(self, block: RampBlock, state: _RscdState) -> None:
        if not state.apply:
            return
        lowered = np.zeros(block.pixeldq.shape, bool)
        for i in range(block.data.shape[0]):
            first = state.first_in_file and block.int_start + i == 0
            n_skip = state.skip_first if first else state.skip_later
            lowered |= flag_rscd_groups(block.groupdq[i], n_skip, self.params.bright_use_2groups)
        block.pixeldq[lowered] |= np.uint32(dq.FLUX_ESTIMATED)

    def finish(self, model, state: _RscdState) -> None:
        self.record_status(model, "COMPLETE" if state.apply else "SKIPPED")
