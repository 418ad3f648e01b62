"""The local backend: one process per worker, each with its own PyBullet world and its own pipe to the parent.

There is no shared queue whose lock a killed worker could hold. The parent hands out small blocks of indices; if a
worker dies, the parent reads that worker's row log, re-queues the block's indices not in it and starts a
replacement worker. Workers die with their parent (PR_SET_PDEATHSIG), so killing the run leaves no orphan writing rows.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from wam_ros.data.episode import episode_path, write_episode
from wam_ros.sim.falls import FallConfig, FallSim
from wam_ros.train.campaign.episodes import run_episode_row
from wam_ros.train.campaign.spec import CampaignError, CampaignSpec, RecordSelection
from wam_ros.train.campaign.storage import RowLog, read_log
from wam_ros.train.campaign.traces import new_trace_log, sim_log_schema
from wam_ros.train.workers import die_with_parent

log = logging.getLogger(__name__)

Progress = Callable[[int, bool], None]  # (index, fell) after each finished episode


def worker_log_name(pid: int, token: str) -> str:
    return f"rows-{pid}-{token}.jsonl"  # the worker's pid is in the name: tools (and tests) can find who wrote it


def _worker_main(
    conn: Connection, out: str, seed: int, fall: dict, record: str, token: str, traces: bool
) -> None:
    die_with_parent()  # killing the run never leaves orphans writing rows
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops its workers
    if os.getppid() == 1:
        return
    selection = RecordSelection(record)
    sim = FallSim(FallConfig(**fall))
    rows = RowLog(Path(out) / "logs" / worker_log_name(os.getpid(), token))
    trace_log = new_trace_log(Path(out), sim_log_schema(sim), str(os.getpid())) if traces else None
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
                row, episode, trace = run_episode_row(sim, seed, index, index in selection, traces)
                if episode is not None:
                    write_episode(episode_path(Path(out) / "episodes", index), episode)
                if trace_log is not None:
                    trace_log.append(index, trace)  # before the row: a row always has its trace
                rows.append(row)
                conn.send(("row", index, row["fell"]))
            conn.send(("ready",))
    finally:
        rows.close()
        if trace_log is not None:
            trace_log.close()
        sim.close()


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    log_path: Path
    block: list[int] = field(default_factory=list)
    done: set[int] = field(default_factory=set)


def run_local(spec: CampaignSpec, pending: list[int], on_row: Progress) -> int:
    """Run `pending` episodes on `spec.workers` processes; returns the number of worker deaths."""
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no inherited threads or PyBullet state
    blocks = deque(pending[i : i + spec.block] for i in range(0, len(pending), spec.block))
    workers: dict[int, _Worker] = {}
    deaths = 0
    fall = spec.fall.to_dict()

    def start() -> None:
        parent, child = ctx.Pipe(duplex=True)
        token = uuid.uuid4().hex[:8]
        proc = ctx.Process(
            target=_worker_main,
            args=(child, str(spec.out), spec.seed, fall, spec.record, token, spec.traces),
            daemon=True,
        )
        proc.start()
        child.close()
        workers[proc.sentinel] = _Worker(proc, parent, spec.out / "logs" / worker_log_name(proc.pid, token))

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
