"""`wam sim`: run a tabletop task with its scripted expert; print the outcome, optionally save a GIF / the episode.

    wam sim --task reach --seed 0 --gif out.gif
    wam sim --task push --seed 3 --instruction 1 --image-size 128 --gif push.gif --episode /tmp/ep/episode_000000.npz
    wam sim --task reach --robot xarm6 --gif xarm.gif     # any robot profile the sim can build (docs/robots.md)

Never imports rclpy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def save_gif(path: str | Path, frames: np.ndarray, fps: int = 10, scale: int = 4) -> Path:
    """Write uint8 (T, H, W, 3) RGB frames as an animated GIF, each pixel enlarged `scale` times."""
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else frames
    images = [Image.fromarray(f) for f in big]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="reach", help="reach | push")
    parser.add_argument(
        "--robot", default="panda", help="robot profile: a name in config/robots or a .yaml path"
    )
    parser.add_argument("--seed", type=int, default=0, help="scene seed")
    parser.add_argument("--instruction", type=int, default=None, help="instruction index within the scene")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--control-hz", type=int, default=10)
    parser.add_argument("--wrist-camera", action="store_true")
    parser.add_argument("--no-randomize", action="store_true")
    parser.add_argument("--gif", default=None, help="save the camera frames as a GIF here")
    parser.add_argument(
        "--episode", default=None, help="also write the episode here (episode_<index:06d>.npz)"
    )


def run(args: argparse.Namespace) -> int:
    from wam_ros.data.episode import write_episode
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.tabletop import TabletopEnv
    from wam_ros.train.rollout import record_episode

    try:
        env = TabletopEnv(
            task=args.task,
            image_size=args.image_size,
            control_hz=args.control_hz,
            randomize=not args.no_randomize,
            wrist_camera=args.wrist_camera,
            robot=args.robot,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"wam sim: error: {exc}", file=sys.stderr)
        return 2
    try:
        ep = record_episode(
            env, make_expert(env), seed=args.seed, instruction=args.instruction, producer="wam sim"
        )
    except ValueError as exc:
        print(f"wam sim: error: {exc}", file=sys.stderr)
        return 2
    finally:
        env.close()
    print(
        f"wam sim: task={ep.task} seed={args.seed} instruction={ep.instruction!r} "
        f"success={ep.success} steps={len(ep) - 1}"
    )
    try:
        if args.gif:
            frames = ep.frames
            if "wrist_frames" in ep.extra:
                frames = np.concatenate([frames, ep.extra["wrist_frames"]], axis=2)
            print(f"wam sim: GIF written to {save_gif(args.gif, frames, fps=ep.meta['control_hz'])}")
        if args.episode:
            print(f"wam sim: episode written to {write_episode(args.episode, ep)}")
    except (OSError, ValueError) as exc:
        print(f"wam sim: error: cannot write output: {exc}", file=sys.stderr)
        return 2
    return 0 if ep.success else 1
