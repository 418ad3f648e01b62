"""Soak test of wam_node: 10 minutes at 30 Hz; resident memory growth and missed control cycles.

    .venv/bin/python benchmarks/ros_soak.py                           # 600 s, shipped model, onnxruntime CPU
    .venv/bin/python benchmarks/ros_soak.py --duration 60 --model /tmp/m/model.pt --backend torch   # a short check

wam_node runs in its own process (`wam bringup robot control_hz:=30`, timer-driven); the stand-in robot
(wam_ros.ros._robot_probe stream --light) publishes joint_states + a camera frame at 30 Hz in another and counts the
commands it receives. This process samples the node's resident memory (VmRSS) every few seconds. Memory growth is
measured from the end of a warm-up (default 60 s: allocator pools, DDS history and the stats windows fill up) to the
end. A missed control cycle is a timer period that started more than 1.5 periods after the previous one (the node's
own count, read from its /diagnostics). Goals: growth < 5 %, missed < 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "panda_tabletop"))
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of streaming")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the memory baseline")
    ap.add_argument("--rate", type=float, default=30.0, help="camera + control rate (Hz)")
    ap.add_argument(
        "--domain",
        type=int,
        default=200 + os.getpid() % 32,
        help="ROS_DOMAIN_ID for the run (default: one of 200-231 from the pid, away from other runs)",
    )
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    a = ap.parse_args()
    if not Path(a.model).exists():
        print(f"model not found: {a.model}")
        return 2
    env = dict(os.environ, ROS_DOMAIN_ID=str(a.domain))
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wam_ros.cli",
            "bringup",
            "robot",
            f"model:={a.model}",
            f"backend:={a.backend}",
            f"control_hz:={a.rate}",
            "surprise_hold:=false",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tmp = tempfile.mkdtemp()
    out = Path(tmp) / "soak.json"
    probe = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wam_ros.ros._robot_probe",
            "stream",
            "--light",
            "--out",
            str(out),
            "--rate",
            str(a.rate),
            "--duration",
            str(a.duration),
            "--stop",
            "0.5",
            "--match-timeout",
            "120",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    try:
        while probe.poll() is None:
            samples.append((time.monotonic() - t0, rss_mb(node.pid)))
            time.sleep(5.0)
        _, err = probe.communicate()
        if not out.exists():
            print(f"robot probe failed: {err[-2000:]}")
            return 1
        res = json.loads(out.read_text())
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
    diag = res.get("last_diag", {})
    ticks, missed = int(diag.get("ticks", 0)), int(diag.get("missed_cycles", 0))
    base = [m for t, m in samples if t >= a.warmup]
    figs = {
        "model": a.model,
        "backend": a.backend,
        "duration_s": a.duration,
        "rate_hz": a.rate,
        "published_frames": res.get("published"),
        "commands_received": res.get("n_commands"),
        "node_ticks": ticks,
        "missed_cycles": missed,
        "missed_pct": 100.0 * missed / ticks if ticks else float("nan"),
        "node_commands": int(diag.get("commands", 0)),
        "refused": int(diag.get("refused", 0)),
        "holds": int(diag.get("holds", 0)),
        "rss_start_mb": samples[0][1] if samples else float("nan"),
        "rss_baseline_mb": base[0] if base else float("nan"),
        "rss_end_mb": base[-1] if base else float("nan"),
        "rss_peak_mb": max(m for _, m in samples) if samples else float("nan"),
    }
    figs["rss_growth_pct"] = 100.0 * (figs["rss_end_mb"] - figs["rss_baseline_mb"]) / figs["rss_baseline_mb"]
    print(
        f"soak {a.duration:.0f} s at {a.rate:g} Hz ({a.backend}): node ticks {ticks}, missed cycles {missed} "
        f"({figs['missed_pct']:.2f} %, goal < 1 %), commands {figs['node_commands']} sent / "
        f"{figs['commands_received']} received, refused {figs['refused']}, holds {figs['holds']}"
    )
    print(
        f"resident memory: {figs['rss_baseline_mb']:.1f} MB after {a.warmup:.0f} s warm-up -> "
        f"{figs['rss_end_mb']:.1f} MB at the end: growth {figs['rss_growth_pct']:+.2f} % (goal < 5 %), "
        f"peak {figs['rss_peak_mb']:.1f} MB"
    )
    if a.json:
        Path(a.json).write_text(json.dumps({**figs, "rss_samples": samples}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
