"""`wam data`: turn recorded bags into episodes and episodes into a LeRobot dataset.

    wam data import-bag BAG --out data/teleop [--rate 10 --tolerance 0.05 --image-size 64]   # BAG: a bag or a folder
    wam data import-bag BAG --out data/teleop --success --instruction "stack the red cube"  # label a foreign bag
    wam data repair-bag BAG          # complete bags left by a killed recorder (footer, index, metadata.yaml)
    wam data info BAG                # topics, counts, episode metadata of each bag (works on crashed bags too)
    wam data export-lerobot data/teleop --out data/teleop_lerobot [--robot-type panda] [--vcodec h264]
    wam data import-lerobot DATASET --robot panda --out data/imported [--camera top] [--success | --failure]

Exit status 0 on success, 1 when nothing could be imported or a bag could not be read, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wam_ros.cli import config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="<action>", required=True)
    p = sub.add_parser("import-bag", help="align bag(s) on a fixed rate and write episodes")
    p.add_argument("bag", type=Path, help="a bag directory, or a directory of bags (one episode each)")
    p.add_argument("--out", type=Path, required=True, help="episode directory (new episodes are appended)")
    p.add_argument("--rate", type=float, default=10.0, help="episode rate in Hz (default 10)")
    p.add_argument(
        "--tolerance", type=float, default=0.05, help="max gap (s) to a camera frame / joint state"
    )
    p.add_argument(
        "--image-size", type=int, default=0, help="resize frames to NxN (0 keeps the recorded size)"
    )
    p.add_argument("--camera-topic", default="/camera/image_raw")
    p.add_argument("--joint-topic", default="/joint_states")
    p.add_argument(
        "--command-topic", action="append", default=[], help="command topic(s); default: all of them"
    )
    p.add_argument("--robot", default="panda", help="robot profile when a bag does not name one")
    p.add_argument("--min-steps", type=int, default=2)
    p.add_argument(
        "--instruction", default=None, help="the episodes' instruction (default: the bag's wam.instruction)"
    )
    _add_outcome(p, "the episodes", "the bag's wam.success; unset = failure, not trained on")
    p = sub.add_parser("repair-bag", help="complete bags left by a killed recorder")
    p.add_argument("bag", type=Path, help="a bag directory, or a directory of bags")
    p = sub.add_parser("info", help="topics, message counts and episode metadata of bag(s)")
    p.add_argument("bag", type=Path)
    p = sub.add_parser("export-lerobot", help="write episodes as a LeRobot v3.0 dataset")
    p.add_argument("episodes", type=Path, help="episode directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--robot-type", default=None, help="info.json robot_type (default: the robot profile name)"
    )
    p.add_argument("--camera", default=None, help="camera key: observation.images.<camera>")
    p.add_argument("--only-success", action="store_true", help="export successful episodes only")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")
    p.add_argument(
        "--vcodec", default="libsvtav1", help="libsvtav1 (AV1, LeRobot's default) or h264 (default libsvtav1)"
    )
    p.add_argument(
        "--crf", type=int, default=30, help="video quality: lower is better and larger (default 30)"
    )
    p.add_argument("--gop", type=int, default=2, help="frames between keyframes (default 2, as LeRobot)")
    p = sub.add_parser("import-lerobot", help="turn a LeRobot v3.0 dataset into episodes")
    p.add_argument("dataset", type=Path, help="LeRobot dataset directory (meta/, data/, videos/)")
    p.add_argument(
        "--out", type=Path, required=True, help="episode directory (must be empty, or --overwrite)"
    )
    p.add_argument("--robot", required=True, help="robot profile whose joint names map state/action columns")
    p.add_argument("--camera", default=None, help="camera feature (observation.images.<camera>) for frames")
    p.add_argument("--wrist-camera", default=None, help="second camera feature, written as wrist_frames")
    p.add_argument("--state-key", default="observation.state")
    p.add_argument("--action-key", default="action")
    p.add_argument(
        "--velocity-key", default="observation.velocity", help="joint_vel source; absent: finite differences"
    )
    _add_outcome(p, "every episode", "as the dataset says; required when it says nothing")
    p.add_argument(
        "--task", default=None, help="meta.task of the episodes (default: the dataset folder name)"
    )
    p.add_argument("--image-size", type=int, default=0, help="resize frames to NxN (0 keeps the stored size)")
    p.add_argument(
        "--drop-unmapped",
        action="store_true",
        help="drop state/action names that are no joint of the profile",
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="max gap (s) data time -> video frame")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")


def _add_outcome(p: argparse.ArgumentParser, which: str, default: str) -> None:
    """--success | --failure (one or the other) -> args.success: True, False, or None (`default` applies)."""
    outcome = p.add_mutually_exclusive_group()
    outcome.add_argument(
        "--success",
        dest="success",
        action="store_const",
        const=True,
        default=None,
        help=f"label {which} successful (default: {default})",
    )
    outcome.add_argument(
        "--failure", dest="success", action="store_const", const=False, help=f"label {which} failed"
    )


def run(args: argparse.Namespace) -> int:
    from wam_ros.data.rosbag import BagError

    try:
        return {
            "import-bag": _import,
            "repair-bag": _repair,
            "info": _info,
            "export-lerobot": _export,
            "import-lerobot": _import_lerobot,
        }[args.data_command](args)
    except (BagError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"wam data {args.data_command}: {exc}", file=sys.stderr)
        return 1


def _import(args: argparse.Namespace) -> int:
    from wam_ros.data.bag_import import ImportConfig, import_bags, reports_json

    topics = list(args.command_topic)
    cfg = config_from_args(
        ImportConfig, args, rate_hz=args.rate, tolerance_s=args.tolerance, command_topics=topics
    )
    reports = import_bags(args.bag, args.out, cfg)
    print(reports_json(reports))
    for r in reports:
        for line in ([] if r.duplicate_of or not r.skipped else [f"skipped: {r.skipped}"]) + r.notes:
            print(f"{r.bag}: {line}", file=sys.stderr)
    written = [r for r in reports if r.episode and not r.duplicate_of]
    known = [r for r in reports if r.duplicate_of]
    before = f"; {len(known)} imported before ({sum(bool(r.relabelled) for r in known)} relabelled)"
    print(
        f"imported {len(written)}/{len(reports)} bags into {args.out}: "
        f"{sum(r.steps for r in written)} steps, {sum(r.missing_steps for r in reports)} missing steps, "
        f"{sum(r.duplicated_frames for r in reports)} duplicated and {sum(r.dropped_frames for r in reports)} "
        f"dropped frames{before if known else ''}",
        file=sys.stderr,
    )
    return 0 if written or known else 1


def _repair(args: argparse.Namespace) -> int:
    from wam_ros.data.rosbag import BagError, find_bags, repair_bag

    failed = 0
    for bag in find_bags(args.bag):
        try:
            s = repair_bag(bag)
        except BagError as exc:  # this bag is left as it was; the others are still repaired
            print(f"wam data repair-bag: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps({"bag": str(bag), "counts": s.counts, "was_truncated": s.truncated}))
    return 1 if failed else 0


def _info(args: argparse.Namespace) -> int:
    from wam_ros.data.rosbag import BagSummary, find_bags, iter_bag, summary_json

    for bag in find_bags(args.bag):
        s = BagSummary(bag, {}, {}, {}, False)
        for _ in iter_bag(bag, s):
            pass
        print(summary_json(s))
    return 0


def _export(args: argparse.Namespace) -> int:
    from wam_ros.data.episode import list_episodes, read_episode
    from wam_ros.data.lerobot import ExportConfig, export_lerobot
    from wam_ros.data.video import VideoEncoderConfig

    cfg = config_from_args(
        ExportConfig, args, video=VideoEncoderConfig(vcodec=args.vcodec, crf=args.crf, g=args.gop)
    )
    paths = list_episodes(args.episodes)
    if args.only_success:
        paths = [p for p in paths if read_episode(p).success]
    if not paths:
        print(f"wam data export-lerobot: no episodes to export in {args.episodes}", file=sys.stderr)
        return 1
    info = export_lerobot(paths, args.out, cfg)
    print(
        f"wrote LeRobot {info['codebase_version']} dataset: {info['total_episodes']} episodes, "
        f"{info['total_frames']} frames, {info['fps']} fps -> {args.out}"
    )
    return 0


def _import_lerobot(args: argparse.Namespace) -> int:
    from wam_ros.data.lerobot import ImportConfig, import_lerobot

    cfg = config_from_args(ImportConfig, args, tolerance_s=args.tolerance)
    summary = import_lerobot(args.dataset, args.out, cfg)
    print(json.dumps(summary))
    print(
        f"imported {summary['episodes']} episodes ({summary['frames']} frames, {len(summary['skipped'])} skipped) "
        f"from {args.dataset} into {args.out}",
        file=sys.stderr,
    )
    return 0
