"""persistence: flag and remove persistence from earlier saturation.

Two models, either or both active (the step is skipped by default, as in the reference 3.0):

* **Flagging window** (the reference pipeline's 3.0 semantics, ``persistence_time`` > 0): the first
  SATURATED group of a pixel opens a window of ``persistence_time`` seconds; every group whose time
  falls inside it, in this and later integrations, gets PERSISTENCE in GROUPDQ (and DO_NOT_USE with
  ``persistence_dnu``). ``persistence_array_file`` / ``save_persistence`` carry the windows' end
  times across exposures (ASDF: ``rows``, ``cols``, ``vals`` (Unix seconds), ``pers_time``).
* **Trap model** (the reference pipeline up to 2.x; runs when the TRAPDENSITY, TRAPPARS and PERSAT
  references are available and ``use_trap_model``): each pixel has trap families (rows of the
  TRAPPARS table) that capture charge while the pixel integrates and release it with time constant
  ``1/|decay_param|``. The released charge (persistence, DN) is subtracted from each group; pixels
  where it reaches ``flag_pers_cutoff`` get PERSISTENCE in PIXELDQ. Capture per integration: a
  ramp term from the pixel's jump-free slope, a saturation term for the time spent above the
  PERSAT level, and a term per cosmic-ray jump (Regan's trap-capture model, with the factor 2 for
  released-charge gain). The traps-filled state (one plane per family, full frame) is carried
  across integrations, starts from ``input_trapsfilled`` (decayed to this exposure's start), and
  is written as the ``_trapsfilled`` product when ``save_trapsfilled``.

Integrations arrive in order, block by block; the state lives in the object ``prepare`` returns.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import dq as dqflags
from ..datamodels import TrapsFilledModel
from ..errors import ConfigError, InputFileError, ReferenceFileError
from ..logs import get_logger
from .base import NOT_APPLICABLE, RampBlock, RampStep, StepParams, exposure_shape, output_name

__all__ = [
    "SCALEFACTOR", "TrapFamilies", "TrapsFilledModel", "mjd_to_epoch", "group_slope",
    "decay_factors", "persistence_per_group", "capture_inputs", "predict_capture",
    "flag_persistence_windows",
    "PersistenceParams", "PersistenceStep",
]

log = get_logger("persistence")

#: Charge released from traps registers with about twice the gain of photo-electrons.
SCALEFACTOR = 2.0
_EPOCH_MJD = 40587.0


def mjd_to_epoch(mjd: float) -> float:
    """Modified Julian Date -> Unix seconds."""
    return (float(mjd) - _EPOCH_MJD) * 86400.0


@dataclass
class TrapFamilies:
    """Capture and decay parameters, one entry per trap family (rows of TRAPPARS).

    Attributes
    ----------
    capture0, capture1, capture2 : ndarray of shape (nfam,), float64
        Exponential-capture amplitude, capture rate (1/s, used as ``1/|capture1|`` time
        constant) and instantaneous-capture amplitude.
    decay : ndarray of shape (nfam,), float64
        Decay parameter: ``1/|decay|`` is the e-folding time (s); 0 means no decay.
    """

    capture0: np.ndarray
    capture1: np.ndarray
    capture2: np.ndarray
    decay: np.ndarray

    @classmethod
    def from_table(cls, table, name: str = "TRAPPARS") -> "TrapFamilies":
        try:
            cols = {n.lower(): n for n in table.dtype.names}
            get = [np.asarray(table[cols[c]], dtype=np.float64)
                   for c in ("capture0", "capture1", "capture2", "decay_param")]
        except (AttributeError, KeyError, TypeError) as exc:
            raise ReferenceFileError(f"{name}: extension TRAPPARS needs columns capture0, "
                                     f"capture1, capture2, decay_param ({exc})") from None
        if get[0].size == 0:
            raise ReferenceFileError(f"{name}: extension TRAPPARS has no rows (no trap families)")
        return cls(*get)

    @property
    def n(self) -> int:
        return int(self.capture0.size)


def decay_factors(decay: np.ndarray, dt: float) -> np.ndarray:
    """Fraction of filled traps that remain after ``dt`` seconds, per family (1 if no decay)."""
    decay = np.asarray(decay, dtype=np.float64)
    return np.where(decay == 0, 1.0, np.exp(-np.abs(decay) * dt))


def group_slope(data: np.ndarray, groupdq: np.ndarray) -> np.ndarray:
    """Jump- and saturation-free ramp slope of one integration, DN per group.

    The group differences with a SATURATED later group are dropped, then the ``n_jump`` largest
    of the rest (``n_jump`` = groups flagged JUMP_DET anywhere in the ramp); the slope is the mean
    of what is left, 0 where nothing is left. With one group the slope is the group's value.
    Ramps without either flag (almost all) reduce to (last - first) / (ngroups - 1); only the
    flagged ones are sorted.

    Parameters
    ----------
    data : ndarray of shape (ngroups, ny, nx), float32
    groupdq : ndarray of shape (ngroups, ny, nx), uint8

    Returns
    -------
    ndarray of shape (ny, nx), float64
    """
    ng = data.shape[0]
    if ng == 1:
        return data[0].astype(np.float64)
    later = np.bitwise_or.reduce(groupdq[1:], axis=0)
    anyflag = later | groupdq[0]
    special = ((later & dqflags.SATURATED) | (anyflag & dqflags.JUMP_DET)) != 0
    slope = (data[-1].astype(np.float64) - data[0]) / (ng - 1)
    yy, xx = np.nonzero(special)
    if yy.size:
        ramps = data[:, yy, xx].astype(np.float64)
        flags = groupdq[:, yy, xx]
        d = np.diff(ramps, axis=0)
        sat = (flags[1:] & dqflags.SATURATED) != 0
        n_jump = ((flags & dqflags.JUMP_DET) != 0).sum(axis=0)
        upper = np.maximum((ng - 1) - (sat.sum(axis=0) + n_jump), 0)
        d[sat] = np.inf                       # saturated differences sort last
        d.sort(axis=0)
        keep = np.arange(ng - 1)[:, None] < upper[None, :]
        total = np.where(keep, d, 0.0).sum(axis=0)
        slope[yy, xx] = np.where(upper > 0, total / np.maximum(upper, 1), 0.0)
    return slope


def persistence_per_group(filled: np.ndarray, remain_per_group: np.ndarray, g: int,
                          out: np.ndarray) -> np.ndarray:
    """Persistence released since the start of the integration, up to the end of group ``g``.

    Parameters
    ----------
    filled : ndarray of shape (nfam, ny, nx), float32
        Filled traps at the start of the integration.
    remain_per_group : ndarray of shape (nfam,)
        Fraction remaining after one group time, per family.
    g : int
        Group index (0-based): ``g + 1`` group times have elapsed.
    out : ndarray of shape (ny, nx), float32
        Receives the result (DN).
    """
    out[:] = 0.0
    for k in range(filled.shape[0]):
        frac = np.float32(1.0 - remain_per_group[k] ** (g + 1))
        if frac != 0.0:
            out += frac * filled[k]
    return out


@dataclass
class CaptureInputs:
    """What trap capture needs from one integration, shared by every trap family.

    Attributes
    ----------
    ngroups : int
    sat_count : ndarray of shape (ny, nx), int16
        Groups above the persistence saturation level (usable PERSAT pixels only).
    slope2 : ndarray of shape (ny, nx), float32
        Squared slope in units of PERSAT per second.
    sat_pixels : tuple of index arrays
        Pixels with ``sat_count`` > 0.
    jumps : list of (group, yy, xx, amplitude)
        Cosmic-ray jumps (JUMP_DET in groups >= 1): amplitude above the ramp slope, >= 0.
    """

    ngroups: int
    sat_count: np.ndarray
    slope2: np.ndarray
    sat_pixels: tuple
    jumps: list


def capture_inputs(data: np.ndarray, groupdq: np.ndarray, persat: np.ndarray,
                   persat_good: np.ndarray, grp_slope: np.ndarray, tgroup: float
                   ) -> CaptureInputs:
    """Per-integration inputs of :func:`predict_capture`.

    Parameters
    ----------
    data, groupdq : ndarrays of shape (ngroups, ny, nx)
        The integration (after persistence subtraction) and its group DQ.
    persat : ndarray of shape (ny, nx)
        Persistence saturation level (DN).
    persat_good : ndarray of shape (ny, nx), bool
        Pixels whose PERSAT value may be used.
    grp_slope : ndarray of shape (ny, nx)
        Slope in DN per group (:func:`group_slope`, before persistence subtraction).
    tgroup : float
        Group time (s).
    """
    ng = data.shape[0]
    sat_count = np.zeros(data.shape[1:], dtype=np.int16)
    level = persat.astype(np.float32)
    for g in range(ng):
        sat_count += data[g] > level
    sat_count[~persat_good] = 0
    safe = np.where(persat_good, persat, 1.0)
    slope = np.where(persat_good, grp_slope / (safe * tgroup), 0.0)
    jumps = []
    if ng > 1:
        jy, jx = np.nonzero(np.bitwise_or.reduce(groupdq[1:], axis=0) & dqflags.JUMP_DET)
        if jy.size:
            flagged = (groupdq[1:, jy, jx] & dqflags.JUMP_DET) != 0        # (ng-1, n)
            ramps = data[:, jy, jx].astype(np.float64)
            for g in range(1, ng):
                sel = flagged[g - 1]
                if sel.any():
                    amp = (ramps[g, sel] - ramps[g - 1, sel]) - grp_slope[jy[sel], jx[sel]]
                    jumps.append((g, jy[sel], jx[sel], np.maximum(amp, 0.0)))
    return CaptureInputs(ng, sat_count, (slope * slope).astype(np.float32),
                         np.nonzero(sat_count), jumps)


def predict_capture(fam: TrapFamilies, k: int, inputs: CaptureInputs, trap_density: np.ndarray,
                    tgroup: float, tframe: float, nresets: int) -> np.ndarray:
    """Traps of family ``k`` filled during one integration.

    Ramp term (signal below the PERSAT level), saturation term (time spent above it) and a term
    per cosmic-ray jump, as the reference pipeline's legacy trap model computes them.

    Parameters
    ----------
    fam : TrapFamilies
    k : int
        Family index.
    inputs : CaptureInputs
        From :func:`capture_inputs`.
    trap_density : ndarray of shape (ny, nx), float64
        Traps per pixel (0 where unknown or bad).
    tgroup, tframe : float
        Group and frame times (s).
    nresets : int
        Resets before the integration (one extra frame of exposure to the traps each).

    Returns
    -------
    ndarray of shape (ny, nx), float32
    """
    ng = inputs.ngroups
    p0, p1, p2 = float(fam.capture0[k]), float(fam.capture1[k]), float(fam.capture2[k])
    tau = 1.0e10 if p1 == 0 else 1.0 / abs(p1)
    totaltime = ng * tgroup + nresets * tframe
    # The unsaturated time takes only ngroups + 1 values: tabulate the ramp term's time factor.
    dt = totaltime - np.arange(ng + 1) * tgroup
    factor = SCALEFACTOR * (dt ** 2 * (p0 + p2) / 2.0 + p0 * (dt * tau + tau ** 2)
                            * np.exp(-dt / tau) - p0 * tau ** 2)
    filled = (trap_density * inputs.slope2).astype(np.float32)
    filled *= factor.astype(np.float32)[inputs.sat_count]
    yy, xx = inputs.sat_pixels
    if yy.size:
        count = inputs.sat_count[yy, xx]
        dens = trap_density[yy, xx]
        incoming = np.where(count == ng, dens * p2, filled[yy, xx].astype(np.float64))
        empty = dens * p0 - (incoming - dens * p2)
        filled[yy, xx] = incoming + empty * (1.0 - np.exp(-abs(p1) * count * tgroup))
    for g, jy, jx, amp in inputs.jumps:
        delta_t = (ng - g - 0.5) * tgroup
        filled[jy, jx] += SCALEFACTOR * trap_density[jy, jx] * amp * (
            p0 * (1.0 - np.exp(p1 * delta_t)) + p2)
    return filled


def flag_persistence_windows(groupdq: np.ndarray, window_end: np.ndarray, times: np.ndarray,
                             persistence_time: float, flag: int) -> None:
    """Flag the groups of one integration that fall in a persistence window (3.0 semantics).

    Parameters
    ----------
    groupdq : ndarray of shape (ngroups, ny, nx), uint8
        Modified in place: ``flag`` is OR-ed into groups inside a window.
    window_end : ndarray of shape (ny, nx), float64
        End time (Unix s) of each pixel's open window, 0 for none; updated in place to the state
        after the integration (windows that ended before the last group are cleared).
    times : ndarray of shape (ngroups,), float64
        Time (Unix s) of each group.
    persistence_time : float
        Window length (s).
    flag : int
        Group flag(s) to set.
    """
    ng = groupdq.shape[0]
    sat = (groupdq & dqflags.SATURATED) != 0
    any_sat = sat.any(axis=0)
    open_before = window_end > 0
    yy, xx = np.nonzero(any_sat | open_before)
    if yy.size:
        e0 = window_end[yy, xx]
        started = any_sat[yy, xx]
        first = np.where(started, np.argmax(sat[:, yy, xx], axis=0), ng)
        new_end = np.where(started, times[np.minimum(first, ng - 1)] + persistence_time, 0.0)
        g = np.arange(ng)[:, None]
        t = times[:, None]
        inside = np.where(g < first[None], (e0[None] > 0) & (t <= e0[None]),
                          t <= new_end[None])
        if inside.any():
            gg, kk = np.nonzero(inside)
            groupdq[gg, yy[kk], xx[kk]] |= np.uint8(flag)
        end = np.where(started, new_end, e0)
        end[end < times[-1]] = 0.0
        window_end[yy, xx] = end


@dataclass
class PersistenceParams(StepParams):
    skip: bool = True
    # flagging windows (reference 3.0)
    persistence_time: int | None = None
    persistence_array_file: str | None = None
    persistence_dnu: bool = False
    save_persistence: str | None = None
    # trap model (reference <= 2.x)
    use_trap_model: bool = True
    input_trapsfilled: str | None = None
    flag_pers_cutoff: float = 40.0
    save_trapsfilled: bool = True


@dataclass
class PersistenceState:
    """Everything carried from one block of integrations to the next."""

    next_int: int = 0
    # flagging windows
    window_end: np.ndarray | None = None
    int_start_epoch: np.ndarray | None = None
    group_time: float = 0.0
    # trap model
    families: TrapFamilies | None = None
    filled: np.ndarray | None = None          # (nfam, ny, nx) float32, the science region
    full: np.ndarray | None = None            # (nfam, NY, NX) float32, full-frame carrier
    region: tuple = ()                        # (slice y, slice x) of the science region in full
    trap_density: np.ndarray | None = None
    persat: np.ndarray | None = None
    persat_good: np.ndarray | None = None
    tgroup: float = 0.0
    tframe: float = 0.0
    nresets_start: int = 1
    nresets_between: int = 1
    ran: list = field(default_factory=list)


class PersistenceStep(RampStep):
    """Flag persistence windows after saturation and/or subtract trap-model persistence."""

    name = "persistence"
    class_name = "PersistenceStep"
    cal_step = "persistence"
    reference_types = ("trapdensity", "trappars", "persat")
    Params = PersistenceParams

    def required_references(self) -> tuple[str, ...]:
        # The flagging windows need no reference; the trap model checks its own in prepare.
        return ()

    def used_references(self, model) -> tuple[str, ...]:
        # Only the trap model reads references (a missing one: the model does not run).
        return self.reference_types if self.params.use_trap_model else ()

    # -- prepare -------------------------------------------------------------------------------
    def prepare(self, model, refs) -> PersistenceState:
        p = self.params
        state = PersistenceState()
        meta = model.meta
        nints, ngroups, ny, nx = exposure_shape(model)
        state.group_time = float(meta.get("exposure.group_time") or 0.0)
        if p.persistence_time is not None and p.persistence_time > 0:
            state.window_end = self._initial_windows(model, ny, nx)
            state.int_start_epoch = self._integration_starts(model, nints)
            state.ran.append("flagging")
        elif p.persistence_time is not None:
            raise ConfigError(f"step persistence: persistence_time must be a positive number of "
                              f"seconds, got {p.persistence_time}")
        trap_refs = [refs.get(r, NOT_APPLICABLE) for r in self.reference_types]
        if p.use_trap_model and all(r != NOT_APPLICABLE for r in trap_refs):
            self._prepare_traps(model, state, *trap_refs)
            state.ran.append("trap model")
        elif p.use_trap_model and any(r != NOT_APPLICABLE for r in trap_refs):
            missing = [t.upper() for t, r in zip(self.reference_types, trap_refs, strict=True)
                       if r == NOT_APPLICABLE]
            log.warning("persistence: trap model not run, missing reference(s) %s",
                        ", ".join(missing))
        if not state.ran:
            log.warning("persistence: nothing to do (no trap-model references and no "
                        "persistence_time); step skipped")
        return state

    def _integration_starts(self, model, nints) -> np.ndarray:
        meta = model.meta
        start = meta.get("exposure.start_time")
        inttime = float(meta.get("exposure.integration_time") or 0.0)
        table = model.int_times if model.has("int_times") else None
        starts = np.empty(nints, dtype=np.float64)
        for i in range(nints):
            if table is not None and len(table) > i and "int_start_MJD_UTC" in (
                    table.dtype.names or ()):
                starts[i] = mjd_to_epoch(table[i]["int_start_MJD_UTC"])
            elif start is not None:
                starts[i] = mjd_to_epoch(start) + i * inttime
            else:
                raise ConfigError(f"persistence: {model.path or 'input'} has neither an INT_TIMES "
                                  "table nor EXPSTART; the flagging windows need group times")
        return starts

    def _initial_windows(self, model, ny, nx) -> np.ndarray:
        p = self.params
        window_end = np.zeros((ny, nx), dtype=np.float64)
        if not p.persistence_array_file:
            return window_end
        import asdf

        path = p.persistence_array_file
        try:
            with asdf.open(path, lazy_load=False, memmap=False) as af:
                tree = af.tree
                if tree.get("pers_time") != p.persistence_time:
                    raise ConfigError(f"persistence: {path} was made with pers_time="
                                      f"{tree.get('pers_time')}, but persistence_time="
                                      f"{p.persistence_time}")
                rows = np.asarray(tree["rows"])
                cols = np.asarray(tree["cols"])
                vals = np.asarray(tree["vals"], dtype=np.float64)
        except (OSError, ValueError, KeyError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise InputFileError(f"persistence: cannot read persistence_array_file {path} "
                                 f"({exc})") from exc
        if rows.size and (rows.max() >= ny or cols.max() >= nx or min(rows.min(), cols.min()) < 0):
            raise ConfigError(f"persistence: {path} has pixels outside the {nx}x{ny} data")
        window_end[rows, cols] = vals
        return window_end

    def _prepare_traps(self, model, state, density_path, pars_path, persat_path) -> None:
        from ..references import cut_to_subarray, open_reference

        p = self.params
        meta = model.meta
        density_ref = open_reference(density_path, "trapdensity")
        pars_ref = open_reference(pars_path, "trappars")
        persat_ref = open_reference(persat_path, "persat")
        state.families = TrapFamilies.from_table(pars_ref.trappars_table, str(pars_path))
        nfam = state.families.n
        full_density = density_ref.lazy("data")
        full_shape = tuple(full_density.shape[-2:])
        density = np.array(cut_to_subarray(full_density, density_ref.meta, meta,
                                           name=str(density_path)), dtype=np.float64)
        density[~np.isfinite(density)] = 0.0
        if density_ref.has("dq"):
            ddq = np.asarray(cut_to_subarray(density_ref.lazy("dq"), density_ref.meta, meta,
                                             name=str(density_path)))
            density[(ddq & dqflags.DO_NOT_USE) != 0] = 0.0
        persat = np.array(cut_to_subarray(persat_ref.lazy("data"), persat_ref.meta, meta,
                                          name=str(persat_path)), dtype=np.float64)
        persat[~np.isfinite(persat)] = 1.0e7
        good = np.ones(persat.shape, bool)
        if persat_ref.has("dq"):
            pdq = np.asarray(cut_to_subarray(persat_ref.lazy("dq"), persat_ref.meta, meta,
                                             name=str(persat_path)))
            good &= (pdq & dqflags.DO_NOT_USE) == 0
        for ref in (density_ref, pars_ref, persat_ref):
            ref.close()
        state.trap_density, state.persat, state.persat_good = density, persat, good

        # Where the science region sits in the full-frame traps-filled carrier.
        x0 = (meta.get("subarray.xstart") or 1) - 1
        y0 = (meta.get("subarray.ystart") or 1) - 1
        ny, nx = exposure_shape(model)[-2:]
        if y0 + ny > full_shape[0] or x0 + nx > full_shape[1]:
            raise ReferenceFileError(f"{density_path}: TRAPDENSITY is {full_shape[1]}x"
                                     f"{full_shape[0]}, smaller than the science subarray")
        state.region = (slice(y0, y0 + ny), slice(x0, x0 + nx))
        state.full = np.zeros((nfam,) + full_shape, dtype=np.float32)
        state.tgroup = float(meta.get("exposure.group_time") or 0.0)
        state.tframe = float(meta.get("exposure.frame_time") or 0.0)
        miri = str(meta.get("instrument.name") or "").upper() == "MIRI"
        default_resets = 0 if miri else 1
        state.nresets_start = _int_or(meta.get("exposure.nresets_at_start"), default_resets)
        state.nresets_between = _int_or(meta.get("exposure.nresets_between_ints"), default_resets)

        if p.input_trapsfilled:
            self._load_trapsfilled(p.input_trapsfilled, model, state, nfam)
        state.filled = np.ascontiguousarray(state.full[(slice(None),) + state.region])

    def _load_trapsfilled(self, path, model, state, nfam) -> None:
        from .. import datamodels
        from ..references import cut_to_subarray

        try:
            previous = datamodels.open(path)
        except InputFileError as exc:
            raise InputFileError(f"persistence: input_trapsfilled {path}: {exc}") from exc
        data = np.asarray(previous.data, dtype=np.float32)
        if data.ndim != 3 or data.shape[0] != nfam:
            raise InputFileError(f"persistence: input_trapsfilled {path} has shape {data.shape}; "
                                 f"expected ({nfam}, ny, nx), one plane per trap family")
        data = np.nan_to_num(data, nan=0.0)
        if data.shape[1:] == state.full.shape[1:]:
            state.full[:] = data
        else:
            # A subarray traps-filled image: place it on the full frame by its keywords.
            region = cut_to_subarray(data, previous.meta, model.meta, name=str(path))
            state.full[(slice(None),) + state.region] = region
        end = previous.meta.get("exposure.end_time")
        start = model.meta.get("exposure.start_time")
        if end is None or start is None:
            log.warning("persistence: EXPSTART of the exposure or EXPEND of %s is missing; the "
                        "traps are not decayed between the exposures", path)
            return
        to_start = (float(start) - float(end)) * 86400.0
        if to_start < 0:
            log.warning("persistence: %s ends %.1f s after this exposure starts; no decay "
                        "applied", path, -to_start)
            return
        remain = decay_factors(state.families.decay, to_start).astype(np.float32)
        state.full *= remain[:, None, None]

    # -- blocks --------------------------------------------------------------------------------
    def process_block(self, block: RampBlock, state: PersistenceState) -> None:
        if not state.ran:
            return
        if block.int_start != state.next_int:
            raise RuntimeError(f"persistence: integrations must arrive in order (expected "
                               f"{state.next_int}, got {block.int_start})")
        p = self.params
        nb, ng = block.data.shape[:2]
        flag = dqflags.PERSISTENCE | (dqflags.DO_NOT_USE if p.persistence_dnu else 0)
        for k in range(nb):
            integ = block.int_start + k
            if state.families is not None:
                self._trap_integration(block.data[k], block.groupdq[k], block.pixeldq, integ,
                                       state)
            if state.window_end is not None:
                times = state.int_start_epoch[integ] + state.group_time * np.arange(1, ng + 1)
                if integ == 0:
                    backwards = (state.window_end > 0) & (
                        state.window_end - (p.persistence_time + times[0]) > 0)
                    if backwards.any():
                        raise ConfigError(f"persistence: {p.persistence_array_file} holds windows "
                                          "ending after they could have started (backwards "
                                          "flagging); it does not belong to an earlier exposure")
                flag_persistence_windows(block.groupdq[k], state.window_end, times,
                                         float(p.persistence_time), flag)
        state.next_int = block.int_start + nb

    def _trap_integration(self, data, groupdq, pixeldq, integ, state) -> None:
        fam = state.families
        filled = state.filled
        if integ > 0 and state.nresets_between > 0:
            filled *= decay_factors(fam.decay, state.tframe * state.nresets_between).astype(
                np.float32)[:, None, None]
        grp_slope = group_slope(data, groupdq)
        ng = data.shape[0]
        remain = decay_factors(fam.decay, state.tgroup)
        if filled.any():
            pers = np.empty(data.shape[1:], dtype=np.float32)
            for g in range(ng):
                persistence_per_group(filled, remain, g, pers)
                data[g] -= pers
            # Released persistence only grows through the integration: the last group decides.
            pixeldq[pers >= self.params.flag_pers_cutoff] |= np.uint32(dqflags.PERSISTENCE)
            filled *= (remain ** ng).astype(np.float32)[:, None, None]
        nresets = state.nresets_start if integ == 0 else state.nresets_between
        inputs = capture_inputs(data, groupdq, state.persat, state.persat_good, grp_slope,
                                state.tgroup)
        for k in range(fam.n):
            filled[k] += predict_capture(fam, k, inputs, state.trap_density, state.tgroup,
                                         state.tframe, nresets)

    # -- finish --------------------------------------------------------------------------------
    def finish(self, model, state: PersistenceState) -> None:
        p = self.params
        if not state.ran:
            self.record_status(model, "SKIPPED")
            return
        self.record_status(model, "COMPLETE")
        folder = p.output_dir or "."
        source = model.path or Path("jwpipe_exposure.fits")
        if state.families is not None and p.save_trapsfilled:
            state.full[(slice(None),) + state.region] = state.filled
            product = TrapsFilledModel(state.full)
            product.__dict__["_tree"] = copy.deepcopy(model._tree)
            product.meta.model_type = TrapsFilledModel.model_type
            product.meta.subarray.xstart = 1
            product.meta.subarray.ystart = 1
            product.meta.subarray.xsize = state.full.shape[2]
            product.meta.subarray.ysize = state.full.shape[1]
            product.meta.subarray.name = "FULL"
            path = product.save(output_name(source, "trapsfilled", folder))
            log.info("persistence: wrote traps-filled state %s", path)
        if state.window_end is not None and p.save_persistence:
            self._write_windows(model, state)

    def _write_windows(self, model, state) -> None:
        import asdf

        path = Path(self.params.save_persistence)
        if path.suffix != ".asdf":
            path = path.with_suffix(".asdf")
        if self.params.output_dir and not path.is_absolute():
            path = Path(self.params.output_dir) / path
        rows, cols = np.nonzero(state.window_end)
        tree = {"filename": model.meta.get("filename") or (model.path.name if model.path else ""),
                "rows": rows, "cols": cols, "vals": state.window_end[rows, cols],
                "pers_time": self.params.persistence_time}
        with asdf.AsdfFile(tree) as af:
            af.write_to(path)
        log.info("persistence: wrote persistence windows %s", path)


def _int_or(value, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default
