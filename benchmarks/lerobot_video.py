"""What LeRobot-style video costs and keeps: `wam data export-lerobot` codecs side by side on rendered sim frames.

    .venv/bin/python benchmarks/lerobot_video.py                      # 20 reach episodes, 64x64
    .venv/bin/python benchmarks/lerobot_video.py --episodes 10 --image-size 128

Also prints the PSNR ceiling of the pixel format alone (RGB -> yuv420p -> RGB, no codec). Episodes come from the real sim (TabletopEnv, scripted expert, third-person camera). For each encoder setting the
episodes are exported (export_lerobot) and imported back (import_lerobot). Rows: PSNR of every imported frame against
its source (p50, p1 = the worst 1 %, min), video bytes per frame, and per episode the export and import wall time
(p50, p99; the export includes parquet and stats, the import the decode). Record the output in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (codec, crf, GOP): LeRobot's default first; g=1 makes every frame a keyframe (no inter-frame prediction)
SETTINGS = [
    ("libsvtav1", 30, 2),
    ("libsvtav1", 20, 2),
    ("libsvtav1", 30, 1),
    ("h264", 30, 2),
    ("h264", 20, 2),
]


def sim_episodes(n: int, size: int):
    """n reach episodes of the scripted expert, recorded as `wam sim` / `wam collect` record them."""
    from wam_ros.sim.experts import make_expert
    from wam_ros.sim.tabletop import TabletopEnv
    from wam_ros.train.rollout import record_episode

    env = TabletopEnv(task="reach", image_size=size)
    try:
        return [record_episode(env, make_expert(env), seed=seed) for seed in range(n)]
    finally:
        env.close()


def main() -> int:
    from wam_ros.data.episode import list_episodes, read_episode
    from wam_ros.data.lerobot import ExportConfig, ImportConfig, export_lerobot, import_lerobot
    from wam_ros.data.video import VideoEncoderConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=64)
    a = ap.parse_args()

    t0 = time.perf_counter()
    eps = sim_episodes(a.episodes, a.image_size)
    frames = sum(len(e) for e in eps)
    print(
        f"{len(eps)} reach episodes, {frames} frames of {a.image_size}x{a.image_size} ({time.perf_counter() - t0:.0f} s)"
    )
    import av

    every = np.concatenate([e.frames for e in eps])
    back = np.stack(
        [
            av.VideoFrame.from_ndarray(f, format="rgb24")
            .reformat(format="yuv420p")
            .to_ndarray(format="rgb24")
            for f in every
        ]
    )
    mse = ((back.astype(np.float64) - every) ** 2).mean(axis=(1, 2, 3))
    ceiling = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))
    print(
        f"yuv420p alone (no codec): PSNR p50 {np.median(ceiling):.1f} / p1 {np.percentile(ceiling, 1):.1f} dB"
    )
    print(
        "| codec | crf | g | PSNR p50 / p1 / min (dB) | bytes/frame | export ms/episode p50 / p99 | import ms/episode p50 / p99 |"
    )
    print("|---|---|---|---|---|---|---|")
    work = Path(tempfile.mkdtemp(prefix="lerobot_video_"))
    try:
        for vcodec, crf, gop in SETTINGS:
            cfg = ExportConfig(video=VideoEncoderConfig(vcodec=vcodec, crf=crf, g=gop), overwrite=True)
            export_ms, import_ms = [], []
            for i, ep in enumerate(eps):  # one episode per dataset: per-episode wall times
                t = time.perf_counter()
                export_lerobot([ep], work / f"lr{i}", cfg)
                export_ms.append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                import_lerobot(work / f"lr{i}", work / f"ep{i}", ImportConfig(overwrite=True))
                import_ms.append((time.perf_counter() - t) * 1e3)
            video_bytes = sum(p.stat().st_size for p in work.glob("lr*/videos/**/*.mp4"))
            psnr = []
            for i, ep in enumerate(eps):
                back = read_episode(list_episodes(work / f"ep{i}")[0]).frames.astype(np.float64)
                mse = ((back - ep.frames) ** 2).mean(axis=(1, 2, 3))
                psnr += list(10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)))
            p = np.array(psnr)
            ex, im = np.array(export_ms), np.array(import_ms)
            print(
                f"| {vcodec} | {crf} | {gop} | {np.median(p):.1f} / {np.percentile(p, 1):.1f} / {p.min():.1f} | "
                f"{video_bytes / frames:.0f} | {np.median(ex):.1f} / {np.percentile(ex, 99):.1f} | "
                f"{np.median(im):.1f} / {np.percentile(im, 99):.1f} |"
            )
            for d in work.iterdir():
                shutil.rmtree(d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
