"""recorder_node: records demonstrations (camera, /joint_states, controller commands) to rosbag2/MCAP, one bag per episode.

    ros2 run wam_ros recorder_node --ros-args --params-file config/recorder_node.yaml -p task:="reach the red target"
    ros2 service call /recorder/start std_srvs/srv/Trigger        # then stop_success | stop_failure | discard

Messages are taken serialized as they arrive (`raw=True` subscriptions, RELIABLE QoS) and written unchanged, so the
recorder never decodes an image. Each episode is a bag directory `<output_dir>/episode_<NNNN>/` (MCAP + metadata.yaml,
what `ros2 bag info/play` read) whose `custom_data` holds the episode metadata: task, operator, robot profile, success.
Keys (stdin a terminal and `keyboard` true, or the terminal reader started by teleop_node in the same process):
r start, y stop-success, n stop-failure, x discard (chosen not to clash with teleop_node's jog keys).

Failure behaviour: an unwritable output_dir or a full disk stops the episode with a clear error in the log and in the
service response; earlier episodes are never touched and every message flushed before the error stays readable. After
SIGKILL the bag holds everything up to the last flushed chunk (`flush_period_s`); `wam data repair-bag` completes it.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from wam_ros.data.rosbag import BagError, BagWriter
from wam_ros.ros.executor import spin_node
from wam_ros.ros.parameters import declare_params, param
from wam_ros.teleop.keyboard import keyboard

_EPISODE_RE = re.compile(r"^episode_(\d{4,})$")
_MSG_CLASSES = {
    "sensor_msgs/msg/Image": ("sensor_msgs.msg", "Image"),
    "sensor_msgs/msg/CompressedImage": ("sensor_msgs.msg", "CompressedImage"),
    "sensor_msgs/msg/JointState": ("sensor_msgs.msg", "JointState"),
    "sensor_msgs/msg/Joy": ("sensor_msgs.msg", "Joy"),
    "trajectory_msgs/msg/JointTrajectory": ("trajectory_msgs.msg", "JointTrajectory"),
    "std_msgs/msg/Float64MultiArray": ("std_msgs.msg", "Float64MultiArray"),
    "std_msgs/msg/String": ("std_msgs.msg", "String"),
}


def message_class(msgtype: str) -> type:
    if msgtype not in _MSG_CLASSES:
        raise ValueError(
            f"recorder: unsupported message type {msgtype!r}; expected one of {sorted(_MSG_CLASSES)}"
        )
    module, name = _MSG_CLASSES[msgtype]
    return getattr(__import__(module, fromlist=[name]), name)


@dataclass(frozen=True)
class RecorderNodeParams:
    """recorder_node's parameters: the one set of defaults (config/recorder_node.yaml sets a deployment's choices).
    `task`, `operator`, `robot`, `chunk_size`, `flush_period_s` and `compression` are read again at each episode
    start, so `ros2 param set` changes the next episode."""

    output_dir: str = param("bags", "episodes go to output_dir/episode_NNNN (one bag each)")
    topics: tuple[str, ...] = param(("/camera/image_raw", "/joint_states"), "recorded topics")
    types: tuple[str, ...] = param(
        ("sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"), "their message types (parallel to topics)"
    )
    best_effort_topics: tuple[str, ...] = param(
        ("",), "topics subscribed best-effort (publishers offering only that)"
    )
    task: str = param("", "task text (instruction) of the next episode")
    operator: str = param("", "operator name stored with each episode")
    robot: str = param("panda", "robot profile stored with each episode (bag metadata wam.robot_profile)")
    qos_depth: int = param(200, "RELIABLE keep-last depth of each subscription")
    chunk_size: int = param(262144, "MCAP chunk size in bytes (a crash loses at most the open chunk)")
    flush_period_s: float = param(0.5, "flush the bag at least this often (s)")
    compression: str = param("none", "none | lz4 | zstd")
    keyboard: bool = param(False, "read episode keys from the terminal")
    auto_start: bool = param(False, "start an episode when the node starts")

    def check(self) -> None:
        """ValueError naming the first parameter with a value the node cannot run with."""
        if len(self.topics) != len(self.types) or not self.topics:
            raise ValueError(
                f"recorder: 'topics' ({len(self.topics)}) and 'types' ({len(self.types)}) must be non-empty "
                "lists of the same length"
            )


class RecorderNode(Node):
    """Raw subscriptions on the recorded topics; services and keys that start, stop and discard episodes."""

    def __init__(self, **kwargs) -> None:
        super().__init__("recorder", **kwargs)
        params = declare_params(self, RecorderNodeParams)
        params.check()
        self.params = params
        topics, types = list(params.topics), list(params.types)
        self.topics = dict(zip(topics, types, strict=True))
        self.output_dir = Path(params.output_dir)
        self._lock = threading.Lock()
        self._writer: BagWriter | None = None
        self._received: dict[str, int] = {}
        self.last_error = ""
        self.last_bag: Path | None = None

        best_effort = {t for t in params.best_effort_topics if t}
        for topic, msgtype in self.topics.items():
            qos = QoSProfile(
                depth=params.qos_depth,
                history=HistoryPolicy.KEEP_LAST,
                reliability=ReliabilityPolicy.BEST_EFFORT
                if topic in best_effort
                else ReliabilityPolicy.RELIABLE,
            )
            self.create_subscription(
                message_class(msgtype),
                topic,
                lambda data, topic=topic: self._on_message(topic, data),
                qos,
                raw=True,
            )
        self.create_service(Trigger, "~/start", self._srv(self.start_episode))
        self.create_service(Trigger, "~/stop_success", self._srv(lambda: self.stop_episode(True)))
        self.create_service(Trigger, "~/stop_failure", self._srv(lambda: self.stop_episode(False)))
        self.create_service(Trigger, "~/discard", self._srv(self.discard_episode))
        self._unsubscribe = keyboard.subscribe(self._on_key)
        if params.keyboard and keyboard.start():
            self.get_logger().info("recorder keys: r start, y stop-success, n stop-failure, x discard")
        self.get_logger().info(f"recording {sorted(self.topics)} into {self.output_dir}/episode_NNNN")
        if params.auto_start:
            ok, msg = self.start_episode()
            if not ok:
                self.get_logger().error(msg)

    # ------------------------------------------------------------------------------------------------ episodes
    @property
    def recording(self) -> bool:
        return self._writer is not None

    def _next_bag_path(self) -> Path:
        used = [
            int(m.group(1))
            for d in (self.output_dir.iterdir() if self.output_dir.is_dir() else [])
            if (m := _EPISODE_RE.match(d.name))
        ]
        return self.output_dir / f"episode_{max(used, default=-1) + 1:04d}"

    def start_episode(self) -> tuple[bool, str]:
        with self._lock:
            if self._writer is not None:
                return False, f"already recording {self._writer.path}; stop or discard it first"
            p = self.get_parameter
            try:
                path = self._next_bag_path()
            except OSError as exc:
                return self._fail(f"cannot list output_dir {self.output_dir}: {exc.strerror}")
            custom = {
                "wam.task": str(p("task").value),
                "wam.instruction": str(p("task").value),
                "wam.operator": str(p("operator").value),
                "wam.robot_profile": str(p("robot").value),
                "wam.success": "unknown",
                "wam.producer": "recorder_node",
                "wam.started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            try:
                writer = BagWriter(
                    path,
                    dict(self.topics),
                    custom,
                    chunk_size=int(p("chunk_size").value),
                    flush_period_s=float(p("flush_period_s").value),
                    compression=str(p("compression").value),
                )
                writer.open()
            except (BagError, ValueError) as exc:
                return self._fail(f"cannot start an episode: {exc}")
            self._writer, self._received = writer, {t: 0 for t in self.topics}
            self.last_error = ""
        self.get_logger().info(f"episode started: {path} (task {custom['wam.task']!r})")
        return True, str(path)

    def stop_episode(self, success: bool) -> tuple[bool, str]:
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is None:
                return False, "not recording" + (
                    f" (last error: {self.last_error})" if self.last_error else ""
                )
            try:
                writer.close({"wam.success": "true" if success else "false"})
            except BagError as exc:
                return self._fail(str(exc))
            self.last_bag = writer.path
            report = {
                "bag": str(writer.path),
                "success": success,
                "written": writer.counts,
                "received": dict(self._received),
            }
        self.get_logger().info(
            f"episode stopped ({'success' if success else 'failure'}): {json.dumps(report)}"
        )
        return True, json.dumps(report)

    def discard_episode(self) -> tuple[bool, str]:
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is None:
                return False, "not recording"
            writer.abort()
            shutil.rmtree(writer.path, ignore_errors=True)
        self.get_logger().info(f"episode discarded: {writer.path}")
        return True, f"discarded {writer.path}"

    def _fail(self, message: str) -> tuple[bool, str]:
        self.last_error = message
        self.get_logger().error(message)
        return False, message

    # ------------------------------------------------------------------------------------------------ callbacks
    def _on_message(self, topic: str, data: bytes) -> None:
        if self._writer is None:
            return
        with self._lock:
            writer = self._writer
            if writer is None:
                return
            self._received[topic] += 1
            try:
                writer.write(topic, data, self.get_clock().now().nanoseconds)
            except BagError as exc:
                self._writer = None  # stop recording; the bag keeps what was flushed
                self._fail(str(exc))

    def _srv(self, action):
        def handle(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            response.success, response.message = action()
            return response

        return handle

    def _on_key(self, key: str) -> None:
        action = {
            "r": self.start_episode,
            "y": lambda: self.stop_episode(True),
            "n": lambda: self.stop_episode(False),
            "x": self.discard_episode,
        }.get(key)
        if action is not None:
            ok, msg = action()
            (self.get_logger().info if ok else self.get_logger().warn)(msg)

    def destroy_node(self) -> None:
        if not hasattr(self, "_unsubscribe"):  # __init__ refused the parameters: nothing was opened
            super().destroy_node()
            return
        self._unsubscribe()
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:  # shutting down mid-episode: keep it, marked as interrupted
            try:
                writer.close({"wam.success": "false", "wam.stop_reason": "shutdown"}, status="interrupted")
            except BagError as exc:
                self.get_logger().error(str(exc))
        super().destroy_node()


NODE_CLASS = RecorderNode


def main(args: list[str] | None = None) -> None:
    spin_node(RecorderNode, args)


if __name__ == "__main__":
    main()
