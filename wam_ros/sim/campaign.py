"""The fall campaign runner: N fall episodes over local worker processes or a Ray cluster, resumable, loss-free.

    >>> spec = CampaignSpec(out="runs/falls", episodes=100_000, seed=0, workers=2)
    >>> summary = run_campaign(spec)          # or `wam campaign falls --episodes 100000 --workers 2 --out runs/falls`
    >>> table = load_results("runs/falls")    # pyarrow.Table, one row per episode, sorted by `index`

Layout of the output directory:

    campaign.json          what defines the episodes (seed + FallConfig); a rerun with other values is refused
    logs/rows-*.jsonl      append-only logs, one per writer process: one JSON line per finished episode, one write()
    results.parquet        the compacted table: logs + previous table, deduplicated by episode index
    episodes/episode_*.npz recorded episodes (proprioception + camera), the project's episode format
    .lock                  flock held by the running campaign (released by the kernel, even on SIGKILL)

Durability: a worker writes each finished episode's row with one `write()` to its own O_APPEND log, after any
recorded episode file (atomic) is in place. A killed process loses only the episode it was running; a torn last line is
skipped on read. Resume = every index in results.parquet or any log is done; only the others run. Compaction writes the
table to a temporary file, fsyncs, renames it into place, and only then deletes the logs it contains; duplicates (an
index in two places) collapse to one row. Episodes are deterministic, so a rerun row equals the lost one bit for bit.

Local backend: one process per worker, each with its own PyBullet world and its own pipe to the parent (no shared
queue whose lock a killed worker could hold). The parent hands out small blocks of indices; if a worker dies, the
parent reads that worker's log, re-queues the block's indices not in it and starts a replacement worker.
Ray backend: one actor per worker (`max_restarts`, `max_task_retries` let Ray redo a block whose actor died); the
driver writes the rows it receives to its own log, so a row is written exactly once.

Core module: never imports rclpy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import re
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wam_ros.data.episode import episode_path, write_episode
from wam_ros.sim.falls import FallConfig, FallSim, sample_params

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

CAMPAIGN_VERSION = 1
RESULTS = "results.parquet"
BACKENDS = ("local", "ray")

# The results table, one row per episode (pyarrow type names; pyarrow is imported lazily: workers never need it).
COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("index", "int64"),
    ("seed", "int64"),
    ("push_force", "float64"),
    ("push_yaw", "float64"),
    ("push_start", "float64"),
    ("push_duration", "float64"),
    ("push_impulse", "float64"),
    ("slope_deg", "float64"),
    ("slope_yaw", "float64"),
    ("friction", "float64"),
    ("mass_scale", "float64"),
    ("motor_strength", "float64"),
    ("fell", "bool_"),
    ("recovered", "bool_"),
    ("outcome", "string"),
    ("fall_time", "float64"),
    ("time_to_fall", "float64"),
    ("max_tilt_deg", "float64"),
    ("min_height", "float64"),
    ("final_tilt_deg", "float64"),
    ("final_height", "float64"),
    ("sim_time", "float64"),
    ("steps", "int64"),
    ("recorded", "bool_"),
)
COLUMNS = tuple(name for name, _ in COLUMN_TYPES)


def schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMN_TYPES])


class CampaignError(RuntimeError):
    """The campaign cannot run as asked (bad output directory, mismatching campaign, too many worker deaths)."""


# -- which episodes to record ---------------------------------------------------------------------------------------
_RECORD_TERM = re.compile(r"^(?:(\d+)|(\d+)-(\d+)|every:(\d+))$")


@dataclass(frozen=True)
class RecordSelection:
    """Episodes to record with traces and camera frames: comma-separated `I`, `A-B` (inclusive), `every:K`.

    "" selects none (physics only, the default); "0-9,every:1000" selects 0..9 and every 1000th episode.
    """

    spec: str = ""
    ranges: tuple[tuple[int, int], ...] = field(default=(), init=False)
    every: tuple[int, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        ranges, every = [], []
        for term in filter(None, (t.strip() for t in self.spec.split(","))):
            m = _RECORD_TERM.match(term)
            if not m:
                raise ValueError(
                    f"--record term {term!r} not understood; expected I, A-B or every:K "
                    f"(e.g. '0-9,every:1000')"
                )
            if m.group(1):
                ranges.append((int(m.group(1)), int(m.group(1))))
            elif m.group(2):
                a, b = int(m.group(2)), int(m.group(3))
                if a > b:
                    raise ValueError(f"--record range {term!r} is empty: start {a} > end {b}")
                ranges.append((a, b))
            else:
                if int(m.group(4)) < 1:
                    raise ValueError(f"--record every:K needs K >= 1, got {term!r}")
                every.append(int(m.group(4)))
        object.__setattr__(self, "ranges", tuple(ranges))
        object.__setattr__(self, "every", tuple(every))

    def __contains__(self, index: int) -> bool:
        return any(a <= index <= b for a, b in self.ranges) or any(index % k == 0 for k in self.every)


# -- the campaign's definition ----------------------------------------------------------------------------------------
@dataclass
class CampaignSpec:
    """One campaign run.

    Args:
        out: output directory (created); rerunning with the same directory resumes.
        episodes: run episodes 0..episodes-1 (a rerun with more extends the campaign).
        seed: campaign seed; episode parameters are a pure function of (seed, index, fall config).
        workers: local processes, or Ray actors.
        backend: "local" or "ray".
        ray_address: Ray cluster address (ray.init(address=...)); None starts a local instance with `workers` CPUs.
        record: which episodes to record (RecordSelection syntax).
        block: indices handed to a worker at a time (small: a dead Ray actor's block is redone).
        fall: the episode definition (robot, rates, thresholds, randomisation ranges).
        max_restarts: local worker deaths tolerated before the run stops with an error.
    """

    out: str | Path
    episodes: int
    seed: int = 0
    workers: int = 2
    backend: str = "local"
    ray_address: str | None = None
    record: str = ""
    block: int = 16
    fall: FallConfig = field(default_factory=FallConfig)
    max_restarts: int = 8

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes must be an integer >= 1, got {self.episodes!r}")
        if self.episodes > 100_000_000:
            raise ValueError(f"episodes must be <= 100,000,000, got {self.episodes}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 4096:
            raise ValueError(f"workers must be an integer in [1, 4096], got {self.workers!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.ray_address and self.backend != "ray":
            raise ValueError(
                f"ray_address={self.ray_address!r} given but backend is {self.backend!r}; use backend='ray'"
            )
        if not isinstance(self.block, int) or self.block < 1:
            raise ValueError(f"block must be an integer >= 1, got {self.block!r}")
        RecordSelection(self.record)  # validates
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out must be a directory, but {self.out} is a file")

    def identity(self) -> dict[str, Any]:
        """What defines the episodes: a rerun in the same directory must match it."""
        ident = {"version": CAMPAIGN_VERSION, "seed": self.seed, "fall": self.fall.to_dict()}
        return json.loads(json.dumps(ident))  # as stored: tuples become lists


@dataclass
class CampaignSummary:
    out: Path
    episodes: int  # rows in the table (0..N-1 once each when complete)
    ran: int  # episodes run by this call
    falls: int
    wall_s: float
    worker_deaths: int
    complete: bool

    @property
    def fall_rate(self) -> float:
        return self.falls / self.episodes if self.episodes else math.nan

    @property
    def eps_per_s(self) -> float:
        return self.ran / self.wall_s if self.wall_s > 0 else math.nan


# -- one episode -> one row -----------------------------------------------------------------------------------------
def run_episode_row(sim: FallSim, seed: int, index: int, record: bool) -> tuple[dict[str, Any], Any]:
    """Run episode `index` and return (row, episode or None). The row has exactly the COLUMNS."""
    params = sample_params(seed, index, sim.cfg)
    out = sim.run(params, record=record)
    result, episode = out if record else (out, None)
    row = {**asdict(params), "push_impulse": params.push_impulse, **asdict(result), "recorded": record}
    return {k: row[k] for k in COLUMNS}, episode


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
            if isinstance(row, dict) and set(COLUMNS) <= row.keys():
                yield row


def _log_paths(out: Path) -> list[Path]:
    return sorted((out / "logs").glob("rows-*.jsonl"))


def _collect(out: Path) -> tuple[dict[int, dict[str, Any]], list[Path]]:
    """All rows (table + logs), keyed by index, and the logs read."""
    import pyarrow.parquet as pq

    rows: dict[int, dict[str, Any]] = {}
    results = out / RESULTS
    if results.exists():
        for row in pq.read_table(results).to_pylist():
            rows[row["index"]] = row
    logs = _log_paths(out)
    for path in logs:
        for row in read_log(path):
            rows.setdefault(int(row["index"]), {k: row[k] for k in COLUMNS})
    return rows, logs


def _table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    ordered = sorted(rows, key=lambda r: r["index"])
    return pa.Table.from_pylist(ordered, schema=schema())


def load_results(out: str | Path) -> pa.Table:
    """The campaign's table (results.parquet merged with any logs not yet compacted), sorted by index. Read-only."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"campaign directory not found: {out}")
    rows, _ = _collect(out)
    return _table(rows.values())


def compact(out: str | Path) -> pa.Table:
    """Merge the logs into results.parquet (atomic replace), then delete those logs. Call with no writer running."""
    out = Path(out)
    rows, logs = _collect(out)
    import pyarrow.parquet as pq

    table = _table(rows.values())
    tmp = out / f".{RESULTS}.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out / RESULTS)
    _fsync_dir(out)
    for path in logs:
        path.unlink()
    return table


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- campaign directory: identity + lock -------------------------------------------------------------------------------
@contextlib.contextmanager
def _claim(spec: CampaignSpec) -> Iterator[None]:
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
                stored = json.loads(meta_path.read_text())
            except ValueError as exc:
                raise CampaignError(
                    f"{meta_path} is not valid JSON ({exc}); move it away to start afresh"
                ) from exc
            if stored != spec.identity():
                diff = _diff(stored, spec.identity())
                raise CampaignError(
                    f"{out} holds a different campaign ({diff}); rerun with the same seed and "
                    f"settings to resume, or choose another --out"
                )
        else:
            if any(p.name != ".lock" for p in out.iterdir()):
                raise CampaignError(
                    f"{out} is not empty and holds no campaign.json: refusing to write into it"
                )
            tmp = meta_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(spec.identity(), indent=1, sort_keys=True))
            os.replace(tmp, meta_path)
        yield
    finally:
        os.close(lock)


def _diff(stored: dict, wanted: dict, prefix: str = "") -> str:
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            return f"{prefix}{key}: stored {a!r}, asked {b!r}"
    return "no difference"


def read_campaign_config(out: str | Path) -> dict[str, Any]:
    path = Path(out) / "campaign.json"
    if not path.is_file():
        raise FileNotFoundError(f"no campaign in {out}: {path} not found")
    return json.loads(path.read_text())


# -- the runner ------------------------------------------------------------------------------------------------------
Progress = Callable[[int, bool], None]  # (index, fell) after each finished episode


def run_campaign(spec: CampaignSpec, progress: bool = True) -> CampaignSummary:
    """Run (or resume) the campaign; returns when every episode 0..episodes-1 has a row. Ctrl-C stops cleanly."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with _claim(spec):
        compact(spec.out)  # fold logs of an interrupted run into the table: resume = indices in it
        done = set(pq.read_table(spec.out / RESULTS, columns=["index"]).column("index").to_pylist())
        pending = [i for i in range(spec.episodes) if i not in done]
        prior = sum(1 for i in done if i < spec.episodes)
        prior_falls = _count_falls(spec.out, spec.episodes)
        bar = _Bar(spec.episodes, prior, prior_falls, enabled=progress)
        t0 = time.perf_counter()
        deaths = 0
        try:
            if pending:
                runner = _run_local if spec.backend == "local" else _run_ray
                deaths = runner(spec, pending, bar.update)
        finally:
            bar.close()
            wall = time.perf_counter() - t0
            table = compact(spec.out)
        in_range = table.filter(pc.less(table.column("index"), spec.episodes))
        falls = int(pc.sum(in_range.column("fell").cast(pa.int64())).as_py() or 0)
        complete = in_range.num_rows == spec.episodes
        if not complete:
            raise CampaignError(
                f"campaign incomplete: {in_range.num_rows} of {spec.episodes} episodes have a row; "
                f"rerun the same command to continue"
            )
        return CampaignSummary(spec.out, in_range.num_rows, bar.ran, falls, wall, deaths, complete)


def _count_falls(out: Path, n: int) -> int:
    import pyarrow.parquet as pq

    t = pq.read_table(out / RESULTS, columns=["index", "fell"])
    return sum(
        1
        for i, f in zip(t.column("index").to_pylist(), t.column("fell").to_pylist(), strict=True)
        if f and i < n
    )


class _Bar:
    """tqdm progress with live episodes/s (this run) and the fall rate (whole campaign)."""

    def __init__(self, total: int, done: int, falls: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.falls, self.seen, self.ran = falls, done, 0
        self.t0 = time.perf_counter()
        self.bar = tqdm(
            total=total,
            initial=done,
            unit="ep",
            desc="falls",
            disable=not enabled,
            mininterval=0.5,
            smoothing=0.05,
            dynamic_ncols=True,
        )
        self.last = 0.0

    def update(self, index: int, fell: bool) -> None:
        self.ran += 1
        self.seen += 1
        self.falls += bool(fell)
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last > 0.5:
            self.last = now
            rate = self.ran / max(now - self.t0, 1e-9)
            self.bar.set_postfix_str(
                f"{rate:.1f} eps/s, fall rate {self.falls / self.seen:.1%}", refresh=False
            )

    def close(self) -> None:
        self.bar.close()


# -- local processes ---------------------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when its parent dies (so killing the run never leaves orphans writing rows)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_log_name(pid: int, token: str) -> str:
    return f"rows-{pid}-{token}.jsonl"  # the worker's pid is in the name: tools (and tests) can find who wrote it


def _worker_main(conn: Connection, out: str, seed: int, fall: dict, record: str, token: str) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops its workers
    if os.getppid() == 1:
        return
    selection = RecordSelection(record)
    sim = FallSim(FallConfig(**fall))
    rows = RowLog(Path(out) / "logs" / _worker_log_name(os.getpid(), token))
    try:
        conn.send(("ready",))
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            if msg[0] == "stop":
                return
            for index in msg[1]:
                row, episode = run_episode_row(sim, seed, index, index in selection)
                if episode is not None:
                    write_episode(episode_path(Path(out) / "episodes", index), episode)
                rows.append(row)
                conn.send(("row", index, row["fell"]))
            conn.send(("ready",))
    finally:
        rows.close()
        sim.close()


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    log_path: Path
    block: list[int] = field(default_factory=list)
    done: set[int] = field(default_factory=set)


def _run_local(spec: CampaignSpec, pending: list[int], on_row: Progress) -> int:
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no inherited threads or PyBullet state
    blocks = deque(pending[i : i + spec.block] for i in range(0, len(pending), spec.block))
    workers: dict[int, _Worker] = {}
    deaths = 0
    fall = spec.fall.to_dict()

    def start() -> None:
        parent, child = ctx.Pipe(duplex=True)
        token = uuid.uuid4().hex[:8]
        proc = ctx.Process(
            target=_worker_main, args=(child, str(spec.out), spec.seed, fall, spec.record, token), daemon=True
        )
        proc.start()
        child.close()
        workers[proc.sentinel] = _Worker(proc, parent, spec.out / "logs" / _worker_log_name(proc.pid, token))

    for _ in range(min(spec.workers, len(blocks))):
        start()
    try:
        while workers:
            by_conn = {w.conn: w for w in workers.values()}
            for ready in wait([*by_conn, *workers], timeout=1.0):
                w = by_conn.get(ready) or workers.get(ready)
                if w is None or w.proc.sentinel not in workers:
                    continue
                if not _drain(w, blocks, on_row):  # EOF: the worker is gone
                    w.proc.join(timeout=5)
                    del workers[w.proc.sentinel]
                    if w.proc.exitcode != 0 or w.block:
                        deaths += 1
                        _requeue(w, blocks)
                        log.warning(
                            "worker pid %s died (exit code %s); %d episodes re-queued",
                            w.proc.pid,
                            w.proc.exitcode,
                            len(w.block),
                        )
                        if deaths > spec.max_restarts:
                            where = f", in episodes {w.block[0]}..{w.block[-1]}" if w.block else ""
                            raise CampaignError(
                                f"{deaths} worker deaths (limit {spec.max_restarts}); the last "
                                f"exited with code {w.proc.exitcode}{where}. Rows so far are kept; "
                                f"rerun to continue"
                            )
                    if blocks and len(workers) < spec.workers:
                        start()
    finally:
        for w in workers.values():
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(("stop",))
        for w in workers.values():
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout=5)
    return deaths


def _drain(w: _Worker, blocks: deque, on_row: Progress) -> bool:
    """Handle every message waiting from one worker; False once its pipe is closed."""
    try:
        while w.conn.poll():
            msg = w.conn.recv()
            if msg[0] == "row":
                w.done.add(msg[1])
                on_row(msg[1], msg[2])
            elif msg[0] == "ready":
                w.block, w.done = (blocks.popleft(), set()) if blocks else ([], set())
                w.conn.send(("block", w.block) if w.block else ("stop",))
    except (EOFError, OSError, pickle.UnpicklingError):  # a worker killed mid-send
        return False
    return w.proc.is_alive() or w.conn.poll()


def _requeue(w: _Worker, blocks: deque) -> None:
    """Re-queue the dead worker's unfinished indices: those of its block with no row in its log."""
    written = {int(r["index"]) for r in read_log(w.log_path)} if w.log_path.exists() else set()
    missing = [i for i in w.block if i not in written]
    w.block = missing
    if missing:
        blocks.appendleft(missing)


# -- Ray -------------------------------------------------------------------------------------------------------------
class _RayFallWorker:
    """A Ray actor holding one PyBullet world; runs blocks of episodes and returns their rows (+ recorded episodes)."""

    def __init__(self, seed: int, fall: dict, record: str) -> None:
        self.seed = seed
        self.selection = RecordSelection(record)
        self.sim = FallSim(FallConfig(**fall))

    def run_block(self, indices: list[int]) -> list[tuple[dict[str, Any], Any]]:
        return [run_episode_row(self.sim, self.seed, i, i in self.selection) for i in indices]


def _check_reachable(address: str) -> None:
    """Refuse an unreachable HOST:PORT at once (ray.init itself retries for minutes). "auto" is left to Ray."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise CampaignError(f"--ray-address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise CampaignError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc


def _run_ray(spec: CampaignSpec, pending: list[int], on_row: Progress) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise CampaignError(f"--backend ray needs the `ray` package ({exc}); pip install ray") from exc

    started_here = not ray.is_initialized()
    if started_here:
        if spec.ray_address:
            _check_reachable(spec.ray_address)
        try:
            if spec.ray_address:
                ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=spec.workers, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"connect to the Ray cluster at {spec.ray_address!r}" if spec.ray_address else "start Ray"
            raise CampaignError(f"cannot {where}: {exc}") from exc
    actor_cls = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(_RayFallWorker)
    fall = spec.fall.to_dict()
    actors = [actor_cls.remote(spec.seed, fall, spec.record) for _ in range(spec.workers)]
    blocks = deque(pending[i : i + spec.block] for i in range(0, len(pending), spec.block))
    rows = RowLog(spec.out / "logs" / f"rows-ray-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl")
    in_flight: dict[Any, Any] = {}
    try:
        for actor in actors:
            for _ in range(2):  # two blocks in flight per actor: no idle gap between blocks
                if blocks:
                    in_flight[actor.run_block.remote(blocks.popleft())] = actor
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            actor = in_flight.pop(ready[0])
            for row, episode in ray.get(ready[0]):
                if episode is not None:
                    write_episode(episode_path(spec.out / "episodes", row["index"]), episode)
                rows.append(row)
                on_row(row["index"], row["fell"])
            if blocks:
                in_flight[actor.run_block.remote(blocks.popleft())] = actor
    finally:
        rows.close()
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
    return 0
