"""The campaign's traces: what the robot measured in every episode (IMU + joints at `trace_hz`), sharded Parquet.

    traces/part-<token>.parquet     compacted shards (zstd, byte-stream-split floats), one row per sample, sorted by
                                    (index, t) inside a shard; episodes are never split across shards
    traces/logs/traces-*.arrows     append-only Arrow IPC stream logs, one per writer process (like the row logs)

A writer appends one record batch per episode with one `write()`, BEFORE the episode's results row: a killed writer
loses at most the episode in flight, a torn last batch is skipped on read, and an episode whose row exists always has
its trace (an episode rerun after a crash may have written its trace twice: compaction keeps one copy per index).
Compaction (at the start and end of every run, under the campaign lock) streams the logs into new shards (atomic:
temporary file, fsync, rename), skipping indices already in a shard, then deletes the logs.

Columns (all float32 but `index` int64; FallTrace in wam_ros.sim.falls says what each one means):
    index, t, imu_qx, imu_qy, imu_qz, imu_qw, imu_wx, imu_wy, imu_wz, imu_ax, imu_ay, imu_az,
    joint_pos_00..J-1, joint_vel_00..J-1, joint_effort_00..J-1, tilt_deg, height
The schema's metadata holds `wam.joint_names` (JSON list), `wam.trace_hz`, `wam.robot`, `wam.trace_version`.
docs/falls_dataset.md is the datasheet.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wam_ros.fileio import atomic_path
from wam_ros.robot import IMU_COLUMNS
from wam_ros.sim.falls import FallSim, FallTrace

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

TRACE_VERSION = 1
TRACES_DIR = "traces"
PRIVILEGED_COLUMNS = ("tilt_deg", "height")
SHARD_EPISODES = 5000  # episodes per compacted shard (about 50 MB at 1 s per episode)


def joint_columns(kind: str, n_joints: int) -> list[str]:
    return [f"{kind}_{i:02d}" for i in range(n_joints)]


def trace_columns(n_joints: int) -> list[str]:
    """Every column but `index`, in file order."""
    cols = ["t", *IMU_COLUMNS]
    for kind in ("joint_pos", "joint_vel", "joint_effort"):
        cols += joint_columns(kind, n_joints)
    return [*cols, *PRIVILEGED_COLUMNS]


def _metadata(joint_names: list[str], trace_hz: int, robot: str) -> dict[str, str]:
    return {
        "wam.trace_version": str(TRACE_VERSION),
        "wam.joint_names": json.dumps(list(joint_names)),
        "wam.trace_hz": str(trace_hz),
        "wam.robot": robot,
    }


def trace_schema(joint_names: list[str], trace_hz: int, robot: str) -> pa.Schema:
    """The shards' schema: `index` + one float32 column per quantity (`trace_columns`)."""
    import pyarrow as pa

    fields = [pa.field("index", pa.int64())] + [
        pa.field(c, pa.float32()) for c in trace_columns(len(joint_names))
    ]
    return pa.schema(fields, metadata=_metadata(joint_names, trace_hz, robot))


def log_schema(joint_names: list[str], trace_hz: int, robot: str) -> pa.Schema:
    """The logs' schema: `index` + `samples`, fixed_size_list<float32>[C] in `trace_columns` order (one array per
    episode is cheap to append; compaction splits it into the shards' columns)."""
    import pyarrow as pa

    width = len(trace_columns(len(joint_names)))
    fields = [pa.field("index", pa.int64()), pa.field("samples", pa.list_(pa.float32(), width))]
    return pa.schema(fields, metadata=_metadata(joint_names, trace_hz, robot))


def sim_log_schema(sim: FallSim) -> pa.Schema:
    return log_schema(sim.profile["joint_names"], sim.cfg.trace_hz, sim.cfg.robot)


def trace_matrix(trace: FallTrace) -> np.ndarray:
    """(T, C) float32 in `trace_columns` order."""
    return np.concatenate(
        [
            trace.t[:, None],
            trace.orientation,
            trace.angular_velocity,
            trace.linear_acceleration,
            trace.joint_pos,
            trace.joint_vel,
            trace.joint_effort,
            trace.tilt_deg[:, None],
            trace.height[:, None],
        ],
        axis=1,
        dtype=np.float32,
    )


def log_batch(index: int, trace: FallTrace, schema: pa.Schema) -> pa.RecordBatch:
    """One episode as a log record batch (`log_schema`)."""
    import pyarrow as pa

    m = trace_matrix(trace)
    samples = pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1])
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(len(m), index, dtype=np.int64)), samples], schema=schema
    )


def shard_table(batches: list[pa.RecordBatch]) -> pa.Table:
    """Log record batches -> one table in the shards' schema (`trace_schema`), rows in batch order."""
    import pyarrow as pa

    meta = {k.decode(): v.decode() for k, v in batches[0].schema.metadata.items()}
    schema = trace_schema(json.loads(meta["wam.joint_names"]), int(meta["wam.trace_hz"]), meta["wam.robot"])
    index = np.concatenate([b.column(0).to_numpy() for b in batches])
    width = len(schema) - 1
    data = np.concatenate([b.column(1).values.to_numpy().reshape(-1, width) for b in batches])
    cols = [pa.array(index)] + [pa.array(np.ascontiguousarray(data[:, k])) for k in range(width)]
    return pa.Table.from_arrays(cols, schema=schema)


class _Buffer:
    """A file-like sink for pyarrow's stream writer that collects bytes until TraceLog writes them in one go."""

    closed = False

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def tell(self) -> int:
        return len(self.data)


class TraceLog:
    """An append-only Arrow IPC stream owned by one writer process: one `write()` per episode's record batch."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        import pyarrow as pa

        self.path, self.schema = path, schema
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._buf = _Buffer()
        self._writer = pa.ipc.new_stream(self._buf, schema)

    def append(self, index: int, trace: FallTrace) -> None:
        self._writer.write_batch(log_batch(index, trace, self.schema))  # first call: the schema message too
        os.write(self.fd, bytes(self._buf.data))
        self._buf.data.clear()

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1


def new_trace_log(out: Path, schema: pa.Schema, owner: str) -> TraceLog:
    return TraceLog(out / TRACES_DIR / "logs" / f"traces-{owner}-{uuid.uuid4().hex[:8]}.arrows", schema)


def read_trace_log(path: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of one log; a torn last batch (a crash mid-write) ends the log, never fatal."""
    import pyarrow as pa

    with pa.OSFile(str(path)) as f:
        try:
            reader = pa.ipc.open_stream(f)
        except (pa.ArrowInvalid, OSError) as exc:  # empty, or torn inside the schema message
            if path.stat().st_size:
                log.warning("%s: no readable stream (%s); ignored", path, exc)
            return
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as exc:
                log.warning("%s: ignoring a torn last batch (%s)", path, exc)
                return


def trace_log_paths(out: Path) -> list[Path]:
    return sorted((out / TRACES_DIR / "logs").glob("traces-*.arrows"))


def shard_paths(out: Path) -> list[Path]:
    return sorted((out / TRACES_DIR).glob("part-*.parquet"))


def shard_indices(out: Path) -> set[int]:
    """Episode indices present in the compacted shards."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    done: set[int] = set()
    for path in shard_paths(out):
        col = pq.read_table(path, columns=["index"]).column("index")
        done.update(pc.unique(col).to_pylist())
    return done


def _batch_index(batch: pa.RecordBatch) -> int:
    return int(batch.column(0)[0].as_py()) if batch.num_rows else -1


def compact_traces(out: str | Path, shard_episodes: int = SHARD_EPISODES) -> int:
    """Stream the trace logs into new Parquet shards (one copy per episode index), then delete the logs.

    Call with no writer running (the campaign lock). Returns the number of episodes added."""

    out = Path(out)
    logs = trace_log_paths(out)
    if not logs:
        return 0
    seen = shard_indices(out)
    pending: list[pa.RecordBatch] = []
    added = 0
    for path in logs:
        for batch in read_trace_log(path):
            idx = _batch_index(batch)
            if idx < 0 or idx in seen:
                continue
            seen.add(idx)
            pending.append(batch)
            if len(pending) >= shard_episodes:
                added += _write_shard(out, pending)
                pending = []
    if pending:
        added += _write_shard(out, pending)
    for path in logs:
        path.unlink()
    return added


def _write_shard(out: Path, batches: list[pa.RecordBatch]) -> int:
    import pyarrow.parquet as pq

    batches = sorted(batches, key=_batch_index)
    table = shard_table(batches)
    floats = [f.name for f in table.schema if f.name != "index"]
    path = out / TRACES_DIR / f"part-{_batch_index(batches[0]):09d}-{uuid.uuid4().hex[:8]}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=9,
            use_byte_stream_split=floats,
            use_dictionary=["index"],
            row_group_size=256 * 1024,
        )
    return len(batches)


@dataclass
class EpisodeTrace:
    """One episode's trace as arrays: `data` (T, C) float32 in `columns` order."""

    index: int
    columns: list[str]
    data: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.data[:, self.columns.index(name)]


def iter_traces(out: str | Path, indices: Iterable[int] | None = None) -> Iterator[EpisodeTrace]:
    """Every episode's trace (compacted shards, then logs not yet compacted; one copy per index), or only `indices`.

    Read-only (safe beside a running campaign: a log being written ends at its last whole batch)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = Path(out)
    wanted = None if indices is None else set(int(i) for i in indices)
    seen: set[int] = set()

    def emit(table) -> Iterator[EpisodeTrace]:
        cols = [c for c in table.column_names if c != "index"]
        idx = table.column("index").to_numpy()
        data = np.stack([table.column(c).to_numpy() for c in cols], axis=1).astype(np.float32, copy=False)
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        ends = np.r_[starts[1:], len(idx)]
        for a, b in zip(starts, ends, strict=True):
            i = int(idx[a])
            if i in seen or (wanted is not None and i not in wanted):
                continue
            seen.add(i)
            yield EpisodeTrace(i, cols, data[a:b])

    for path in shard_paths(out):
        pf = pq.ParquetFile(path)
        for rg in range(pf.num_row_groups):
            table = pf.read_row_group(rg)
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("index"), value_set=_int_array(wanted)))
                if table.num_rows == 0:
                    continue
            yield from emit(table)
    for path in trace_log_paths(out):
        for batch in read_trace_log(path):
            idx = _batch_index(batch)
            if idx in seen or (wanted is not None and idx not in wanted):
                continue
            yield from emit(shard_table([batch]))


def _int_array(values: set[int]):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.int64())


def trace_metadata(out: str | Path) -> dict[str, object]:
    """joint_names, trace_hz, robot of the campaign's traces (from the first shard or log); {} when there are none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    schema = None
    shards = shard_paths(out)
    if shards:
        schema = pq.read_schema(shards[0])
    else:
        for path in trace_log_paths(out):
            try:
                with pa.OSFile(str(path)) as f:
                    schema = pa.ipc.open_stream(f).schema
                break
            except (pa.ArrowInvalid, OSError):
                continue
    if schema is None or not schema.metadata:
        return {}
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    return {
        "joint_names": json.loads(meta.get("wam.joint_names", "[]")),
        "trace_hz": int(meta.get("wam.trace_hz", "0")),
        "robot": meta.get("wam.robot", ""),
        "trace_version": int(meta.get("wam.trace_version", "0")),
    }
