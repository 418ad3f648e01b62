"""Campaign traces as the forecaster's data: episodes side by side in one array, labels, windows, splits.

    data = load_fall_data("runs/falls_train_s0")           # every traced episode with its results row
    train, val = data.split(val_fraction=0.1)              # by episode (never by window)
    x = data.windows(positions, window=50)                 # (B, 50, 10 + 3J) raw readings ending at those samples
    y05, y1, ttf = data.labels(horizon_s=2.0)              # per sample

Labels of the sample at time t of an episode: a fall "within h" when the episode fell, t is at or after the push
start, and fall_time - t <= h. Before the push starts nothing observable announces the fall (the push is not in the
traces), so those samples are negatives: a quiet robot is not about to fall. time-to-fall = min(fall_time - t, H) with
the same rule, else H.

Mirror images (training augmentation): `mirror_map(robot, joint_names)` gives the column permutation and signs that
turn a window of readings into the readings of the robot's left-right mirror image (the same episode pushed from the
mirrored direction on the mirrored slope); `MIRRORS` holds the robots whose mirror was checked against PyBullet
(tests/test_forecaster.py runs both episodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wam_ros.model.forecaster import input_columns
from wam_ros.train.campaign.storage import load_results
from wam_ros.train.campaign.traces import iter_traces, trace_metadata


@dataclass(frozen=True)
class Mirror:
    """A robot's left-right mirror in its IMU frame. lateral_axis: the IMU axis (0 x, 1 y) pointing to the robot's
    side when it stands as loaded; leg_signs: per joint of a leg (in the legs' joint order), the sign a reading takes
    in the mirrored leg (-1 where the joint's axis does not mirror onto the other leg's); legs pair by name (FR <->
    FL, RR <-> RL)."""

    lateral_axis: int
    leg_signs: tuple[float, ...]


# laikago_toes.urdf is loaded turned (Y-up URDF): the robot's side points along the IMU's x; its abduction joints are
# "outward positive" on both sides, so every joint keeps its sign (checked against PyBullet, see the module docstring)
MIRRORS: dict[str, Mirror] = {"laikago": Mirror(lateral_axis=0, leg_signs=(1.0, 1.0, 1.0))}
_SIDES = {"FR": "FL", "FL": "FR", "RR": "RL", "RL": "RR"}


def mirror_map(robot: str, joint_names: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(perm, sign) with x_mirrored = x[..., perm] * sign over the forecaster's input columns
    (wam_ros.model.forecaster.input_columns); None for a robot whose mirror is not known."""
    spec = MIRRORS.get(robot)
    if spec is None:
        return None
    n = len(joint_names)
    legs = len(spec.leg_signs)
    if n % legs:
        raise ValueError(f"{robot}: {n} joints are not legs of {legs}")
    partner = []
    for name in joint_names:
        side = name[:2]
        other = _SIDES.get(side, "") + name[2:]
        if side not in _SIDES or other not in joint_names:
            raise ValueError(f"{robot}: joint {name!r} has no mirrored partner (FR <-> FL, RR <-> RL)")
        partner.append(joint_names.index(other))
    imu_perm = list(range(10))
    imu_sign = np.ones(10)
    k = spec.lateral_axis
    for a in range(3):
        if a != k:
            imu_sign[a] = -1.0  # quaternion vector part: a pseudovector
            imu_sign[4 + a] = -1.0  # angular velocity: a pseudovector
    imu_sign[7 + k] = -1.0  # specific force: a vector
    joint_sign = np.array([spec.leg_signs[j % legs] for j in range(n)])
    perm = list(imu_perm)
    for block in range(3):
        perm += [10 + block * n + partner[j] for j in range(n)]
    sign = np.concatenate([imu_sign, joint_sign, joint_sign, joint_sign])
    return np.asarray(perm, dtype=np.int64), sign.astype(np.float32)


@dataclass
class FallData:
    """Episodes of one campaign. Per sample: x (N, C) raw readings, t (N,), ep (N,) episode row. Per episode:
    start/length into the samples, and the results row's fields."""

    x: np.ndarray
    t: np.ndarray
    ep: np.ndarray
    start: np.ndarray
    length: np.ndarray
    index: np.ndarray
    fell: np.ndarray
    fall_time: np.ndarray
    push_start: np.ndarray
    push_end: np.ndarray
    push_impulse: np.ndarray
    standing: np.ndarray
    outcome: np.ndarray
    joint_names: list[str] = field(default_factory=list)
    rate_hz: float = 100.0
    source: str = ""
    robot: str = ""
    conditions: np.ndarray | None = (
        None  # (E, 3) friction, mass_scale, motor_strength (what the robot does not know)
    )

    @property
    def episodes(self) -> int:
        return len(self.index)

    @property
    def samples(self) -> int:
        return len(self.t)

    def subset(self, rows: np.ndarray) -> FallData:
        """The episodes at positions `rows` (a new FallData with its own sample arrays)."""
        rows = np.asarray(rows, dtype=np.int64)
        picks = [np.arange(self.start[r], self.start[r] + self.length[r]) for r in rows]
        sel = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        length = self.length[rows]
        start = np.r_[0, np.cumsum(length)[:-1]].astype(np.int64) if len(rows) else np.zeros(0, np.int64)
        return FallData(
            x=self.x[sel],
            t=self.t[sel],
            ep=np.repeat(np.arange(len(rows)), length),
            start=start,
            length=length,
            index=self.index[rows],
            fell=self.fell[rows],
            fall_time=self.fall_time[rows],
            push_start=self.push_start[rows],
            push_end=self.push_end[rows],
            push_impulse=self.push_impulse[rows],
            standing=self.standing[rows],
            outcome=self.outcome[rows],
            joint_names=self.joint_names,
            rate_hz=self.rate_hz,
            source=self.source,
            robot=self.robot,
            conditions=None if self.conditions is None else self.conditions[rows],
        )

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[FallData, FallData]:
        """(train, validation) by episode: a seeded permutation of the episode indices, never by window."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(self.episodes)
        n_val = int(round(val_fraction * self.episodes))
        return self.subset(np.sort(order[n_val:])), self.subset(np.sort(order[:n_val]))

    def labels(self, horizon_s: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per sample: fall within 0.5 s, fall within 1 s (float32 0/1), time to fall (s, <= horizon_s)."""
        e = self.ep
        forecastable = self.fell[e] & (self.t >= self.push_start[e] - 1e-6)
        left = np.where(forecastable, self.fall_time[e] - self.t, np.inf)
        return (
            (left <= 0.5).astype(np.float32),
            (left <= 1.0).astype(np.float32),
            np.minimum(left, horizon_s).astype(np.float32),
        )

    def push_so_far(self) -> tuple[np.ndarray, np.ndarray]:
        """Per sample: the push force acting now (N) and the push impulse delivered so far (N s); what the
        simulator applied, never observed by the robot (auxiliary training targets only)."""
        e = self.ep
        force = self.push_impulse[e] / np.maximum(self.push_end[e] - self.push_start[e], 1e-6)
        force = np.where(self.standing[e], 0.0, force)
        since = np.clip(self.t - self.push_start[e], 0.0, self.push_end[e] - self.push_start[e])
        now = (self.t >= self.push_start[e] - 1e-6) & (self.t < self.push_end[e] - 1e-6)
        return np.where(now, force, 0.0).astype(np.float32), (force * since).astype(np.float32)

    def windows(self, positions: np.ndarray, window: int) -> np.ndarray:
        """(B, window, C) readings ending at the given sample positions; before an episode's first sample the
        first sample repeats (the robot stood still before the episode, as the runtime's stream pads)."""
        positions = np.asarray(positions, dtype=np.int64)
        first = self.start[self.ep[positions]]
        idx = positions[:, None] - (window - 1) + np.arange(window)[None, :]
        return self.x[np.maximum(idx, first[:, None])]


def load_fall_data(campaign: str | Path, max_episodes: int | None = None) -> FallData:
    """Every episode of a campaign that has both a results row and a trace (sorted by index)."""
    campaign = Path(campaign)
    meta = trace_metadata(campaign)
    if not meta:
        raise FileNotFoundError(f"{campaign} holds no traces (run the campaign without --no-traces)")
    table = load_results(campaign)
    rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    by_index = {int(i): k for k, i in enumerate(rows["index"])}
    cols = None
    xs, ts, kept = [], [], []
    for tr in iter_traces(campaign):
        if tr.index not in by_index:
            continue
        if cols is None:
            wanted = input_columns(len(meta["joint_names"]))
            cols = [tr.columns.index(c) for c in wanted]
            t_col = tr.columns.index("t")
        xs.append(tr.data[:, cols])
        ts.append(tr.data[:, t_col])
        kept.append(tr.index)
        if max_episodes is not None and len(kept) >= max_episodes:
            break
    if not kept:
        raise ValueError(f"{campaign}: no episode has both a row and a trace")
    order = np.argsort(kept)
    xs = [xs[k] for k in order]
    ts = [ts[k] for k in order]
    kept = [kept[k] for k in order]
    length = np.array([len(x) for x in xs], dtype=np.int64)
    r = np.array([by_index[i] for i in kept])
    push_start = rows["push_start"][r].astype(np.float32)
    return FallData(
        x=np.concatenate(xs).astype(np.float32),
        t=np.concatenate(ts).astype(np.float32),
        ep=np.repeat(np.arange(len(kept)), length),
        start=np.r_[0, np.cumsum(length)[:-1]].astype(np.int64),
        length=length,
        index=np.asarray(kept, dtype=np.int64),
        fell=rows["fell"][r].astype(bool),
        fall_time=np.nan_to_num(rows["fall_time"][r], nan=np.inf).astype(np.float32),
        push_start=push_start,
        push_end=(push_start + rows["push_duration"][r]).astype(np.float32),
        push_impulse=rows["push_impulse"][r].astype(np.float32),
        standing=rows["standing"][r].astype(bool),
        outcome=rows["outcome"][r].astype(str),
        joint_names=list(meta["joint_names"]),
        rate_hz=float(meta["trace_hz"]),
        source=str(campaign),
        robot=str(meta.get("robot", "")),
        conditions=np.stack(
            [rows[k][r].astype(np.float32) for k in ("friction", "mass_scale", "motor_strength")], axis=1
        ),
    )
