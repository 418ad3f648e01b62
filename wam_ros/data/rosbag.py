"""rosbag2 bags with MCAP storage: a crash-tolerant writer of serialized messages, a reader, and repair after a crash.

    writer = BagWriter("bags/ep_0001", {"/joint_states": "sensor_msgs/msg/JointState"}, custom_data={"wam.task": "..."})
    writer.open(); writer.write("/joint_states", cdr_bytes, time.time_ns()); writer.close({"wam.success": "true"})
    for msg in iter_bag("bags/ep_0001"): ...      # BagMessage(topic, msgtype, log_time_ns, data)
    repair_bag("bags/ep_0001")                    # after `kill -9`: rewrite every readable message, fix metadata.yaml

A bag is a directory with `<name>_0.mcap` and `metadata.yaml` (rosbag2 format version 9, storage `mcap`): what
`ros2 bag info/play`, `rosbags` and `mcap` read. Messages are written as the serialized CDR bytes they arrived in (no
decode / re-encode). Crash tolerance: chunks are small and the file is flushed at least every `flush_period_s`, so after
SIGKILL the bag holds every message up to the last flushed chunk; metadata.yaml is written when the bag opens
(status `recording`) and rewritten at close. A killed bag has no MCAP footer, which indexed readers refuse; `iter_bag`
streams it anyway (mcap's NonSeekingReader) and `repair_bag` rewrites it into a complete bag (the original file is kept
as `*.mcap.crashed`).

Every file a bag's metadata.yaml names (`relative_file_paths`, `files[].path`) is confined to the bag directory
(`bag_file`): an absolute path, a `..` component or a symlink resolving outside the directory is a BagError, and
nothing outside is read or renamed. `BagSummary.sha256` identifies a bag by its messages (topic, type, log time, bytes,
in file order), so a bag keeps its identity through `repair_bag` and a copy elsewhere.

Core module: never imports rclpy.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml
from mcap.reader import NonSeekingReader
from mcap.writer import CompressionType, Writer

from wam_ros.fileio import atomic_write_text

ROSBAG2_VERSION = 9
EPISODE_METADATA = "wam_episode"  # name of the MCAP metadata record holding the custom data
_COMPRESSION = {"none": CompressionType.NONE, "lz4": CompressionType.LZ4, "zstd": CompressionType.ZSTD}


class BagError(RuntimeError):
    """A bag cannot be written or read; the message says which path and why."""


@cache
def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def message_definition(msgtype: str) -> tuple[str, str]:
    """(ros2msg definition text, RIHS01 hash) of a ROS 2 message type such as `sensor_msgs/msg/Image`."""
    store = _typestore()
    if msgtype not in store.types:
        raise BagError(
            f"unknown message type {msgtype!r}: expected a ROS 2 type like 'sensor_msgs/msg/Image'"
        )
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text, store.hash_rihs01(msgtype)


def deserialize(data: bytes, msgtype: str) -> Any:
    """Decode CDR bytes into a rosbags message object (fields as attributes, arrays as numpy).

    Trailing bytes after the message are ignored (rclpy's `serialize_message` appends up to 8 bytes of buffer
    padding, which rosbags' strict `deserialize_cdr` refuses).
    """
    store = _typestore()
    if len(data) < 4 or bytes(data[:2]) not in {b"\x00\x00", b"\x00\x01"}:
        raise BagError(
            f"{msgtype}: expected a CDR message (encapsulation 00 00 or 00 01), got {bytes(data[:4])!r}"
        )
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if data[1] else msgdef.deserialize_cdr_be
    try:
        message, _ = func(memoryview(data)[4:], 0, msgdef.cls, store)
    except (ValueError, UnicodeDecodeError, IndexError, struct.error) as exc:
        raise BagError(f"cannot decode a {msgtype} message ({len(data)} bytes): {exc}") from exc
    return message


def serialize(msg: Any, msgtype: str) -> bytes:
    return bytes(_typestore().serialize_cdr(msg, msgtype))


def _explain(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {path}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path} is not writable ({exc.strerror})"
    return f"{path}: {exc.strerror or exc}"


@dataclass
class BagWriter:
    """Writes one rosbag2/MCAP bag directory. Not thread-safe: call from one thread (or under a lock).

    Args:
        path: the bag directory to create (must not exist).
        topics: topic name -> ROS 2 message type, registered when the bag opens.
        custom_data: string key/values stored in metadata.yaml `custom_data` and in an MCAP metadata record.
        chunk_size: bytes per MCAP chunk; a crash loses at most the open chunk.
        flush_period_s: the file is flushed (open chunk closed) at least this often while messages arrive.
        compression: "none" (cheapest CPU), "lz4" or "zstd".
    """

    path: Path
    topics: dict[str, str]
    custom_data: dict[str, str] = field(default_factory=dict)
    chunk_size: int = 256 * 1024
    flush_period_s: float = 0.5
    compression: str = "none"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.compression not in _COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(_COMPRESSION)}, got {self.compression!r}")
        if self.chunk_size < 1024:
            raise ValueError(f"chunk_size must be >= 1024 bytes, got {self.chunk_size}")
        if self.flush_period_s <= 0:
            raise ValueError(f"flush_period_s must be > 0, got {self.flush_period_s}")
        if not self.topics:
            raise ValueError("a bag needs at least one topic")
        self.counts: dict[str, int] = {t: 0 for t in self.topics}
        self.start_ns: int | None = None
        self.end_ns: int = 0
        self._file = None
        self._writer: Writer | None = None
        self._channels: dict[str, int] = {}
        self._defs = {topic: message_definition(t) for topic, t in self.topics.items()}
        self._last_flush = 0.0

    @property
    def mcap_path(self) -> Path:
        return self.path / f"{self.path.name}_0.mcap"

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def open(self) -> BagWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
        except FileExistsError:
            raise BagError(f"bag directory {self.path} exists already; not overwriting it") from None
        except OSError as exc:
            raise BagError(f"cannot create bag directory: {_explain(exc, self.path)}") from exc
        try:
            self._file = open(self.mcap_path, "xb")  # noqa: SIM115 - closed in close()/abort()
            self._writer = Writer(
                self._file, chunk_size=self.chunk_size, compression=_COMPRESSION[self.compression]
            )
            self._writer.start(profile="ros2", library="wam_ros")
            schema_ids: dict[str, int] = {}
            for topic, msgtype in self.topics.items():
                text, _ = self._defs[topic]
                if msgtype not in schema_ids:
                    schema_ids[msgtype] = self._writer.register_schema(msgtype, "ros2msg", text.encode())
                self._channels[topic] = self._writer.register_channel(
                    topic,
                    "cdr",
                    schema_ids[msgtype],
                    {"offered_qos_profiles": "", "topic_type_hash": self._defs[topic][1]},
                )
            self._writer.add_metadata(EPISODE_METADATA, dict(self.custom_data))
            self._file.flush()
            self.write_metadata(status="recording")
        except OSError as exc:
            self._drop()
            raise BagError(f"cannot start bag: {_explain(exc, self.path)}") from exc
        self._last_flush = time.monotonic()
        return self

    def write(self, topic: str, data: bytes, log_time_ns: int) -> None:
        """Append one serialized message. Raises BagError (bag left readable up to the last flush) on I/O errors."""
        if self._writer is None:
            raise BagError(f"bag {self.path} is not open")
        channel = self._channels.get(topic)
        if channel is None:
            raise BagError(f"topic {topic!r} is not in bag {self.path} (topics: {sorted(self._channels)})")
        try:
            self._writer.add_message(channel, log_time_ns, data, log_time_ns)
            self.counts[topic] += 1
            self.start_ns = log_time_ns if self.start_ns is None else min(self.start_ns, log_time_ns)
            self.end_ns = max(self.end_ns, log_time_ns)
            now = time.monotonic()
            if now - self._last_flush >= self.flush_period_s:
                self.flush()
        except OSError as exc:
            self._drop()
            raise BagError(
                f"writing bag failed, recording stopped: {_explain(exc, self.path)}; every message "
                f"flushed before the error is kept (run `wam data repair-bag {self.path}`)"
            ) from exc

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()  # closes the open chunk and flushes the file object
            self._last_flush = time.monotonic()

    def close(self, custom_data: dict[str, str] | None = None, status: str = "complete") -> Path:
        """Finish the MCAP file (summary + footer), fsync, rewrite metadata.yaml. Returns the bag directory."""
        if self._writer is None:
            raise BagError(f"bag {self.path} is not open")
        self.custom_data.update(custom_data or {})
        try:
            self._writer.add_metadata(EPISODE_METADATA, dict(self.custom_data))
            self._writer.finish()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._writer, self._file = None, None
            self.write_metadata(status=status)
        except OSError as exc:
            self._drop()
            raise BagError(f"closing bag failed: {_explain(exc, self.path)}") from exc
        return self.path

    def abort(self) -> None:
        """Close the file without finishing it (used before deleting a discarded bag)."""
        self._drop()

    def _drop(self) -> None:
        f, self._file, self._writer = self._file, None, None
        if f is not None:
            with contextlib.suppress(OSError):  # the unflushed data is what the error was about
                f.close()

    def write_metadata(self, status: str) -> None:
        data = dict(self.custom_data, **{"wam.status": status})
        write_metadata_yaml(
            self.path,
            self.mcap_path.name,
            self.topics,
            self.counts,
            self.start_ns or 0,
            self.end_ns,
            data,
            {t: d[1] for t, d in self._defs.items()},
        )


def write_metadata_yaml(
    bag: Path,
    file_name: str,
    topics: dict[str, str],
    counts: dict[str, int],
    start_ns: int,
    end_ns: int,
    custom_data: dict[str, str],
    hashes: dict[str, str] | None = None,
) -> None:
    """Write a rosbag2 (version 9, storage mcap) metadata.yaml atomically."""
    hashes = hashes or {t: message_definition(m)[1] for t, m in topics.items()}
    total = sum(counts.values())
    duration = max(0, end_ns - start_ns) if total else 0
    info = {
        "version": ROSBAG2_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start_ns if total else 0},
        "message_count": total,
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": t,
                    "type": m,
                    "serialization_format": "cdr",
                    "offered_qos_profiles": [],
                    "type_description_hash": hashes[t],
                },
                "message_count": counts.get(t, 0),
            }
            for t, m in topics.items()
        ],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [file_name],
        "files": [
            {
                "path": file_name,
                "starting_time": {"nanoseconds_since_epoch": start_ns if total else 0},
                "duration": {"nanoseconds": duration},
                "message_count": total,
            }
        ],
        "custom_data": {k: str(v) for k, v in custom_data.items()},
        "ros_distro": "kilted",
    }
    atomic_write_text(
        bag / "metadata.yaml", yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False)
    )


# ---------------------------------------------------------------------------------------------------------- reading


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


@dataclass
class BagSummary:
    path: Path
    topics: dict[str, str]
    counts: dict[str, int]
    custom_data: dict[str, str]
    truncated: bool  # the file ended inside a chunk or without a footer (a crashed recording)
    sha256: str = (
        ""  # of every message read (topic, type, log time, bytes; file order); set when iteration ends
    )


def find_bags(root: str | Path) -> list[Path]:
    """Bag directories at or under `root` (a directory holding an .mcap file), sorted."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"bag path not found: {root}")
    if root.is_file():
        raise BagError(f"expected a bag directory (with metadata.yaml and .mcap files), got the file {root}")
    dirs = sorted({p.parent for p in root.rglob("*.mcap")})
    if not dirs:
        raise BagError(f"no MCAP bag found under {root} (expected directories holding *.mcap files)")
    return dirs


def bag_file(bag: Path, name: object, where: str) -> Path:
    """The file `name` (from metadata.yaml's `where`) inside the bag directory; BagError if it would lie outside.

    Refused: a non-string or empty name, an absolute path, a `..` component, and any path whose real location
    (symlinks followed) is outside the bag directory. Nothing is opened or renamed before this check.
    """
    bag = Path(bag)
    if not isinstance(name, str) or not name or "\0" in name:
        raise BagError(f"{bag / 'metadata.yaml'}: {where} entry {name!r} is not a file name")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or PureWindowsPath(name).drive:
        raise BagError(
            f"{bag / 'metadata.yaml'}: {where} entry {name!r} points outside the bag directory {bag}; "
            "refusing to read or rename it"
        )
    path = bag / rel
    real, root = path.resolve(), bag.resolve()
    if not real.is_relative_to(root):
        raise BagError(
            f"{bag / 'metadata.yaml'}: {where} entry {name!r} is a link to {real}, outside the bag directory "
            f"{bag}; refusing to read or rename it"
        )
    return path


def _mcap_files(bag: Path) -> list[Path]:
    """The bag's MCAP files: those metadata.yaml lists when they all exist, else the directory's *.mcap."""
    meta = read_metadata_yaml(bag) or {}
    listed = meta.get("relative_file_paths") or []
    entries = meta.get("files") or []
    if not isinstance(listed, list) or not isinstance(entries, list):
        raise BagError(f"{bag / 'metadata.yaml'}: relative_file_paths and files must be lists")
    files = [bag_file(bag, p, "relative_file_paths") for p in listed]
    for e in entries:  # not used for reading, but checked: a later writer must not follow them either
        bag_file(bag, e.get("path") if isinstance(e, dict) else e, "files[].path")
    if files and all(f.is_file() for f in files):
        return files
    files = [bag_file(bag, p.name, "the directory listing") for p in sorted(bag.glob("*.mcap"))]
    if not files:
        raise BagError(f"{bag} holds no .mcap file")
    return files


def read_metadata_yaml(bag: Path) -> dict | None:
    path = Path(bag) / "metadata.yaml"
    if not path.exists() and not path.is_symlink():
        return None
    bag_file(Path(bag), "metadata.yaml", "the bag directory")  # a metadata.yaml linking outside is not read
    try:
        info = yaml.safe_load(path.read_text())["rosbag2_bagfile_information"]
    except (yaml.YAMLError, KeyError, TypeError, ValueError, OSError) as exc:
        raise BagError(f"{path} is not a rosbag2 metadata file: {exc}") from exc
    if not isinstance(info, dict):
        raise BagError(f"{path}: rosbag2_bagfile_information must be a map, got {type(info).__name__}")
    return info


def iter_bag(bag: str | Path, summary: BagSummary | None = None) -> Iterator[BagMessage]:
    """Every readable message of a bag in file order; tolerates a crashed (footer-less, truncated) file.

    If `summary` is given it is filled in while iterating (topics, counts, custom data, truncated flag).
    """
    bag = Path(bag)
    summary = summary if summary is not None else BagSummary(bag, {}, {}, {}, False)
    digest = hashlib.sha256()
    for path in _mcap_files(bag):
        with open(path, "rb") as f:
            reader = NonSeekingReader(f, validate_crcs=False)
            it = reader.iter_messages(log_time_order=False)
            while True:
                try:
                    schema, channel, message = next(it)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - mcap raises several types on a truncated record
                    if f.tell() >= os.fstat(f.fileno()).st_size:  # the tail of a crashed file: stop there
                        summary.truncated = True
                        break
                    raise BagError(f"{path} is corrupt at byte {f.tell()}: {exc}") from exc
                msgtype = schema.name if schema is not None else ""
                summary.topics.setdefault(channel.topic, msgtype)
                summary.counts[channel.topic] = summary.counts.get(channel.topic, 0) + 1
                data = bytes(message.data)
                for part in (channel.topic.encode(), msgtype.encode(), data):
                    digest.update(len(part).to_bytes(8, "little") + part)
                digest.update(message.log_time.to_bytes(8, "little"))
                yield BagMessage(channel.topic, msgtype, message.log_time, data)
            if not _has_footer(path):
                summary.truncated = True
    summary.sha256 = digest.hexdigest()
    summary.custom_data.update(read_custom_data(bag))


def _has_footer(path: Path) -> bool:
    size = path.stat().st_size
    if size < 45:
        return False
    with open(path, "rb") as f:
        f.seek(-8, 2)
        return f.read(8) == b"\x89MCAP0\r\n"


def read_custom_data(bag: str | Path) -> dict[str, str]:
    """The episode's custom data: metadata.yaml, else the latest `wam_episode` MCAP metadata record."""
    bag = Path(bag)
    meta = read_metadata_yaml(bag) or {}
    custom = meta.get("custom_data") or {}
    if not isinstance(custom, dict):
        raise BagError(
            f"{bag / 'metadata.yaml'}: custom_data must be a map of strings, got {type(custom).__name__}"
        )
    data = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in custom.items()}
    from mcap.records import Metadata
    from mcap.stream_reader import StreamReader

    for path in _mcap_files(bag):
        with open(path, "rb") as f:
            try:
                for record in StreamReader(f, skip_magic=False).records:
                    if isinstance(record, Metadata) and record.name == EPISODE_METADATA:
                        data.update(record.metadata)
            except Exception:  # noqa: BLE001 - a truncated tail ends the scan; what came before is kept
                pass
    return data


def repair_bag(bag: str | Path) -> BagSummary:
    """Rewrite a crashed bag into a complete one (footer, index, metadata.yaml with counts).

    The original .mcap is kept beside it as `<name>.mcap.crashed`; nothing readable is lost. A bag that is already
    complete is left untouched and its summary returned. Only files inside the bag directory are read or renamed
    (`bag_file`): a metadata.yaml naming anything else is a BagError before any file is touched.
    """
    bag = Path(bag)
    files = _mcap_files(bag)
    custom = read_custom_data(bag)
    if all(_has_footer(p) for p in files) and custom.get("wam.status") != "recording":
        summary = BagSummary(bag, {}, {}, {}, False)
        for _ in iter_bag(bag, summary):
            pass
        return summary
    summary = BagSummary(bag, {}, {}, {}, False)
    messages = list(iter_bag(bag, summary))
    if not summary.topics:
        raise BagError(
            f"{bag}: no complete chunk could be read; nothing to repair (the original is untouched)"
        )
    tmp = bag.parent / f".{bag.name}.repair-{os.getpid()}"
    writer = BagWriter(tmp, dict(summary.topics), custom_data=custom)
    writer.open()
    for m in messages:
        writer.write(m.topic, m.data, m.log_time_ns)
    writer.close({"wam.repaired": "true"}, status="repaired")
    for path in files:
        os.replace(path, path.with_name(path.name + ".crashed"))
    final = bag / f"{bag.name}_0.mcap"
    os.replace(writer.mcap_path, final)
    os.replace(tmp / "metadata.yaml", bag / "metadata.yaml")
    tmp.rmdir()
    # metadata.yaml names the file by the temp bag's name: point it at the final one
    meta = read_metadata_yaml(bag)
    meta["relative_file_paths"] = [final.name]
    meta["files"][0]["path"] = final.name
    atomic_write_text(
        bag / "metadata.yaml", yaml.safe_dump({"rosbag2_bagfile_information": meta}, sort_keys=False)
    )
    summary.custom_data.update(custom)
    return summary


def summary_json(summary: BagSummary) -> str:
    return json.dumps(
        {
            "path": str(summary.path),
            "topics": summary.topics,
            "counts": summary.counts,
            "truncated": summary.truncated,
            "custom_data": summary.custom_data,
        },
        indent=2,
    )
