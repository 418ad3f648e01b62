"""sim_node: the PyBullet tabletop robot (wam_ros.sim.tabletop.TabletopEnv) behind ROS 2 topics, like a real robot.

    ros2 run wam_ros sim_node --ros-args --params-file config/sim_node.yaml
    wam bringup sim_demo                        # with wam_node, in one process

Publishes each camera of the robot profile on its topic (sensor_msgs/Image; the Panda: camera/image_raw, the fixed
scene camera, and wrist_camera/image_raw, the camera on the hand, rendered only while it has a subscriber;
`cameras` picks some) and joint_states (sensor_msgs/JointState) every control period, all stamped with the time of
the physics state; wam/instruction (std_msgs/String, latched, repeated with every observation); wam/episode_success
(std_msgs/Bool) once when an episode ends (true = task solved, false = step limit). Takes commands like ros2_control:
<controller>/joint_trajectory (trajectory_msgs/JointTrajectory, executed like joint_trajectory_controller: a new
trajectory replaces the old one; point k is due at header.stamp + time_from_start, or receipt time when the stamp is
zero) and <controller>/commands (std_msgs/Float64MultiArray, forward_command_controller: targets applied as they come).
Service sim/reset (std_srvs/Trigger) starts the next episode with seed = `seed` + episode index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from wam_ros.ros import conversions as conv
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare_params, param
from wam_ros.sim.tabletop import TabletopEnv


@dataclass(frozen=True)
class SimNodeParams:
    """sim_node's parameters: the one set of defaults (config/sim_node.yaml sets a deployment's choices)."""

    task: str = param("reach", "tabletop task: reach | push")
    robot: str = param(
        "panda", "robot profile name or path: any profile the tabletop sim can build (e.g. xarm6)"
    )
    image_size: int = param(64, "camera image size (square)")
    control_hz: float = param(10.0, "physics steps per second of wall time (control rate)")
    seed: int = param(10_000, "seed of episode 0; episode i uses seed + i")
    max_steps: int = param(0, "episode step limit (0 = the task's default)")
    randomize: bool = param(True, "domain randomisation (start pose, lighting, friction)")
    controller: str = param("arm_controller", "controller namespace of the command topics")
    camera_encoding: str = param("rgb8", "rgb8 | bgr8 | mono8")
    frame_id: str = param("camera", "frame id of the main camera (another camera's: <name>_camera)")
    cameras: str = param(
        "",
        'profile cameras to publish, comma-separated (e.g. "front"); "" = every camera of the profile (a wrist '
        "camera is rendered only while it has a subscriber: a render costs about one physics step)",
    )
    publish_instruction: bool = param(True, "publish each episode's instruction")

    def check(self) -> None:
        """ValueError naming the first parameter with a value the node cannot run with."""
        if self.camera_encoding not in conv.CHANNELS:
            raise ValueError(
                f"camera_encoding must be one of {sorted(conv.CHANNELS)}, got {self.camera_encoding!r}"
            )
        if not self.control_hz > 0:
            raise ValueError(f"control_hz must be > 0, got {self.control_hz}")


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim", **kwargs)
        params = declare_params(self, SimNodeParams)
        params.check()
        self.params = params
        self.control_hz, self.seed = params.control_hz, params.seed
        self.encoding, self.frame_id = params.camera_encoding, params.frame_id
        self.publish_instruction = params.publish_instruction
        task, image_size, controller = params.task, params.image_size, params.controller
        cameras = self.pick_cameras(params)
        self.env = TabletopEnv(
            task=task,
            image_size=int(image_size),
            control_hz=int(round(self.control_hz)),
            max_steps=int(params.max_steps) or None,
            randomize=bool(params.randomize),
            robot=params.robot,
        )
        self.joint_names = list(self.env.profile.joint_names)
        self.dt = 1.0 / self.control_hz

        # (publisher, main camera?, frame id) per published camera: the main one is the observation's "image"; the
        # wrist camera is rendered only while it has a subscriber (a render costs about one physics step's time)
        self.image_pubs = [
            (
                self.create_publisher(Image, c["topic"], 10),
                c["mount"] == "fixed",
                self.frame_id if c["mount"] == "fixed" else f"{c['name']}_camera",
            )
            for c in cameras
        ]
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.instruction_pub = self.create_publisher(String, "wam/instruction", latched)
        self.success_pub = self.create_publisher(Bool, "wam/episode_success", 10)
        self.create_subscription(JointTrajectory, f"{controller}/joint_trajectory", self.on_trajectory, 10)
        self.create_subscription(Float64MultiArray, f"{controller}/commands", self.on_commands, 10)
        self.create_service(Trigger, "sim/reset", self.on_reset)

        self.episode = -1
        self.results: list[dict] = []  # one dict per finished episode (seed, success, steps, instruction)
        self.reset_episode()
        self.timer = self.create_timer(self.dt, self.on_timer)
        self.get_logger().info(
            f"sim_node: {self.env.profile.name} {task}, {image_size}x{image_size} {self.encoding}, {self.control_hz:g} Hz, "
            f"cameras {[c['name'] for c in cameras]}, commands on {controller}/joint_trajectory and "
            f"{controller}/commands"
        )

    @staticmethod
    def pick_cameras(params: SimNodeParams) -> list[dict]:
        """The profile cameras to publish ({name, topic, mount}): `cameras`, else all. The tabletop sim renders
        the main (fixed) camera and one wrist camera: a profile camera it cannot render is refused, naming it."""
        from wam_ros.robot import RobotProfile

        specs = RobotProfile.load(params.robot).camera_specs
        names = [c["name"] for c in specs]
        wanted = [n.strip() for n in params.cameras.split(",") if n.strip()] or names
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ValueError(
                f"cameras: {unknown} are not cameras of robot profile {params.robot!r} ({names})"
            )
        picked = [c for c in specs if c["name"] in wanted]
        # what the sim can render: the first camera when it is fixed ("image"), the first wrist camera
        renderable = {names[0]} if specs[0]["mount"] == "fixed" else set()
        renderable |= set([c["name"] for c in specs if c["mount"] == "wrist"][:1])
        bad = [c["name"] for c in picked if c["name"] not in renderable]
        if bad:
            raise ValueError(
                f"cameras: the tabletop sim renders the profile's first camera (mount fixed) and its first wrist "
                f"camera, not {bad} of robot profile {params.robot!r}"
            )
        return picked

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def reset_episode(self) -> str:
        self.episode += 1
        seed = int(self.seed) + self.episode
        self.obs, info = self.env.reset(seed=seed)
        self.reset_time = self.now()
        self.target = np.asarray(self.env.last_action, dtype=np.float64)
        self.plan: tuple[float, np.ndarray, np.ndarray] | None = None  # (start, times, points)
        self.done = False
        self.publish_observation(self.reset_time)
        return f"episode {self.episode} seed {seed}: {self.env.instruction}"

    # ---- commands -----------------------------------------------------------------------------------------------
    def on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            times, points = conv.trajectory_points(msg, self.joint_names)
        except conv.MessageError as exc:
            self.get_logger().warning(f"refused trajectory: {exc}", throttle_duration_sec=1.0)
            return
        stamp = conv.stamp_to_sec(msg.header.stamp)
        if 0 < stamp < self.reset_time:  # computed from an observation of the previous episode
            return
        self.plan = (stamp if stamp > 0 else self.now(), times, points)

    def on_commands(self, msg: Float64MultiArray) -> None:
        try:
            self.target = conv.float_array_values(msg, len(self.joint_names))
        except conv.MessageError as exc:
            self.get_logger().warning(f"refused command: {exc}", throttle_duration_sec=1.0)
            return
        self.plan = None

    def current_target(self, now: float) -> np.ndarray:
        """The trajectory point due at `now` (the first not more than half a period in the past), else the last one."""
        if self.plan is not None:
            start, times, points = self.plan
            due = np.nonzero(start + times >= now - 0.5 * self.dt)[0]
            self.target = points[due[0]] if len(due) else points[-1]
        return self.target

    # ---- physics ------------------------------------------------------------------------------------------------
    def on_timer(self) -> None:
        now = self.now()
        if not self.done:
            self.obs, _, terminated, truncated, info = self.env.step(self.current_target(now))
            if terminated or truncated:
                self.done = True
                self.results.append(
                    {
                        "episode": self.episode,
                        "seed": int(self.seed) + self.episode,
                        "success": bool(info["success"]),
                        "steps": int(info["step"]),
                        "instruction": self.env.instruction,
                    }
                )
                self.success_pub.publish(Bool(data=bool(info["success"])))
        self.publish_observation(now)

    def publish_observation(self, t: float) -> None:
        if self.publish_instruction:  # with every observation, so a late or volatile subscriber always has it
            self.instruction_pub.publish(String(data=self.env.instruction))
        stamp = conv.sec_to_stamp(t)
        self.joint_pub.publish(
            conv.joint_state(self.joint_names, self.obs["joint_pos"], self.obs["joint_vel"], stamp)
        )
        for pub, main, frame_id in self.image_pubs:
            if main:
                pub.publish(conv.rgb_to_image(self.obs["image"], stamp, frame_id, self.encoding))
            elif pub.get_subscription_count() > 0:
                pub.publish(conv.rgb_to_image(self.env.wrist_image(), stamp, frame_id, self.encoding))

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.message = self.reset_episode()
        response.success = True
        return response

    def destroy_node(self) -> None:
        if getattr(self, "env", None) is not None:  # None when __init__ refused the parameters
            self.env.close()
        super().destroy_node()


NODE_CLASS = SimNode


def main(args: list[str] | None = None) -> None:
    spin_node(SimNode, args)


if __name__ == "__main__":
    main()
