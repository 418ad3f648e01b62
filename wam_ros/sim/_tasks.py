"""Task definitions for wam_ros.sim.tabletop: scene sampling (with bounded domain randomisation), object placement
and the geometric success tests of `reach` and `push`.

Every random knob is drawn from `RANDOMISATION_BOUNDS` by a numpy Generator seeded with the episode seed, in a fixed
order, and recorded in `Scene.randomisation`; the instruction index is drawn too (and may be overridden), so the
same seed gives the same scene whatever instruction is chosen. With `randomize=False` lighting, colours, camera,
friction and the start pose take their nominal values; object placement still follows the seed. The start pose is the
robot profile's `home` with each arm joint jittered and the gripper open (reach) or closed (push).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pybullet as p

if TYPE_CHECKING:  # pragma: no cover
    from wam_ros.robot import RobotProfile
    from wam_ros.sim.tabletop import TabletopEnv

COLOURS = {  # named colours the instructions use; jittered by at most RANDOMISATION_BOUNDS["colour_jitter"]
    "red": (0.85, 0.12, 0.12),
    "green": (0.12, 0.70, 0.18),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.92, 0.85, 0.12),
}
DEFAULT_CAMERA = {"eye": [1.15, -0.35, 0.8], "target": [0.4, 0.0, 0.2], "fov": 60.0}
DEFAULT_LIGHT = {"direction": [0.5, 0.3, 2.0], "color": [1.0, 1.0, 1.0], "ambient": 0.6, "diffuse": 0.45}

# Every randomised quantity and its bound (uniform draws). Recorded in each episode's meta["randomisation"]["bounds"].
RANDOMISATION_BOUNDS: dict[str, Any] = {
    "start_jitter_rad": 0.15,  # each arm joint of the start pose: the profile's home +- this
    "colour_jitter": 0.08,  # each RGB channel of every object: nominal +- this
    "table_rgb": [[0.54, 0.46, 0.36], [0.62, 0.52, 0.42]],  # low, high per channel
    "table_friction": [0.6, 1.0],
    "light_direction": [[-1.0, -1.0, 1.5], [1.0, 1.0, 2.5]],
    "light_color": [0.85, 1.0],  # grey level of the light
    "light_ambient": [0.5, 0.7],
    "light_diffuse": [0.35, 0.55],
    "camera_eye_jitter_m": 0.03,  # each axis
    "camera_target_jitter_m": 0.02,
    "camera_fov_deg": [58.0, 62.0],
    "reach_target_x": [0.35, 0.65],
    "reach_target_y": [-0.25, 0.25],
    "reach_min_separation_m": 0.12,
    "push_cube_x": [0.42, 0.58],
    "push_cube_y": [-0.12, 0.12],
    "push_pad_distance_m": [0.15, 0.22],
    "push_cube_friction": [0.4, 0.8],
    "push_cube_mass_kg": [0.1, 0.3],
}
REACH_RADIUS = 0.035  # target sphere radius (m); its centre sits at z = REACH_RADIUS
REACH_SUCCESS_M = 0.05  # fingertip within this distance of the named target's centre
CUBE_HALF = 0.025
PAD_HALF = 0.06  # pads are axis-aligned squares; success = cube centre (x, y) inside the named pad


@dataclass
class Scene:
    """One sampled scene: everything needed to rebuild it, evaluate success and record it in the episode meta."""

    task: str
    instruction: str
    instruction_index: int
    goal: str  # name of the object the instruction refers to (a target / a pad)
    objects: dict[str, dict]  # name -> {"position": [x, y, z], "rgb": [r, g, b], "colour": name, ...}
    start_q: list[float]  # one value per profile joint: arm + gripper
    camera: dict
    randomisation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _u(rng: np.random.Generator, lo: Any, hi: Any) -> Any:
    return rng.uniform(lo, hi).tolist() if np.ndim(lo) else float(rng.uniform(lo, hi))


def _common(
    rng: np.random.Generator, randomize: bool, robot: RobotProfile, gripper: str
) -> tuple[list[float], dict, dict]:
    """Start pose (`robot.home`, arm joints jittered, the gripper `gripper` = "open" | "closed"), camera and
    lighting/table knobs, drawn in a fixed order (always drawn, so the stream is stable)."""
    b = RANDOMISATION_BOUNDS
    arm = robot.arm_indices
    jitter = rng.uniform(-b["start_jitter_rad"], b["start_jitter_rad"], len(arm))
    eye_j = rng.uniform(-b["camera_eye_jitter_m"], b["camera_eye_jitter_m"], 3)
    tgt_j = rng.uniform(-b["camera_target_jitter_m"], b["camera_target_jitter_m"], 3)
    fov = _u(rng, *b["camera_fov_deg"])
    rnd = {
        "table_rgb": _u(rng, *b["table_rgb"]),
        "table_friction": _u(rng, *b["table_friction"]),
        "light": {
            "direction": _u(rng, *b["light_direction"]),
            "color": [_u(rng, *b["light_color"])] * 3,
            "ambient": _u(rng, *b["light_ambient"]),
            "diffuse": _u(rng, *b["light_diffuse"]),
        },
    }
    if not randomize:
        jitter, eye_j, tgt_j, fov = np.zeros(len(arm)), np.zeros(3), np.zeros(3), DEFAULT_CAMERA["fov"]
        rnd = {"table_rgb": [0.58, 0.49, 0.39], "table_friction": 0.8, "light": dict(DEFAULT_LIGHT)}
    start = np.asarray(robot.home, dtype=np.float64)
    start[arm] = start[arm] + jitter
    if robot.gripper:
        start[robot.gripper_index] = robot.gripper[gripper]
    start_q = start.tolist()
    camera = {
        "eye": (np.asarray(DEFAULT_CAMERA["eye"]) + eye_j).tolist(),
        "target": (np.asarray(DEFAULT_CAMERA["target"]) + tgt_j).tolist(),
        "fov": float(fov),
    }
    rnd.update(
        {
            "start_jitter": jitter.tolist(),
            "camera": camera,
            "enabled": bool(randomize),
            "bounds": RANDOMISATION_BOUNDS,
        }
    )
    return start_q, camera, rnd


def _colour(rng: np.random.Generator, name: str, randomize: bool) -> list[float]:
    j = rng.uniform(-RANDOMISATION_BOUNDS["colour_jitter"], RANDOMISATION_BOUNDS["colour_jitter"], 3)
    return np.clip(np.asarray(COLOURS[name]) + (j if randomize else 0.0), 0.0, 1.0).tolist()


class ReachTask:
    """3 targets of distinct colours on the table; the instruction names one; reach it with the fingertip."""

    name = "reach"
    n_instructions = 3

    def max_steps(self, control_hz: int) -> int:
        return 4 * control_hz  # 4 s; the expert needs ~1.5-2.5 s

    def build(self, c: int) -> dict[str, int]:
        bodies = {}
        for k in range(self.n_instructions):
            vis = p.createVisualShape(
                p.GEOM_SPHERE, radius=REACH_RADIUS, rgbaColor=[1, 1, 1, 1], physicsClientId=c
            )
            # visual only (no collision shape): the arm may pass through other targets
            bodies[f"target_{k}"] = p.createMultiBody(0, -1, vis, basePosition=[0, 0, -1], physicsClientId=c)
        return bodies

    def sample(
        self, rng: np.random.Generator, randomize: bool, choice: int | None, robot: RobotProfile
    ) -> Scene:
        b = RANDOMISATION_BOUNDS
        start_q, camera, rnd = _common(rng, randomize, robot, gripper="open")
        names = [str(n) for n in rng.choice(list(COLOURS), self.n_instructions, replace=False)]
        xy: list[np.ndarray] = []
        while len(xy) < self.n_instructions:  # rejection sampling: targets at least min_separation apart
            cand = np.array([rng.uniform(*b["reach_target_x"]), rng.uniform(*b["reach_target_y"])])
            if all(np.linalg.norm(cand - o) >= b["reach_min_separation_m"] for o in xy):
                xy.append(cand)
        objects = {
            f"target_{k}": {
                "position": [*xy[k].tolist(), REACH_RADIUS],
                "colour": names[k],
                "rgb": _colour(rng, names[k], randomize),
            }
            for k in range(self.n_instructions)
        }
        drawn = int(rng.integers(self.n_instructions))
        k = drawn if choice is None else choice
        return Scene(
            task=self.name,
            instruction=f"reach the {names[k]} target",
            instruction_index=k,
            goal=f"target_{k}",
            objects=objects,
            start_q=start_q,
            camera=camera,
            randomisation=rnd,
        )

    def place(self, c: int, bodies: dict[str, int], scene: Scene) -> None:
        for name, obj in scene.objects.items():
            p.resetBasePositionAndOrientation(bodies[name], obj["position"], [0, 0, 0, 1], physicsClientId=c)
            p.changeVisualShape(bodies[name], -1, rgbaColor=[*obj["rgb"], 1.0], physicsClientId=c)

    def dynamic(self, name: str) -> bool:
        return False

    def goal_position(self, env: TabletopEnv, scene: Scene) -> np.ndarray:
        return np.asarray(scene.objects[scene.goal]["position"])

    def success(self, env: TabletopEnv, scene: Scene) -> bool:
        return bool(
            np.linalg.norm(env.fingertip_position() - self.goal_position(env, scene)) < REACH_SUCCESS_M
        )


class PushTask:
    """One cube and two coloured pads; the instruction names the pad; push the cube until its centre is inside it."""

    name = "push"
    n_instructions = 2

    def max_steps(self, control_hz: int) -> int:
        return 10 * control_hz

    def build(self, c: int) -> dict[str, int]:
        bodies = {}
        for k in range(self.n_instructions):
            vis = p.createVisualShape(
                p.GEOM_BOX, halfExtents=[PAD_HALF, PAD_HALF, 0.001], rgbaColor=[1, 1, 1, 1], physicsClientId=c
            )
            bodies[f"pad_{k}"] = p.createMultiBody(0, -1, vis, basePosition=[0, 0, -1], physicsClientId=c)
        # shapes made once per client, bodies from them at every reset (see place())
        bodies["_cube_collision"] = p.createCollisionShape(
            p.GEOM_BOX, halfExtents=[CUBE_HALF] * 3, physicsClientId=c
        )
        bodies["_cube_visual"] = p.createVisualShape(
            p.GEOM_BOX, halfExtents=[CUBE_HALF] * 3, rgbaColor=[1, 1, 1, 1], physicsClientId=c
        )
        bodies["cube"] = p.createMultiBody(
            0.2,
            bodies["_cube_collision"],
            bodies["_cube_visual"],
            basePosition=[0.5, 0.0, CUBE_HALF],
            physicsClientId=c,
        )
        return bodies

    def sample(
        self, rng: np.random.Generator, randomize: bool, choice: int | None, robot: RobotProfile
    ) -> Scene:
        b = RANDOMISATION_BOUNDS
        start_q, camera, rnd = _common(rng, randomize, robot, gripper="closed")
        names = [str(n) for n in rng.choice(list(COLOURS), self.n_instructions, replace=False)]
        cube = np.array([rng.uniform(*b["push_cube_x"]), rng.uniform(*b["push_cube_y"])])
        while True:  # two pads in directions >= 70 degrees apart, inside the reachable area, not overlapping
            ang = rng.uniform(-np.pi, np.pi, 2)
            dist = rng.uniform(*b["push_pad_distance_m"], 2)
            pads = cube + np.stack([np.cos(ang), np.sin(ang)], 1) * dist[:, None]
            sep = abs((ang[0] - ang[1] + np.pi) % (2 * np.pi) - np.pi)
            inside = np.all((pads[:, 0] > 0.3) & (pads[:, 0] < 0.72) & (np.abs(pads[:, 1]) < 0.3))
            if sep > np.radians(70) and inside and np.linalg.norm(pads[0] - pads[1]) > 2.5 * PAD_HALF:
                break
        friction, mass = _u(rng, *b["push_cube_friction"]), _u(rng, *b["push_cube_mass_kg"])
        objects = {
            f"pad_{k}": {
                "position": [*pads[k].tolist(), 0.001],
                "colour": names[k],
                "rgb": _colour(rng, names[k], randomize),
            }
            for k in range(self.n_instructions)
        }
        objects["cube"] = {
            "position": [*cube.tolist(), CUBE_HALF],
            "colour": "white",
            "rgb": [0.95, 0.95, 0.95],
        }
        drawn = int(rng.integers(self.n_instructions))
        if not randomize:
            friction, mass = 0.6, 0.2
        rnd.update({"cube_friction": friction, "cube_mass": mass})
        k = drawn if choice is None else choice
        return Scene(
            task=self.name,
            instruction=f"push the cube onto the {names[k]} pad",
            instruction_index=k,
            goal=f"pad_{k}",
            objects=objects,
            start_q=start_q,
            camera=camera,
            randomisation=rnd,
        )

    def place(self, c: int, bodies: dict[str, int], scene: Scene) -> None:
        # the cube is re-created, not moved: a moved body keeps its stale contact manifold with the table, and then
        # the same seed no longer gives the same episode
        p.removeBody(bodies["cube"], physicsClientId=c)
        bodies["cube"] = p.createMultiBody(
            0.2,
            bodies["_cube_collision"],
            bodies["_cube_visual"],
            basePosition=scene.objects["cube"]["position"],
            physicsClientId=c,
        )
        for name, obj in scene.objects.items():
            if name != "cube":
                p.resetBasePositionAndOrientation(
                    bodies[name], obj["position"], [0, 0, 0, 1], physicsClientId=c
                )
            p.changeVisualShape(bodies[name], -1, rgbaColor=[*obj["rgb"], 1.0], physicsClientId=c)
        p.changeDynamics(
            bodies["cube"],
            -1,
            lateralFriction=scene.randomisation["cube_friction"],
            mass=scene.randomisation["cube_mass"],
            physicsClientId=c,
        )

    def dynamic(self, name: str) -> bool:
        return name == "cube"

    def goal_position(self, env: TabletopEnv, scene: Scene) -> np.ndarray:
        return np.asarray(scene.objects[scene.goal]["position"])

    def success(self, env: TabletopEnv, scene: Scene) -> bool:
        cube = env.object_positions()["cube"]
        pad = self.goal_position(env, scene)
        return bool(np.all(np.abs(cube[:2] - pad[:2]) < PAD_HALF) and cube[2] < 2 * CUBE_HALF)


TASKS: dict[str, ReachTask | PushTask] = {"reach": ReachTask(), "push": PushTask()}
