"""One fall episode: a legged robot (laikago or a1 from pybullet_data) stands under a PD posture controller and is pushed.

    >>> sim = FallSim(FallConfig(robot="laikago"))
    >>> params = sample_params(campaign_seed=0, index=7, cfg=sim.cfg)   # pure function of (seed, index, cfg)
    >>> result = sim.run(params)                  # FallResult: fell / time_to_fall / recovered + summary numbers
    >>> result, recording = sim.run(params, record=True)  # + proprioception and camera frames (FallRecording)
    >>> sim.close()

Per episode, randomised (ranges in `Randomization`): push force, horizontal direction, start time and duration; ground
slope (simulated by tilting gravity, so the saved state stays valid) and friction (plane and feet); base mass (payload)
and motor strength (PD force limit). Resets use `restoreState` of a state saved once after the robot settled, never a
URDF reload; every dynamics property an episode changes is set again at the start of every episode, so an episode's
outcome does not depend on the episodes a worker ran before it (tests/test_falls.py checks this bit for bit).

Fall detection is relative to the robot's own upright pose: laikago's URDF is Y-up (loaded with a base rotation), so
the base's local Z is horizontal when it stands. We record, once, which base-local axis points along the ground normal
when the robot stands (`up_local`) and the standing base height; tilt is then the angle between that axis and the
ground normal (the plane's +Z: a slope tilts gravity, not the ground), and height is measured along the ground normal.
The robot has fallen when tilt > `fall_tilt_deg` or height < `fall_height_frac` × the standing height. An episode that
did not fall ends "recovered" once, after the push, it is upright and still for `settle_s`; otherwise it runs to
`episode_s` and ends "unsettled".

Environment only (layer `sim`): numpy + pybullet, no file formats. A recording comes back as plain arrays
(`FallRecording`); the train layer (wam_ros.train.campaign.episodes) turns it into the project's episode format.
Never imports rclpy.
"""

from __future__ import annotations

import contextlib
import math
import operator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wam_ros.sim.imu import imu_readings

OUTCOMES = ("fell", "recovered", "unsettled")


@dataclass(frozen=True)
class RobotSpec:
    """A legged robot from pybullet_data: URDF, how it is loaded, its motors, standing pose and motor limits."""

    name: str
    urdf: str
    base_orientation: tuple[
        float, float, float, float
    ]  # quaternion xyzw applied at load (Y-up URDF -> Z-up world)
    base_height: float  # initial base height before settling (m)
    motor_joints: tuple[int, ...]
    foot_links: tuple[int, ...]
    standing_pose: tuple[float, ...]  # joint targets of the posture controller (rad)
    max_force: float  # motor force limit at strength 1.0 (N m)
    position_gain: float
    velocity_gain: float


def _laikago_pose() -> tuple[float, ...]:
    # pybullet_envs/minitaur/robots/laikago.py: (INIT_MOTOR_ANGLES + JOINT_OFFSETS) * JOINT_DIRECTIONS
    directions = np.array([-1, 1, 1, 1, 1, 1, -1, 1, 1, 1, 1, 1], dtype=float)
    angles = np.array([0.0, 0.67, -1.25] * 4) + np.array([0.0, -0.6, 0.66] * 4)
    return tuple(float(a) for a in angles * directions)


ROBOTS: dict[str, RobotSpec] = {
    # laikago_toes.urdf is Y-up: the quaternion (0, .5, .5, 0) (normalised) maps URDF +Y to world +Z, as in
    # pybullet's examples/laikago.py. Its base-local Z is then horizontal: tilt must not be computed from it.
    "laikago": RobotSpec(
        name="laikago",
        urdf="laikago/laikago_toes.urdf",
        base_orientation=(0.0, 0.5**0.5, 0.5**0.5, 0.0),
        base_height=0.48,
        motor_joints=(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14),
        foot_links=(3, 7, 11, 15),
        standing_pose=_laikago_pose(),
        max_force=40.0,
        position_gain=0.3,
        velocity_gain=1.0,
    ),
    "a1": RobotSpec(
        name="a1",
        urdf="a1/a1.urdf",
        base_orientation=(0.0, 0.0, 0.0, 1.0),
        base_height=0.30,
        motor_joints=(1, 3, 4, 6, 8, 9, 11, 13, 14, 16, 18, 19),
        foot_links=(5, 10, 15, 20),
        standing_pose=(0.0, 0.9, -1.8) * 4,
        max_force=33.5,
        position_gain=0.3,
        velocity_gain=1.0,
    ),
}


@dataclass(frozen=True)
class Randomization:
    """Per-episode ranges, each (low, high), sampled uniformly.

    Args:
        push_force: push magnitude (N), horizontal, applied at the base centre of mass.
        push_start: when the push starts (s after the episode start).
        push_duration: how long it lasts (s); impulse = force x duration.
        slope_deg: ground slope (deg), direction uniform in [0, 360); simulated by tilting gravity.
        friction: lateral friction of the plane and the feet.
        mass_scale: base (payload) mass and inertia multiplier.
        motor_strength: multiplier of the motors' force limit.
    """

    push_force: tuple[float, float] = (0.0, 400.0)
    push_start: tuple[float, float] = (0.3, 0.6)
    push_duration: tuple[float, float] = (0.05, 0.25)
    slope_deg: tuple[float, float] = (0.0, 8.0)
    friction: tuple[float, float] = (0.4, 1.2)
    mass_scale: tuple[float, float] = (0.85, 1.15)
    motor_strength: tuple[float, float] = (0.75, 1.25)

    def __post_init__(self) -> None:
        for key, (lo, hi) in asdict(self).items():
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(
                    f"Randomization.{key} must be a finite (low, high) with low <= high, got {(lo, hi)}"
                )
        positive = ("push_duration", "friction", "mass_scale", "motor_strength")
        for key in ("push_force", "push_start", "slope_deg", *positive):
            lo = getattr(self, key)[0]
            if lo < 0 or (key in positive and lo <= 0):
                raise ValueError(
                    f"Randomization.{key} must be {'> 0' if key in positive else '>= 0'}, got low={lo}"
                )
        if self.slope_deg[1] >= 45:
            raise ValueError(f"Randomization.slope_deg must stay below 45 deg, got {self.slope_deg}")


@dataclass(frozen=True)
class FallConfig:
    """Everything that defines a fall campaign's episodes (stored with the campaign; episodes depend on nothing else).

    Args:
        robot: "laikago" or "a1".
        sim_hz: physics rate (Hz).
        episode_s: longest episode (s simulated).
        settle_s: a robot upright and still this long after the push has recovered (the episode stops there).
        fall_tilt_deg: tilt from the robot's own upright pose beyond which it has fallen.
        fall_height_frac: base height below this fraction of the standing height means fallen.
        still_speed: base speed (m/s) and, x 4, angular speed (rad/s) below which the robot counts as still.
        record_hz: rate of the recorded camera episodes (selected episodes only).
        camera_size: side of the recorded square RGB frames (px).
        randomization: per-episode ranges.
        trace_hz: rate of the IMU + joint traces (`FallTrace`); a sample is the state after the last physics step
            at or before its time (sample-and-hold of the `sim_hz` physics).
        standing_fraction: share of episodes that are not pushed ("standing": push force 0, same slope, friction,
            mass and motor strength draws); they run `standing_s` and never stop early at a recovery.
        standing_s: length of a standing episode (s simulated).
    """

    robot: str = "laikago"
    sim_hz: int = 240
    episode_s: float = 1.5
    settle_s: float = 0.2
    fall_tilt_deg: float = 50.0
    fall_height_frac: float = 0.55
    still_speed: float = 0.08
    record_hz: int = 20
    camera_size: int = 64
    randomization: Randomization = field(default_factory=Randomization)
    trace_hz: int = 100
    standing_fraction: float = 0.0
    standing_s: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.randomization, dict):  # loaded from JSON
            ranges = {k: tuple(v) for k, v in self.randomization.items()}
            object.__setattr__(self, "randomization", Randomization(**ranges))
        if self.robot not in ROBOTS:
            raise ValueError(f"FallConfig.robot must be one of {sorted(ROBOTS)}, got {self.robot!r}")
        if not 60 <= self.sim_hz <= 2000:
            raise ValueError(f"FallConfig.sim_hz must be in [60, 2000], got {self.sim_hz}")
        if not 0 < self.episode_s <= 30:
            raise ValueError(f"FallConfig.episode_s must be in (0, 30], got {self.episode_s}")
        if not 0 < self.settle_s < self.episode_s:
            raise ValueError(
                f"FallConfig.settle_s must be in (0, episode_s={self.episode_s}), got {self.settle_s}"
            )
        if not 5 <= self.fall_tilt_deg <= 120:
            raise ValueError(f"FallConfig.fall_tilt_deg must be in [5, 120], got {self.fall_tilt_deg}")
        if not 0 < self.fall_height_frac < 1:
            raise ValueError(f"FallConfig.fall_height_frac must be in (0, 1), got {self.fall_height_frac}")
        if self.still_speed <= 0:
            raise ValueError(f"FallConfig.still_speed must be > 0, got {self.still_speed}")
        if not 1 <= self.record_hz <= self.sim_hz or self.sim_hz % self.record_hz:
            raise ValueError(f"FallConfig.record_hz must divide sim_hz={self.sim_hz}, got {self.record_hz}")
        if not 8 <= self.camera_size <= 512:
            raise ValueError(f"FallConfig.camera_size must be in [8, 512], got {self.camera_size}")
        if not 1 <= self.trace_hz <= self.sim_hz:
            raise ValueError(f"FallConfig.trace_hz must be in [1, sim_hz={self.sim_hz}], got {self.trace_hz}")
        if not 0.0 <= self.standing_fraction <= 1.0:
            raise ValueError(f"FallConfig.standing_fraction must be in [0, 1], got {self.standing_fraction}")
        if not 0 < self.standing_s <= 600:
            raise ValueError(f"FallConfig.standing_s must be in (0, 600], got {self.standing_s}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EpisodeParams:
    """The randomised conditions of one episode: a pure function of (campaign seed, episode index, config)."""

    index: int
    seed: int
    push_force: float
    push_yaw: float  # rad, direction of the horizontal push in the world frame
    push_start: float
    push_duration: float
    slope_deg: float
    slope_yaw: float  # rad, downhill direction
    friction: float
    mass_scale: float
    motor_strength: float
    standing: bool = (
        False  # not pushed (push_force 0); runs FallConfig.standing_s without stopping at a recovery
    )

    @property
    def push_impulse(self) -> float:
        return self.push_force * self.push_duration


PARAM_FIELDS = tuple(f for f in EpisodeParams.__dataclass_fields__)


def sample_params(campaign_seed: int, index: int, cfg: FallConfig) -> EpisodeParams:
    """Episode `index` of campaign `campaign_seed`: the same (seed, index, cfg) always gives the same parameters,
    whatever the worker, order or machine (numpy's PCG64 seeded from SeedSequence([seed, index]))."""
    if campaign_seed < 0 or index < 0:
        raise ValueError(
            f"campaign seed and episode index must be >= 0, got seed={campaign_seed}, index={index}"
        )
    r = cfg.randomization
    rng = np.random.default_rng([campaign_seed, index])
    u = rng.random(10)  # one fixed draw order: adding a range later must append, never reorder
    standing = bool(u[9] < cfg.standing_fraction)

    def span(lo_hi: tuple[float, float], x: float) -> float:
        return float(lo_hi[0] + (lo_hi[1] - lo_hi[0]) * x)

    return EpisodeParams(
        index=index,
        seed=campaign_seed,
        push_force=0.0 if standing else span(r.push_force, u[0]),
        push_yaw=float(2 * math.pi * u[1]),
        push_start=span(r.push_start, u[2]),
        push_duration=span(r.push_duration, u[3]),
        slope_deg=span(r.slope_deg, u[4]),
        slope_yaw=float(2 * math.pi * u[5]),
        friction=span(r.friction, u[6]),
        mass_scale=span(r.mass_scale, u[7]),
        motor_strength=span(r.motor_strength, u[8]),
        standing=standing,
    )


@dataclass
class FallResult:
    """Outcome of one episode. Deterministic: the same parameters give the same numbers bit for bit."""

    fell: bool
    recovered: bool
    outcome: str  # one of OUTCOMES
    fall_time: float  # s since the episode start, NaN if it did not fall
    time_to_fall: float  # s since the push started, NaN if it did not fall
    max_tilt_deg: float
    min_height: float
    final_tilt_deg: float
    final_height: float
    sim_time: float  # s simulated (episodes stop early at a fall or a recovery)
    steps: int


@dataclass
class FallRecording:
    """What `FallSim.run(params, record=True)` observed, every `sim_hz // record_hz` steps plus the final state.

    Shapes: t (T,) s since the episode start; joint_pos, joint_vel (T, J) of the motor joints (rad, rad/s);
    base_pos (T, 3) m and base_orn (T, 4) quaternion xyzw in the world frame; frames uint8 (T, S, S, 3) RGB from
    the fixed camera (`FallSim.camera_meta()`).
    """

    t: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    base_pos: np.ndarray
    base_orn: np.ndarray
    frames: np.ndarray

    @classmethod
    def from_samples(cls, samples: list[tuple]) -> FallRecording:
        t, q, dq, pos, orn, frames = (list(col) for col in zip(*samples, strict=True))
        return cls(
            t=np.asarray(t),
            joint_pos=np.asarray(q),
            joint_vel=np.asarray(dq),
            base_pos=np.asarray(pos, dtype=np.float32),
            base_orn=np.asarray(orn, dtype=np.float32),
            frames=np.stack(frames),
        )


@dataclass
class FallTrace:
    """What a real robot measures during one episode, at `trace_hz` (sample k at t = k / trace_hz, the state after
    the last physics step at or before t). The push itself is not observed. All float32; J motor joints in
    `RobotSpec.motor_joints` order (names in `FallSim.profile["joint_names"]`).

    t (T,) s since the episode start; orientation (T, 4) quaternion xyzw of the IMU frame in a gravity-aligned
    world frame; angular_velocity (T, 3) rad/s and linear_acceleration (T, 3) m/s^2 (specific force, +9.81 on z
    when standing still) in the IMU frame (wam_ros.sim.imu); joint_pos (T, J) rad, joint_vel (T, J) rad/s,
    joint_effort (T, J) N m (the motors' applied torque). Privileged, for labels and analysis (a robot does not
    measure them): tilt_deg (T,) from the robot's upright pose against the ground normal (the fall detector's
    tilt), height (T,) of the base above the ground (m).
    """

    t: np.ndarray
    orientation: np.ndarray
    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    joint_effort: np.ndarray
    tilt_deg: np.ndarray
    height: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass
class FallRun:
    """`FallSim.run_full`'s output: the outcome, and the camera recording / trace when asked for."""

    result: FallResult
    recording: FallRecording | None = None
    trace: FallTrace | None = None


def rotation(quat: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (x, y, z, w); columns are the base-local axes in the world frame."""
    x, y, z, w = (float(v) for v in quat)
    s = 2.0 / (x * x + y * y + z * z + w * w)
    return np.array(
        [
            [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
            [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
            [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
        ]
    )


def upright_axis(standing_orientation: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """The base-local unit axis that points along the ground normal (+Z) when the robot stands (+Y for laikago)."""
    axis = rotation(standing_orientation)[2, :]  # world +Z expressed in the base frame: R^T e_z
    return axis / np.linalg.norm(axis)


def tilt_deg(orientation: tuple[float, ...] | np.ndarray, up_local: tuple[float, ...] | np.ndarray) -> float:
    """Angle (deg) between the robot's upright axis `up_local`, at base `orientation`, and the ground normal (+Z).

    0 when the robot stands as it did when `up_local` was taken, whatever its URDF's up axis. Only the third row of
    the rotation matrix is needed (pure floats: this runs every physics step).
    """
    x, y, z, w = orientation
    ux, uy, uz = up_local
    s = 2.0 / (x * x + y * y + z * z + w * w)
    c = s * (x * z - y * w) * ux + s * (y * z + x * w) * uy + (1.0 - s * (x * x + y * y)) * uz
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def is_fallen(height: float, tilt: float, standing_height: float, cfg: FallConfig) -> bool:
    """Fallen: tilted beyond `fall_tilt_deg` from the upright pose, or base below `fall_height_frac` x standing."""
    return tilt > cfg.fall_tilt_deg or height < cfg.fall_height_frac * standing_height


class FallSim:
    """A PyBullet DIRECT world with a plane and one legged robot, settled once, reset by `restoreState`."""

    def __init__(self, cfg: FallConfig | None = None) -> None:
        self.cfg = cfg or FallConfig()
        self.spec = ROBOTS[self.cfg.robot]
        self.dt = 1.0 / self.cfg.sim_hz
        import pybullet  # imported here: the campaign's report and --help never load PyBullet
        import pybullet_data
        from pybullet_utils import bullet_client

        self.pb = pybullet
        self.client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        c = self.client
        c.setAdditionalSearchPath(pybullet_data.getDataPath())
        c.setTimeStep(self.dt)
        c.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        c.setGravity(0, 0, -9.81)
        self.plane = c.loadURDF("plane.urdf")
        self.robot = c.loadURDF(self.spec.urdf, [0, 0, self.spec.base_height], self.spec.base_orientation)
        self._nominal = {link: c.getDynamicsInfo(self.robot, link) for link in (-1, *self.spec.foot_links)}
        self._plane_friction = c.getDynamicsInfo(self.plane, -1)[1]
        for j, q in zip(self.spec.motor_joints, self.spec.standing_pose, strict=True):
            c.resetJointState(self.robot, j, q)
        self._set_motors(1.0)
        for _ in range(int(1.0 * self.cfg.sim_hz)):  # settle on flat ground under the posture controller
            c.stepSimulation()
        pos, orn = c.getBasePositionAndOrientation(self.robot)
        self.standing_height = float(pos[2])
        self.standing_orientation = tuple(orn)
        self.up_local = tuple(float(v) for v in upright_axis(orn))
        # restoreState does not restore the motors' last applied torques: an episode's first trace sample takes
        # these (the settled standing state's), so a trace never depends on the episodes run before it
        self.standing_effort = np.array(
            [s[3] for s in c.getJointStates(self.robot, list(self.spec.motor_joints))]
        )
        self.state = c.saveState()
        self.profile = self._profile()

    # -- one episode ---------------------------------------------------------------------------------------------
    def run(
        self, params: EpisodeParams, record: bool = False
    ) -> FallResult | tuple[FallResult, FallRecording]:
        """Run one episode from the saved standing state. With `record`, also return its camera + proprioception."""
        out = self.run_full(params, record=record, trace=False)
        return (out.result, out.recording) if record else out.result

    def run_full(self, params: EpisodeParams, record: bool = False, trace: bool = True) -> FallRun:
        """Run one episode; with `trace`, sample the IMU and joints at `trace_hz` (`FallTrace`), with `record`,
        render the camera at `record_hz` (`FallRecording`). Neither changes the physics (tested bit for bit)."""
        c, cfg, robot = self.client, self.cfg, self.robot
        self._apply(params)
        push_from = round(params.push_start * cfg.sim_hz)
        push_to = push_from + max(1, round(params.push_duration * cfg.sim_hz))
        fx = params.push_force * math.cos(params.push_yaw)
        fy = params.push_force * math.sin(params.push_yaw)
        standing = params.standing
        max_steps = round((cfg.standing_s if standing else cfg.episode_s) * cfg.sim_hz)
        settle_steps = round(cfg.settle_s * cfg.sim_hz)
        # per-step checks in plain floats on cosines (acos only for the summary); PyBullet calls bound once
        ux, uy, uz = self.up_local
        cos_fall = math.cos(math.radians(cfg.fall_tilt_deg))
        cos_upright = math.cos(math.radians(cfg.fall_tilt_deg / 3))
        low = cfg.fall_height_frac * self.standing_height
        slow_lin, slow_ang = cfg.still_speed**2, (4 * cfg.still_speed) ** 2
        step_sim, base_pose, base_vel = c.stepSimulation, c.getBasePositionAndOrientation, c.getBaseVelocity
        joint_states, joints = c.getJointStates, list(self.spec.motor_joints)
        push, world, force = c.applyExternalForce, self.pb.WORLD_FRAME, (fx, fy, 0.0)
        still, min_cos, min_height = 0, 1.0, math.inf
        fall_step = -1
        frames: list[tuple] | None = [] if record else None
        every = cfg.sim_hz // cfg.record_hz
        samples: list[tuple] = []  # (step, base pose, base velocity, joint states) at the trace ticks
        sim_hz, trace_hz = cfg.sim_hz, cfg.trace_hz
        tick, next_sample = 0, 0 if trace else max_steps + 1
        pose = base_pose(robot)
        step = 0
        while step < max_steps:
            if step == next_sample:  # the last physics state at or before tick / trace_hz
                samples.append((step, pose, base_vel(robot), joint_states(robot, joints)))
                tick += 1
                next_sample = tick * sim_hz // trace_hz
            if record and step % every == 0:
                frames.append(self._observe(step * self.dt))
            if push_from <= step < push_to:
                push(robot, -1, force, base_pose(robot)[0], world)
            step_sim()
            step += 1
            pose = base_pose(robot)  # kept: the next trace sample (same state) reuses it
            (_, _, height), (x, y, z, w) = pose
            # up-axis . ground normal = third row of R(q) . up_local (q is unit length from PyBullet)
            cos_tilt = 2 * (x * z - y * w) * ux + 2 * (y * z + x * w) * uy + (1 - 2 * (x * x + y * y)) * uz
            min_cos = min(min_cos, cos_tilt)
            min_height = min(min_height, height)
            if cos_tilt < cos_fall or height < low:  # is_fallen(), on the cosine
                fall_step = step
                break
            if step >= push_to:
                (vx, vy, vz), (wx, wy, wz) = base_vel(robot)
                slow = vx * vx + vy * vy + vz * vz < slow_lin and wx * wx + wy * wy + wz * wz < slow_ang
                still = still + 1 if slow and cos_tilt > cos_upright else 0
                if still >= settle_steps and not standing:
                    break
        if step == next_sample:  # the episode ended on a trace tick: that state belongs to the trace too
            samples.append((step, pose, base_vel(robot), joint_states(robot, joints)))
        tilt = math.degrees(math.acos(max(-1.0, min(1.0, cos_tilt))))
        max_tilt = math.degrees(math.acos(max(-1.0, min(1.0, min_cos))))
        fell = fall_step >= 0
        recovered = not fell and still >= settle_steps
        fall_time = fall_step * self.dt if fell else math.nan
        result = FallResult(
            fell=fell,
            recovered=recovered,
            outcome="fell" if fell else "recovered" if recovered else "unsettled",
            fall_time=fall_time,
            time_to_fall=fall_time - push_from * self.dt if fell else math.nan,
            max_tilt_deg=max_tilt,
            min_height=float(min_height),
            final_tilt_deg=tilt,
            final_height=float(height),
            sim_time=step * self.dt,
            steps=step,
        )
        recording = None
        if record:
            frames.append(self._observe(step * self.dt))
            recording = FallRecording.from_samples(frames)
        return FallRun(result, recording, self._trace(samples, params) if trace else None)

    def _trace(self, samples: list[tuple], params: EpisodeParams) -> FallTrace:
        """Turn the raw samples of one episode into IMU readings + joint arrays (vectorised, after the episode)."""
        n = len(samples)
        steps = np.fromiter((s[0] for s in samples), dtype=np.int64, count=n)
        orn = np.array([s[1][1] for s in samples], dtype=np.float64)
        height = np.array([s[1][0][2] for s in samples], dtype=np.float64)
        lin = np.array([s[2][0] for s in samples], dtype=np.float64)
        ang = np.array([s[2][1] for s in samples], dtype=np.float64)
        pick = operator.itemgetter(0, 1, 3)  # position, velocity, applied torque
        joints = np.array([list(map(pick, s[3])) for s in samples], dtype=np.float64)  # (T, J, 3)
        if n and steps[0] == 0:
            joints[0, :, 2] = self.standing_effort
        orientation, gyro, accel = imu_readings(
            orn, lin, ang, steps * self.dt, self.gravity(params), np.asarray(self.spec.base_orientation)
        )
        ux, uy, uz = self.up_local
        x, y, z, w = orn.T
        cos_tilt = 2 * (x * z - y * w) * ux + 2 * (y * z + x * w) * uy + (1 - 2 * (x * x + y * y)) * uz
        f32 = np.float32
        return FallTrace(
            t=(np.arange(n) / self.cfg.trace_hz).astype(f32),
            orientation=orientation.astype(f32),
            angular_velocity=gyro.astype(f32),
            linear_acceleration=accel.astype(f32),
            joint_pos=joints[:, :, 0].astype(f32),
            joint_vel=joints[:, :, 1].astype(f32),
            joint_effort=joints[:, :, 2].astype(f32),
            tilt_deg=np.degrees(np.arccos(np.clip(cos_tilt, -1.0, 1.0))).astype(f32),
            height=height.astype(f32),
        )

    def gravity(self, params: EpisodeParams) -> np.ndarray:
        """The gravity vector of an episode: a slope of `slope_deg` downhill towards `slope_yaw` tilts it."""
        slope, yaw = math.radians(params.slope_deg), params.slope_yaw
        g = 9.81
        return np.array(
            [g * math.sin(slope) * math.cos(yaw), g * math.sin(slope) * math.sin(yaw), -g * math.cos(slope)]
        )

    def _apply(self, params: EpisodeParams) -> None:
        """Restore the standing state and set every property an episode may change (so none leaks between them)."""
        c, robot = self.client, self.robot
        c.restoreState(self.state)
        c.setGravity(*(float(v) for v in self.gravity(params)))
        c.changeDynamics(self.plane, -1, lateralFriction=params.friction)
        for link in self.spec.foot_links:
            c.changeDynamics(robot, link, lateralFriction=params.friction)
        base = self._nominal[-1]
        c.changeDynamics(
            robot,
            -1,
            mass=base[0] * params.mass_scale,
            localInertiaDiagonal=[v * params.mass_scale for v in base[2]],
        )
        self._set_motors(params.motor_strength)

    def _set_motors(
        self, strength: float, targets: tuple[float, ...] | None = None, gain_scale: float = 1.0
    ) -> None:
        s = self.spec
        n = len(s.motor_joints)
        self.client.setJointMotorControlArray(
            self.robot,
            list(s.motor_joints),
            self.pb.POSITION_CONTROL,
            targetPositions=list(s.standing_pose if targets is None else targets),
            forces=[s.max_force * strength] * n,
            positionGains=[s.position_gain * gain_scale] * n,
            velocityGains=[s.velocity_gain] * n,
        )

    # -- stepping: the same episode one physics step at a time, with commands (closed loop, ROS) -----------------
    def begin(self, params: EpisodeParams) -> None:
        """Start episode `params` for stepping: `step()` then advances it exactly as `run` does (tested), and
        `set_targets` / `push_now` act on it. No early stop: the caller decides when an episode ends."""
        self._apply(params)
        self.params = params
        self.step_count = 0
        self._push_from = round(params.push_start * self.cfg.sim_hz)
        self._push_to = self._push_from + max(1, round(params.push_duration * self.cfg.sim_hz))
        self._force = (
            params.push_force * math.cos(params.push_yaw),
            params.push_force * math.sin(params.push_yaw),
            0.0,
        )
        self._gravity = self.gravity(params)
        self._last_vel: tuple[np.ndarray, float] | None = None

    def push_now(self, force: float, yaw: float, duration: float) -> None:
        """Push the base horizontally with `force` N towards `yaw` rad (world) for `duration` s, from the next step."""
        self._push_from = self.step_count
        self._push_to = self.step_count + max(1, round(duration * self.cfg.sim_hz))
        self._force = (force * math.cos(yaw), force * math.sin(yaw), 0.0)

    def step(self, n: int = 1) -> None:
        """n physics steps (the pending push applied as in `run`)."""
        c, robot = self.client, self.robot
        for _ in range(n):
            if self._push_from <= self.step_count < self._push_to:
                c.applyExternalForce(
                    robot, -1, self._force, c.getBasePositionAndOrientation(robot)[0], self.pb.WORLD_FRAME
                )
            c.stepSimulation()
            self.step_count += 1

    @property
    def time(self) -> float:
        return self.step_count * self.dt

    @property
    def pushing(self) -> bool:
        return self._push_from <= self.step_count < self._push_to

    def set_targets(self, targets: tuple[float, ...] | np.ndarray, gain_scale: float = 1.0) -> None:
        """Joint position targets of the motors (within the episode's motor strength)."""
        if len(targets) != len(self.spec.motor_joints):
            raise ValueError(f"{len(targets)} targets for {len(self.spec.motor_joints)} motors")
        self._set_motors(self.params.motor_strength, tuple(float(v) for v in targets), gain_scale)

    def read(self) -> dict[str, np.ndarray]:
        """What the robot measures now (the trace's quantities at this instant; acceleration from the previous
        `read`, 0 at the first): orientation (4,), angular_velocity (3,), linear_acceleration (3,), joint_pos,
        joint_vel, joint_effort (J,), and the privileged tilt_deg, height."""
        c, robot = self.client, self.robot
        pos, orn = c.getBasePositionAndOrientation(robot)
        lin, ang = c.getBaseVelocity(robot)
        states = c.getJointStates(robot, list(self.spec.motor_joints))
        t = self.time
        orientation, gyro, accel = imu_readings(
            orn, lin, ang, [t], self._gravity, np.asarray(self.spec.base_orientation), self._last_vel
        )
        self._last_vel = (np.asarray(lin), t)
        effort = (
            self.standing_effort if self.step_count == 0 else np.array([s[3] for s in states])
        )  # restoreState does not restore applied torques (see __init__)
        return {
            "orientation": orientation[0],
            "angular_velocity": gyro[0],
            "linear_acceleration": accel[0],
            "joint_pos": np.array([s[0] for s in states]),
            "joint_vel": np.array([s[1] for s in states]),
            "joint_effort": effort,
            "tilt_deg": np.array(tilt_deg(orn, self.up_local)),
            "height": np.array(pos[2]),
        }

    def fallen(self) -> bool:
        """The fall detector of `run` on the current state."""
        pos, orn = self.client.getBasePositionAndOrientation(self.robot)
        return is_fallen(pos[2], tilt_deg(orn, self.up_local), self.standing_height, self.cfg)

    def body_contact(self) -> tuple[float, float]:
        """(total normal force of the ground on the body (N), base speed (m/s)). The body is every link but the
        feet and the lower legs carrying them (those touch the ground when the robot stands): a body contact is the
        robot hitting the ground."""
        if not hasattr(self, "_leg_links"):
            parents = {self.client.getJointInfo(self.robot, f)[16] for f in self.spec.foot_links}
            self._leg_links = set(self.spec.foot_links) | parents
        force = sum(
            pt[9]
            for pt in self.client.getContactPoints(bodyA=self.robot, bodyB=self.plane)
            if pt[3] not in self._leg_links
        )
        lin, _ = self.client.getBaseVelocity(self.robot)
        return float(force), float(math.sqrt(lin[0] ** 2 + lin[1] ** 2 + lin[2] ** 2))

    # -- recording -----------------------------------------------------------------------------------------------
    def _observe(self, t: float) -> tuple:
        c = self.client
        states = c.getJointStates(self.robot, list(self.spec.motor_joints))
        pos, orn = c.getBasePositionAndOrientation(self.robot)
        return (t, [s[0] for s in states], [s[1] for s in states], pos, orn, self.render())

    def render(self) -> np.ndarray:
        """RGB uint8 (S, S, 3) from a fixed camera looking at the robot's start position (TinyRenderer)."""
        size = self.cfg.camera_size
        view = self.client.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=[0, 0, 0.3], distance=1.8, yaw=45, pitch=-25, roll=0, upAxisIndex=2
        )
        proj = self.client.computeProjectionMatrixFOV(fov=60, aspect=1.0, nearVal=0.05, farVal=10.0)
        img = self.client.getCameraImage(size, size, view, proj, renderer=self.pb.ER_TINY_RENDERER)[2]
        return np.asarray(img, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def _profile(self) -> dict[str, Any]:
        names = [self.client.getJointInfo(self.robot, j)[1].decode() for j in self.spec.motor_joints]
        n = len(names)
        return {
            "name": self.spec.name,
            "joint_names": names,
            "position_lower": [-math.pi] * n,
            "position_upper": [math.pi] * n,
            "velocity_limit": [21.0] * n,
            "home": list(self.spec.standing_pose),
            "urdf": self.spec.urdf,
            "camera": self.camera_meta(),
        }

    def camera_meta(self) -> dict[str, Any]:
        return {
            "name": "fixed",
            "width": self.cfg.camera_size,
            "height": self.cfg.camera_size,
            "fov_deg": 60,
            "target": [0, 0, 0.3],
            "distance": 1.8,
            "yaw_deg": 45,
            "pitch_deg": -25,
        }

    def close(self) -> None:
        with contextlib.suppress(self.pb.error):  # already disconnected
            self.client.disconnect()

    def __enter__(self) -> FallSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
