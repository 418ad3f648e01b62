"""A campaign directory on disk: the per-writer row logs, their compaction into results.parquet, the lock.

    campaign.json          what defines the episodes (seed + FallConfig); a rerun with other values is refused
    logs/rows-*.jsonl      append-only logs, one per writer process: one JSON line per finished episode, one write()
    results.parquet        the compacted table: logs + previous table, deduplicated by episode index
    episodes/episode_*.npz recorded episodes (proprioception + camera), the project's episode format
    .lock                  flock held by the running campaign (released by the kernel, even on SIGKILL)

A torn last log line (a crash mid-write) is skipped on read. Compaction writes the table to a temporary file, fsyncs,
renames it into place (wam_ros.fileio.atomic_path), and only then deletes the logs it contains; an index in two places
collapses to one row.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wam_ros.fileio import atomic_path, atomic_write_text
from wam_ros.train.campaign.spec import (
    ADDED_COLUMNS,
    COLUMNS,
    RESULTS,
    CampaignError,
    CampaignSpec,
    identity_diff,
    schema,
    upgrade_identity,
)

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


class RowLog:
    """An append-only JSON-lines log owned by one writer process: one `write()` per row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, row: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(row, allow_nan=True) + "\n").encode())

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one log; a torn or corrupt line (a crash mid-write) is skipped, never fatal."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                log.warning("%s: ignoring a torn last line (%d bytes)", path, len(line))
                continue
            try:
                row = json.loads(line)
            except ValueError:
                log.warning("%s: ignoring a corrupt line", path)
                continue
            if isinstance(row, dict):
                for key, value in ADDED_COLUMNS.items():
                    row.setdefault(key, value)
                if set(COLUMNS) <= row.keys():
                    yield row


def log_paths(out: Path) -> list[Path]:
    return sorted((out / "logs").glob("rows-*.jsonl"))


def collect_rows(out: Path) -> tuple[dict[int, dict[str, Any]], list[Path]]:
    """All rows (table + logs), keyed by index, and the logs read."""
    import pyarrow.parquet as pq

    rows: dict[int, dict[str, Any]] = {}
    results = out / RESULTS
    if results.exists():
        for row in pq.read_table(results).to_pylist():
            for key, value in ADDED_COLUMNS.items():
                row.setdefault(key, value)
            rows[row["index"]] = row
    logs = log_paths(out)
    for path in logs:
        for row in read_log(path):
            rows.setdefault(int(row["index"]), {k: row[k] for k in COLUMNS})
    return rows, logs


def rows_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    ordered = sorted(rows, key=lambda r: r["index"])
    return pa.Table.from_pylist(ordered, schema=schema())


def load_results(out: str | Path) -> pa.Table:
    """The campaign's table (results.parquet merged with any logs not yet compacted), sorted by index. Read-only."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"campaign directory not found: {out}")
    rows, _ = collect_rows(out)
    return rows_table(rows.values())


def compact(out: str | Path) -> pa.Table:
    """Merge the logs into results.parquet (atomic replace), then delete those logs. Call with no writer running."""
    import pyarrow.parquet as pq

    out = Path(out)
    rows, logs = collect_rows(out)
    table = rows_table(rows.values())
    with atomic_path(out / RESULTS) as tmp:
        pq.write_table(table, tmp)
    for path in logs:
        path.unlink()
    return table


@contextlib.contextmanager
def claim(spec: CampaignSpec) -> Iterator[None]:
    """Hold the campaign directory's lock and check (or write) its identity for the duration of a run."""
    out = spec.out
    out.mkdir(parents=True, exist_ok=True)
    lock = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampaignError(f"another campaign is running in {out} (it holds {out / '.lock'})") from None
        meta_path = out / "campaign.json"
        if meta_path.exists():
            try:
                stored = upgrade_identity(json.loads(meta_path.read_text()))
            except ValueError as exc:
                raise CampaignError(
                    f"{meta_path} is not valid JSON ({exc}); move it away to start afresh"
                ) from exc
            if stored != spec.identity():
                diff = identity_diff(stored, spec.identity())
                raise CampaignError(
                    f"{out} holds a different campaign ({diff}); rerun with the same seed and "
                    f"settings to resume, or choose another --out"
                )
        else:
            if any(p.name != ".lock" for p in out.iterdir()):
                raise CampaignError(
                    f"{out} is not empty and holds no campaign.json: refusing to write into it"
                )
            atomic_write_text(meta_path, json.dumps(spec.identity(), indent=1, sort_keys=True))
        yield
    finally:
        os.close(lock)
