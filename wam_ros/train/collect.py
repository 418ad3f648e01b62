"""Collect scripted-expert demonstrations in sim into episode files (parallel, resumable): `wam collect`.

    summary = collect(CollectConfig(task="reach", episodes=200, workers=2, out="data/reach"))

    wam collect --task reach --episodes 200 --workers 2 --out data/reach
    wam collect --task push --episodes 400 --workers 2 --seed 1 --out data/push --image-size 64
    wam collect --task reach --robot xarm6 --episodes 300 --out data/xarm6_reach    # any profile the sim can build

Episode index i -> scene seed derived from (--seed, i // n_instructions) and instruction i % n_instructions, so every
scene is recorded once per instruction (reach: 3 targets, push: 2 pads) — what makes a small model use the image and
the instruction. `--scene-per-episode` gives every episode its own scene (instruction drawn by the seed) instead.
Worker processes each own one pybullet DIRECT client and die with the run (wam_ros.train.workers). Re-running fills in the missing indices; `collect.json` in the
output directory records the settings and a re-run with different settings is refused (use another --out).
Failed expert episodes are written too (meta success=False) and counted. Never imports rclpy.

    wam collect --task push --episodes 300 --seed 4 --dagger models/panda_tabletop --beta 0.2 --out data/push_dagger

`--dagger MODEL` records DAgger data (Ross et al. 2011): the trained WAM drives (through the runtime, torch backend,
re-planning every `--replan` actions; with probability `--beta` per step the expert's action is executed instead)
while the scripted expert labels every visited state. Such episodes are trained on whatever their outcome: a learner
failure is exactly the state whose expert correction the next model needs (`load_episodes` keeps them).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wam_ros.data.episode import Episode, episode_path, write_episode
from wam_ros.fileio import atomic_write_text
from wam_ros.train.workers import die_with_parent

TASK_NAMES = ("reach", "push")
BACKENDS = ("local", "ray")
MANIFEST = "collect.json"
# settings that must match for a re-run to resume into the same directory
_RESUME_KEYS = (
    "task",
    "robot",
    "seed",
    "image_size",
    "control_hz",
    "randomize",
    "wrist_camera",
    "scene_per_episode",
    "max_steps",
    "noise",
    "dagger",
    "beta",
    "replan",
)


class CollectError(RuntimeError):
    """The collection stopped (e.g. a worker process died); the episodes already written are complete."""


@dataclass
class CollectConfig:
    """Args:
    task: "reach" or "push".
    robot: robot profile name or path (config/robots/<robot>.yaml) the sim builds and the episodes record.
    episodes: total number of episode indices 0..episodes-1 the directory should hold.
    out: output directory (created).
    workers: worker processes (1 = in this process).
    seed: collection seed; scene seeds derive from it.
    image_size: camera frame size (square).
    control_hz: control rate (physics at 240 Hz).
    randomize: domain randomisation on/off (placement always follows the seed).
    wrist_camera: also record a wrist camera (`wrist_frames`).
    scene_per_episode: one scene per episode instead of every scene once per instruction.
    max_steps: step limit per episode (None: the task's default).
    noise: DART noise std (rad) added to the executed arm targets; the recorded action stays the expert's clean one
        (see `record_episode`). 0 records the expert as is.
    dagger: a trained model (directory or checkpoint) that drives the episodes while the expert labels them (DAgger).
    beta: with --dagger, the per-step probability that the expert's action is executed instead of the model's.
    replan: with --dagger, actions of each predicted chunk executed before the model predicts again.
    backend: "local" (worker processes on this machine) or "ray" (`workers` Ray actors, each with its own world;
        episodes come back to this process, which writes them). The output is the same, so a collection started
        on one backend resumes on the other.
    ray_address: with backend "ray", a running cluster (HOST:PORT, ray://HOST:PORT or auto); None starts a local
        Ray instance with `workers` CPUs. On a cluster, a --dagger model path must exist on every node.
    """

    task: str = "reach"
    episodes: int = 200
    out: str = "data/reach"
    workers: int = 2
    seed: int = 0
    image_size: int = 64
    control_hz: int = 10
    randomize: bool = True
    wrist_camera: bool = False
    scene_per_episode: bool = False
    max_steps: int | None = None
    noise: float = 0.0
    dagger: str | None = None
    beta: float = 0.0
    replan: int = 4
    backend: str = "local"
    ray_address: str | None = None
    robot: str = "panda"

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASK_NAMES)}")
        from wam_ros.robot import RobotProfile

        RobotProfile.load(self.robot)  # a missing or malformed profile fails here, not in every worker
        for key in ("episodes", "workers", "image_size", "control_hz"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < (0 if key == "episodes" else 1):
                raise ValueError(f"{key} must be an int >= {0 if key == 'episodes' else 1}, got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be an int >= 1 or None, got {self.max_steps!r}")
        if not isinstance(self.noise, (int, float)) or not 0.0 <= self.noise <= 0.2:
            raise ValueError(f"noise must be a std in [0, 0.2] rad, got {self.noise!r}")
        if not isinstance(self.beta, (int, float)) or not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be a probability in [0, 1], got {self.beta!r}")
        if not isinstance(self.replan, int) or self.replan < 1:
            raise ValueError(f"replan must be an int >= 1, got {self.replan!r}")
        if self.dagger is not None:
            if not Path(self.dagger).exists():
                raise ValueError(f"--dagger model {self.dagger} does not exist")
            self.dagger = str(self.dagger)
        if not 16 <= self.image_size <= 512:
            raise ValueError(f"image_size must be in 16..512, got {self.image_size}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.ray_address is not None and self.backend != "ray":
            raise ValueError("a Ray address needs --backend ray")


@dataclass
class CollectSummary:
    requested: int
    present_before: int
    written: int
    succeeded: int  # among the episodes written in this run
    errors: list[str]
    seconds: float

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.written if self.written else float("nan")


def n_instructions(task: str) -> int:
    from wam_ros.sim._tasks import TASKS

    return TASKS[task].n_instructions


def scene_seed(collect_seed: int, scene_index: int) -> int:
    """A well-mixed 31-bit seed for scene `scene_index` of a collection seeded `collect_seed`."""
    return int(np.random.SeedSequence([collect_seed, scene_index]).generate_state(1)[0] & 0x7FFFFFFF)


def episode_plan(cfg: CollectConfig, index: int) -> tuple[int, int | None, int]:
    """(scene seed, instruction index or None, scene index) of episode `index`."""
    if cfg.scene_per_episode:
        return scene_seed(cfg.seed, index), None, index
    k = n_instructions(cfg.task)
    return scene_seed(cfg.seed, index // k), index % k, index // k


# ------------------------------------------------------------------------------------------------ worker side
_ENV: Any = None


def _build(cfg: CollectConfig) -> tuple[Any, Any]:
    """The worker's env (one pybullet DIRECT client) and, for DAgger, the learner (torch backend, one thread)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from wam_ros.sim.tabletop import TabletopEnv

    learner = None
    if cfg.dagger is not None:
        from wam_ros.runtime.policy import load_policy

        # predict() resizes the frames it is given
        learner = load_policy(cfg.dagger, backend="torch", threads=1)
    env = TabletopEnv(
        robot=cfg.robot,
        task=cfg.task,
        image_size=cfg.image_size,
        control_hz=cfg.control_hz,
        max_steps=cfg.max_steps,
        randomize=cfg.randomize,
        wrist_camera=cfg.wrist_camera,
    )
    return env, learner


def _worker_init(cfg_dict: dict, parent_pid: int | None = None) -> None:
    """Runs first in each worker process (and once in-process for workers=1, without parent_pid)."""
    global _ENV
    if parent_pid is not None:
        die_with_parent(parent_pid)  # a SIGKILLed `wam collect` leaves no worker behind
    cfg = CollectConfig(**cfg_dict)
    _ENV = (cfg, *_build(cfg))


class _DaggerDriver:
    """The learner's chunked actions (as `wam eval` runs them), each step replaced by the expert's with probability
    beta. Built before the episode's reset; the chunk executor is made on the first step, once the instruction is
    known."""

    def __init__(self, learner: Any, env: Any, expert: Any, beta: float, replan: int, seed: int) -> None:
        self.learner, self.env, self.replan, self.chunks = learner, env, replan, None
        self.expert, self.beta, self.rng = expert, beta, np.random.default_rng(seed)
        self.expert_steps = self.steps = 0

    def __call__(self, obs: dict) -> np.ndarray:
        if self.chunks is None:
            from wam_ros.runtime.chunk_policy import ChunkPolicy
            from wam_ros.train.closed_loop import sim_cameras

            runner = ChunkPolicy(self.learner, replan=self.replan, instruction=self.env.instruction)
            self.chunks = sim_cameras(runner, self.env)  # a several-camera learner: --wrist-camera
        action = self.chunks(obs)  # every step: keeps the learner's frame history and chunk queue in step
        self.steps += 1
        if self.beta and self.rng.random() < self.beta:
            self.expert_steps += 1
            return self.expert(obs)
        return action


def _record(cfg: CollectConfig, env: Any, learner: Any, index: int) -> Episode:
    """Record episode `index` of the collection (the same episode on any worker and any backend)."""
    from wam_ros.sim.experts import make_expert
    from wam_ros.train.rollout import record_episode

    seed, instruction, scene_index = episode_plan(cfg, index)
    expert = make_expert(env)
    driver = (
        None
        if learner is None
        else _DaggerDriver(learner, env, expert, cfg.beta, cfg.replan, scene_seed(cfg.seed + 104729, index))
    )
    ep = record_episode(
        env,
        expert,
        seed=seed,
        instruction=instruction,
        producer="wam collect",
        extra_meta={
            "episode_index": index,
            "scene_index": scene_index,
            "scene_seed": seed,
            "collect_seed": cfg.seed,
            "expert": type(expert).__name__,
        },
        noise=cfg.noise,
        noise_seed=scene_seed(cfg.seed + 7919, index),
        driver=driver,
    )
    if driver is not None:
        ep.meta["dagger"] = {
            "model": cfg.dagger,
            "beta": cfg.beta,
            "replan": cfg.replan,
            "expert_steps": driver.expert_steps,
            "steps": driver.steps,
        }
    return ep


def _failure(index: int, exc: Exception) -> str:
    return f"episode {index}: {type(exc).__name__}: {exc}"


def _collect_one(index: int) -> tuple[int, bool | None, str]:
    """Record and write episode `index` (local backend). Returns (index, success, error message or "")."""
    cfg, env, learner = _ENV
    try:
        ep = _record(cfg, env, learner, index)
        write_episode(episode_path(cfg.out, index), ep)
        return index, ep.success, ""
    except Exception as exc:  # noqa: BLE001 - reported per episode; the run goes on and exits non-zero
        return index, None, _failure(index, exc)


# ------------------------------------------------------------------------------------------------ main side
def _prepare_out(cfg: CollectConfig) -> None:
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"output directory {out} is not writable: {exc.strerror or exc}") from exc
    manifest = out / MANIFEST
    settings = {k: v for k, v in asdict(cfg).items() if k in _RESUME_KEYS}
    if not manifest.is_file() and any(out.glob("episode_*.npz")):
        raise ValueError(
            f"{out} already holds episodes that `wam collect` did not make (no {MANIFEST}); use another --out"
        )
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest} is not valid JSON ({exc}); remove it or use another --out") from exc
        defaults = {
            "robot": "panda",
            "noise": 0.0,
            "dagger": None,
            "beta": 0.0,
            "replan": 4,
        }  # keys added after the first release: old manifests lack them
        diff = {
            k: (old.get(k, defaults.get(k)), v)
            for k, v in settings.items()
            if old.get(k, defaults.get(k)) != v
        }
        if diff:
            raise ValueError(
                f"{out} holds a collection made with other settings {diff} (old, new); "
                "use another --out or the same settings to resume"
            )
    atomic_write_text(
        manifest, json.dumps({**settings, "schema": "wam_ros episode v1"}, indent=1, sort_keys=True)
    )


def collect(cfg: CollectConfig, progress: bool = True) -> CollectSummary:
    """Fill `cfg.out` with episodes 0..episodes-1 (skipping those already complete)."""
    from tqdm import tqdm

    # the learner must drive this robot's joints: checked once, before any worker starts
    if cfg.dagger is not None:
        from wam_ros.robot import RobotProfile
        from wam_ros.runtime.policy import load_policy

        joints = list(load_policy(cfg.dagger, backend="torch", threads=1).spec.joint_names)
        robot = RobotProfile.load(cfg.robot)
        if joints != robot.joint_names:
            raise ValueError(
                f"--dagger model {cfg.dagger} drives joints {joints}, robot {robot.name!r} has {robot.joint_names}: "
                "pass the --robot the model was trained for"
            )
    _prepare_out(cfg)
    todo = [i for i in range(cfg.episodes) if not episode_path(cfg.out, i).is_file()]
    present = cfg.episodes - len(todo)
    written = succeeded = 0
    errors: list[str] = []
    start = time.perf_counter()
    bar = tqdm(
        total=cfg.episodes,
        initial=present,
        disable=not progress,
        unit="ep",
        desc=f"collect {cfg.task}",
        dynamic_ncols=True,
    )

    def account(result: tuple[int, bool | None, str]) -> None:
        nonlocal written, succeeded
        _, ok, err = result
        if err:
            errors.append(err)
            bar.write(f"wam collect: {err}", file=sys.stderr)
        else:
            written += 1
            succeeded += bool(ok)
        bar.update(1)
        bar.set_postfix(success=f"{succeeded}/{written}")

    def write(index: int, ep: Episode | None, err: str) -> None:
        """An episode recorded elsewhere (a Ray actor): written here, then counted."""
        if ep is not None:
            try:
                write_episode(episode_path(cfg.out, index), ep)
            except Exception as exc:  # noqa: BLE001 - reported per episode, as a worker's failure is
                ep, err = None, _failure(index, exc)
        account((index, None if ep is None else ep.success, err))

    try:
        if cfg.backend == "ray" and todo:
            from wam_ros.train.collect_ray import run_ray

            run_ray(cfg, todo, write)
        elif cfg.workers == 1 or len(todo) <= 1:
            _worker_init(asdict(cfg))
            for i in todo:
                account(_collect_one(i))
        elif todo:
            # spawn: fresh interpreters, no inherited pybullet or thread state. A ProcessPoolExecutor (unlike
            # multiprocessing.Pool, which hangs) reports a worker that died; what was written stays, a re-run resumes.
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(
                min(cfg.workers, len(todo)),
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(asdict(cfg), os.getpid()),
            ) as pool:
                futures = [pool.submit(_collect_one, i) for i in todo]
                try:
                    for future in as_completed(futures):
                        account(future.result())
                except BaseException as exc:  # Ctrl-C or a dead worker: drop the queue, keep what is written
                    pool.shutdown(wait=True, cancel_futures=True)
                    if isinstance(exc, BrokenProcessPool):
                        raise CollectError(
                            f"a worker process died ({exc}); {written} episodes were written this "
                            "run and are complete; re-run the same command to fill in the rest"
                        ) from exc
                    raise
    finally:
        bar.close()
        global _ENV
        if _ENV is not None:
            _ENV[1].close()
            _ENV = None
    return CollectSummary(cfg.episodes, present, written, succeeded, errors, time.perf_counter() - start)
