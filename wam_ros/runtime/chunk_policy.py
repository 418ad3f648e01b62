"""The chunk-following policy: one closed-loop controller around a loaded Policy, for every caller.

Closed-loop evaluation (`wam eval`), DAgger collection (`wam collect --dagger`) and the ROS node (`wam_node`) all run
the model through this class, so frame history, replanning and reset behave the same in simulation and on a robot.
Modelled on LeRobot's `select_action()` / `reset()` (and diffusion_policy's `predict_action()` / `reset()`):

    runner = ChunkPolicy(load_policy("models/panda_tabletop"), replan=4, instruction="reach the red target")
    runner.reset()                                   # a new episode: forget the frames and the queued actions
    action = runner.select_action({"image": rgb, "joint_pos": q})   # (J,) absolute joint targets, every step

or, split into its parts (the ROS node, which publishes the whole chunk to a trajectory controller):

    rgb_small = runner.observe(camera_rgb, "bgr8")   # preprocess ONCE per incoming frame, push into the history
    if runner.steps_left == 0:
        plan = runner.plan(q)                        # one network call on the history; plan.chunk is (N, J)
    action = runner.next_action()                    # the next queued action of the plan

Frames are converted to RGB and resized to the model size once, when they arrive (`observe`), and kept in a
preallocated (1, K, 3, H, W) buffer, so a control step never resizes the K-frame history again. Before K frames have
arrived the first frame repeats, as the training windows do at an episode start. A model with several cameras
(spec.cameras, issue 19) keeps one history per camera in a (1, M, K, 3, H, W) buffer: `observe(image, camera=name)`
for each, `select_action({"images": {name: image, ...}, "joint_pos": q})`; it plans only once every camera has
given a frame (ValueError naming the missing one otherwise). `replan` actions of each chunk are
executed before the next network call. With a `safety` filter the queued chunk is the filtered one (position and
velocity limits from the measured position). A `planner` (issue: imagine before acting) replaces the single network
call by a choice among candidate chunks; it is called as `planner(runner, joint_pos) -> Plan`.

Core module: numpy only (the backend may be torch); never imports rclpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from wam_ros.runtime import preprocess
from wam_ros.runtime.safety import SafeCommand, SafetyFilter


@dataclass
class Plan:
    """One decision: the chunk to follow and what the model said with it."""

    chunk: np.ndarray  # (N, J) float64 absolute targets to follow (after the safety filter, if any)
    action: np.ndarray  # (N, J) float64 what the network proposed, before any filtering
    next_frame: np.ndarray | None  # uint8 (H, W, 3) the predicted next frame (None: action-only graph)
    safe: SafeCommand | None = None  # the safety filter's report (clamping flags), when a filter is set
    info: dict[str, Any] | None = None  # planner details (candidates, scores), when a planner chose


Planner = Callable[["ChunkPolicy", np.ndarray], Plan]


class ChunkPolicy:
    """Closed-loop runner: frame history, the replan queue, reset; see the module docstring."""

    def __init__(
        self,
        policy: Any,
        *,
        replan: int = 1,
        instruction: str | None = None,
        safety: SafetyFilter | None = None,
        planner: Planner | None = None,
    ) -> None:
        if not isinstance(replan, int) or replan < 1:
            raise ValueError(f"replan must be an int >= 1, got {replan!r}")
        self.policy = policy
        self.spec = policy.spec
        self.replan = min(replan, int(self.spec.chunk))
        self.safety = safety
        self.planner = planner
        k, (h, w) = int(self.spec.k_frames), self.spec.image_size
        self.cameras = list(getattr(self.spec, "cameras", None) or ["front"])
        m = len(self.cameras)
        self._frames = np.zeros((1, k, 3, h, w) if m == 1 else (1, m, k, 3, h, w), np.uint8)
        self._seen_by = [0] * m  # frames observed per camera since the reset
        self._queue = np.zeros((0, self.spec.num_joints))
        self._next = 0
        self.last_plan: Plan | None = None
        self.instruction = ""
        if instruction is not None:
            self.set_instruction(instruction)

    # ---- state --------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """A new episode: forget the frame history, the queued actions and the last plan."""
        self._seen_by = [0] * len(self.cameras)
        self._queue = self._queue[:0]
        self._next = 0
        self.last_plan = None

    def set_instruction(self, text: str) -> bool:
        """Set the task text (tokenised once and cached). A changed instruction starts a fresh history and plan.
        Returns True when it changed. Raises ValueError for anything but a non-empty string."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"instruction must be a non-empty string, got {text!r}")
        if text == self.instruction:
            return False
        self.policy.tokens(text)  # validates + caches now, not inside a control step
        self.instruction = text
        self.reset()
        return True

    @property
    def frames_seen(self) -> int:
        """Frames observed since the reset (of the camera that has given the fewest, with several cameras)."""
        return min(self._seen_by)

    @property
    def steps_left(self) -> int:
        """Actions still queued from the last plan (0: the next step plans)."""
        return len(self._queue) - self._next

    @property
    def frames(self) -> np.ndarray:
        """The model's `frames` input uint8 (1, K, 3, H, W), oldest first (a view: copy it to keep it); (1, M, K, 3,
        H, W) with several cameras."""
        return self._frames

    # ---- steps --------------------------------------------------------------------------------------------------
    def observe(self, image: np.ndarray, encoding: str = "rgb8", camera: str | None = None) -> np.ndarray:
        """Convert + resize one frame of `camera` (default: the model's first camera) once and push it into that
        camera's history. Returns it as uint8 (H, W, 3) RGB at the model size (what the surprise monitor compares
        with the prediction). ValueError for a camera the model does not see."""
        if camera is None:
            m = 0
        elif camera in self.cameras:
            m = self.cameras.index(camera)
        else:
            raise ValueError(f"the model sees cameras {self.cameras}, not {camera!r}")
        rgb = self.policy.prepare_image(image, encoding)
        chw = rgb.transpose(2, 0, 1)
        hist = self._frames[0] if len(self.cameras) == 1 else self._frames[0, m]  # (K, 3, H, W) view
        if self._seen_by[m] == 0:
            hist[:] = chw
        else:
            hist[:-1] = hist[1:]
            hist[-1] = chw
        self._seen_by[m] += 1
        return rgb

    def missing_cameras(self) -> list[str]:
        """The cameras with no frame since the reset (a plan needs every one)."""
        return [c for c, n in zip(self.cameras, self._seen_by, strict=True) if n == 0]

    def run_model(self, joint_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One network call on the current history: (action float64 (N, J), next_frame uint8 (H, W, 3) or None)."""
        if min(self._seen_by) == 0:
            missing = self.missing_cameras()
            if len(self.cameras) == 1:
                raise ValueError("no camera frame observed yet: call observe() before planning")
            raise ValueError(
                f"no frame from camera(s) {missing} yet (the model sees {self.cameras}): observe every camera "
                "before planning"
            )
        if not self.instruction:
            raise ValueError("no instruction set: call set_instruction() before planning")
        q = preprocess.check_joint_pos(joint_pos, self.spec.num_joints)
        action, next_frame = self.policy.backend.run(self._frames, q, self.policy.tokens(self.instruction))
        action = np.asarray(action[0], dtype=np.float64)
        if action.shape != (self.spec.chunk, self.spec.num_joints) or not np.all(np.isfinite(action)):
            raise ValueError(
                f"the model returned an unusable action chunk (shape {action.shape}, "
                f"finite: {bool(np.all(np.isfinite(action)))}); nothing is commanded"
            )
        frame = None if next_frame is None else preprocess.frame_to_image(next_frame[0])
        return action, frame

    def plan(self, joint_pos: np.ndarray) -> Plan:
        """Decide now: one network call (or the planner's choice), the safety filter, and queue `replan` actions."""
        if self.planner is not None:
            plan = self.planner(self, np.asarray(joint_pos, dtype=np.float64))
        else:
            action, frame = self.run_model(joint_pos)
            plan = Plan(chunk=action, action=action, next_frame=frame)
        if self.safety is not None:
            plan.safe = self.safety.apply(plan.chunk, np.asarray(joint_pos, dtype=np.float64))
            plan.chunk = plan.safe.points
        self._queue, self._next = plan.chunk[: self.replan], 0
        self.last_plan = plan
        return plan

    def next_action(self) -> np.ndarray:
        """Pop the next queued action (J,). Raises IndexError when the plan is used up (call plan())."""
        if self._next >= len(self._queue):
            raise IndexError("no queued action: the last plan is used up (call plan())")
        action = self._queue[self._next]
        self._next += 1
        return action

    def select_action(self, obs: Mapping[str, Any]) -> np.ndarray:
        """One control step: obs {"image": (h, w, 3) uint8, "joint_pos": (J,), optional "instruction",
        "encoding"} -> the action (J,) to execute now. Plans when the queue is empty. A model with several cameras
        takes "images": {camera: (h, w, 3) uint8} instead of "image", naming every camera (ValueError otherwise)."""
        if "instruction" in obs:
            self.set_instruction(obs["instruction"])
        encoding = obs.get("encoding", "rgb8")
        images = obs.get("images")
        if images is None:
            if len(self.cameras) > 1:
                raise ValueError(
                    f"the model sees cameras {self.cameras}: obs needs 'images' {{camera: image}} naming each, "
                    f"got keys {sorted(obs)}"
                )
            self.observe(obs["image"], encoding)
        else:
            missing = [c for c in self.cameras if c not in images]
            if missing:
                raise ValueError(
                    f"obs['images'] has no frame for camera(s) {missing} (the model sees {self.cameras})"
                )
            for camera in self.cameras:
                self.observe(images[camera], encoding, camera)
        if self.steps_left == 0:
            self.plan(obs["joint_pos"])
        return self.next_action()

    __call__ = select_action
