"""`wam data`: turn recorded bags into episodes and episodes into a LeRobot dataset.

    wam data import-bag BAG --out data/teleop [--rate 10 --tolerance 0.05 --image-size 64]   # BAG: a bag or a folder
    wam data import-bag BAG --out data/teleop --success --instruction "stack the red cube"  # label a foreign bag
    wam data repair-bag BAG          # complete bags left by a killed recorder (footer, index, metadata.yaml)
    wam data info BAG                # topics, counts, episode metadata of each bag (works on crashed bags too)
    wam data export-lerobot data/teleop --out data/teleop_lerobot [--robot-type panda]

Exit status 0 on success, 1 when nothing could be imported or a bag could not be read, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
    outcome = p.add_mutually_exclusive_group()
    outcome.add_argument(
        "--success",
        dest="success",
        action="store_const",
        const=True,
        default=None,
        help="label the episodes successful (default: the bag's wam.success; unset = failure, not trained on)",
    )
    outcome.add_argument(
        "--failure", dest="success", action="store_const", const=False, help="label the episodes failed"
    )
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


def run(args: argparse.Namespace) -> int:
    from wam_ros.data.rosbag import BagError

    try:
        return {"import-bag": _import, "repair-bag": _repair, "info": _info, "export-lerobot": _export}[
            args.data_command
        ](args)
    except (BagError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"wam data {args.data_command}: {exc}", file=sys.stderr)
        return 1


def _import(args: argparse.Namespace) -> int:
    from wam_ros.data.bag_import import ImportConfig, import_bags, reports_json

    cfg = ImportConfig(
        rate_hz=args.rate,
        tolerance_s=args.tolerance,
        image_size=args.image_size,
        camera_topic=args.camera_topic,
        joint_topic=args.joint_topic,
        command_topics=list(args.command_topic),
        robot=args.robot,
        min_steps=args.min_steps,
        instruction=args.instruction,
        success=args.success,
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
    from wam_ros.data.lerobot import export_lerobot

    paths = list_episodes(args.episodes)
    eps = [read_episode(p) for p in paths]
    if args.only_success:
        eps = [e for e in eps if e.success]
    if not eps:
        print(f"wam data export-lerobot: no episodes to export in {args.episodes}", file=sys.stderr)
        return 1
    info = export_lerobot(
        eps, args.out, robot_type=args.robot_type, camera=args.camera, overwrite=args.overwrite
    )
    print(
        f"wrote LeRobot {info['codebase_version']} dataset: {info['total_episodes']} episodes, "
        f"{info['total_frames']} frames, {info['fps']} fps -> {args.out}"
    )
    return 0
