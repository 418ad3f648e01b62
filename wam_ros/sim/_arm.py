"""A robot profile mapped onto its PyBullet body, for wam_ros.sim.tabletop and the scripted experts: no code per robot,
everything comes from the profile (config/robots/<name>.yaml) and the URDF it names.

    rig = ArmRig(profile, body, client)
    rig.apply(q)                      # model joint vector -> position targets of every driven PyBullet joint
    pos, vel = rig.read()             # PyBullet joint states -> model joint vector (the profile's JointReader)
    arm = rig.ik(tip_xyz, DOWN)       # arm joint targets that put the fingertip point there (PyBullet IK)

How a model joint becomes PyBullet joints: a model joint that is a URDF joint drives it; one that is not (a Panda's
`panda_gripper` width) drives the source joints of its `joint_mapping` rule, the inverse of how the rule reads it
({sum: [A, B], scale, offset}: each source = (value - offset) / scale / 2; {joint: J}: J = (value - offset) / scale);
URDF `<mimic>` joints (an xArm gripper's five knuckles) follow their joint (multiplier * value + offset), since
PyBullet does not enforce mimic joints itself. Motor forces are the URDF's effort limits. The fingertip point is
`ee_link`'s origin plus `ee_offset` in that link's frame.
"""

from __future__ import annotations

import numpy as np
import pybullet as p

from wam_ros.robot import JointReader, RobotProfile
from wam_ros.robot_urdf import parse_urdf


class ArmRig:
    """`profile` on PyBullet body `body` in physics client `client` (see the module docstring)."""

    def __init__(self, profile: RobotProfile, body: int, client: int) -> None:
        self.profile, self.body, self.client = profile, body, client
        where = f"robot profile {profile.name!r} ({profile.urdf})"
        joints: dict[str, int] = {}
        links: dict[str, int] = {}
        info = {}
        for i in range(p.getNumJoints(body, physicsClientId=client)):
            ji = p.getJointInfo(body, i, physicsClientId=client)
            joints[ji[1].decode()] = i
            links[ji[12].decode()] = i
            info[i] = ji
        for key in ("ee_link", "wrist_link"):
            name = getattr(profile, key)
            if key == "ee_link" and not name:
                raise ValueError(
                    f"{where} has no ee_link: the simulator needs the tool link (the fingertip point is its origin + "
                    f"ee_offset); links: {sorted(links)}"
                )
            if name and name not in links:
                raise ValueError(f"{where}: {key} {name!r} is not a link of the URDF; links: {sorted(links)}")
        self.ee_link = links[profile.ee_link]
        self.wrist_link = links[profile.wrist_link or profile.ee_link]
        self.ee_offset = np.asarray(profile.ee_offset, dtype=np.float64)
        self.movable = [i for i in sorted(info) if info[i][2] != p.JOINT_FIXED]  # PyBullet's IK order

        # model joint -> [(pybullet joint, divisor, offset)]: the joint's target = (value - offset) / divisor
        rules = {}
        for name, rule in profile.joint_mapping.items():
            sources = [rule["joint"]] if "joint" in rule else list(rule["sum"])
            scale, offset = float(rule.get("scale", 1.0)), float(rule.get("offset", 0.0))
            rules[name] = [(s, scale * len(sources), offset) for s in sources]
        self.drive: list[tuple[int, int, float, float]] = []  # (model index, pybullet joint, divisor, offset)
        for m, name in enumerate(profile.joint_names):
            targets = [(name, 1.0, 0.0)] if name in joints else rules.get(name)
            if targets is None:
                raise ValueError(
                    f"{where}: model joint {name!r} is not a URDF joint and has no joint_mapping rule; URDF joints: "
                    f"{[n for n, i in joints.items() if i in self.movable]}"
                )
            for src, div, off in targets:
                if src not in joints or joints[src] not in self.movable:
                    raise ValueError(
                        f"{where}: joint {src!r} (for model joint {name!r}) is no movable URDF joint"
                    )
                self.drive.append((m, joints[src], div, off))
        driven = {j for _, j, _, _ in self.drive}
        # URDF mimic joints that follow a driven joint: (pybullet joint, leader's pybullet joint, multiplier, offset)
        self.mimic: list[tuple[int, int, float, float]] = [
            (joints[j.name], joints[j.mimic], j.mimic_multiplier, j.mimic_offset)
            for j in parse_urdf(profile.urdf).joints
            if j.mimic is not None
            and j.name in joints
            and joints[j.mimic] in driven
            and joints[j.name] not in driven
        ]
        self.indices = [j for _, j, _, _ in self.drive] + [j for j, _, _, _ in self.mimic]
        self.forces = [float(info[j][10]) for j in self.indices]
        weak = [info[j][1].decode() for j, f in zip(self.indices, self.forces, strict=True) if not f > 0]
        if weak:
            raise ValueError(f"{where}: the URDF gives joints {weak} no effort limit (> 0) for their motors")
        self._names = [info[i][1].decode() for i in self.movable]  # read() reads every movable joint, by name
        self.reader = JointReader(profile, profile.joint_names)

        # IK null space over the movable joints: a model joint's own limits, else the URDF's; rest pose = home
        model_index = {j: m for m, j, div, _ in self.drive if div == 1.0 and profile.joint_names[m] in joints}
        lower, upper = [], []
        for j in self.movable:
            if j in model_index:
                lower.append(profile.position_lower[model_index[j]])
                upper.append(profile.position_upper[model_index[j]])
            else:
                lo, hi = float(info[j][8]), float(info[j][9])
                lower.append(lo if lo < hi else -2 * np.pi)  # PyBullet reports a continuous joint as (0, -1)
                upper.append(hi if lo < hi else 2 * np.pi)
        self.ik_lower, self.ik_upper = lower, upper
        self.ik_ranges = [u - lo for lo, u in zip(lower, upper, strict=True)]
        rest = self.targets(np.asarray(profile.home, dtype=np.float64))
        self.ik_rest = [rest.get(j, 0.0) for j in self.movable]
        self.arm = profile.arm_indices
        self.ik_arm = [self.movable.index(self._model_joint(m, joints)) for m in self.arm]

    def _model_joint(self, m: int, joints: dict[str, int]) -> int:
        name = self.profile.joint_names[m]
        if name not in joints:
            raise ValueError(
                f"robot profile {self.profile.name!r}: arm joint {name!r} is not a URDF joint (only the gripper may "
                "be mapped)"
            )
        return joints[name]

    def targets(self, q: np.ndarray) -> dict[int, float]:
        """PyBullet joint -> position target for model joint vector `q` (mimic joints included)."""
        out = {j: (q[m] - off) / div for m, j, div, off in self.drive}
        for j, leader, mult, off in self.mimic:
            out[j] = mult * out[leader] + off
        return out

    def reset(self, q: np.ndarray) -> None:
        """Teleport every driven joint to `q` (at rest)."""
        for j, v in self.targets(q).items():
            p.resetJointState(self.body, j, v, 0.0, physicsClientId=self.client)

    def apply(self, q: np.ndarray) -> None:
        """Position control towards `q` (model joint vector), with the URDF's effort limits."""
        t = self.targets(q)
        p.setJointMotorControlArray(
            self.body,
            self.indices,
            p.POSITION_CONTROL,
            targetPositions=[t[j] for j in self.indices],
            forces=self.forces,
            physicsClientId=self.client,
        )

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured (positions, velocities) as model joint vectors (float64), read as a robot's /joint_states would
        be: by name, through the profile's joint_mapping."""
        states = p.getJointStates(self.body, self.movable, physicsClientId=self.client)
        pos = np.array([s[0] for s in states], dtype=np.float64)
        vel = np.array([s[1] for s in states], dtype=np.float64)
        return self.reader.read(self._names, pos), self.reader.read(self._names, vel)

    def link_pose(self, link: int) -> tuple[np.ndarray, tuple]:
        state = p.getLinkState(self.body, link, computeForwardKinematics=True, physicsClientId=self.client)
        return np.asarray(state[4]), state[5]

    def fingertip(self) -> np.ndarray:
        """World position of the fingertip point (ee_link's origin + ee_offset)."""
        pos, orn = self.link_pose(self.ee_link)
        if not self.ee_offset.any():
            return pos
        return pos + np.asarray(p.getMatrixFromQuaternion(orn)).reshape(3, 3) @ self.ee_offset

    def ik(self, tip: np.ndarray, orientation: tuple) -> np.ndarray:
        """Arm joint targets (in profile order of the arm joints) that put the fingertip point at `tip` with ee_link
        at `orientation` (PyBullet IK, null space towards home)."""
        target = np.asarray(tip, dtype=np.float64)
        if self.ee_offset.any():  # IK places the link's origin: step back along the tool by the offset
            target = (
                target - np.asarray(p.getMatrixFromQuaternion(orientation)).reshape(3, 3) @ self.ee_offset
            )
        q = p.calculateInverseKinematics(
            self.body,
            self.ee_link,
            target.tolist(),
            orientation,
            lowerLimits=self.ik_lower,
            upperLimits=self.ik_upper,
            jointRanges=self.ik_ranges,
            restPoses=self.ik_rest,
            maxNumIterations=60,
            residualThreshold=1e-5,
            physicsClientId=self.client,
        )
        return np.asarray([q[i] for i in self.ik_arm], dtype=np.float64)
