"""Worker processes that never outlive the run that started them, and Ray started, reached and kept busy.

    pool = ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=init, initargs=(os.getpid(),))
    def init(parent_pid):
        die_with_parent(parent_pid)        # first thing in the worker

A SIGKILLed parent cannot clean up, and a pool worker blocked on its task queue would otherwise live on as an orphan
(holding a pybullet client, a model, a core). Linux's prctl(PR_SET_PDEATHSIG, SIGKILL) has the kernel kill the worker
when its parent dies; the parent-pid check closes the race of a parent that died before the prctl call. The signal
fires when the *thread* that started the worker exits, so start pools from a thread that lives as long as the run
(the main thread, as `wam collect` does). Elsewhere than Linux this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies. With `parent_pid`, exit at once if the parent is
    already gone (this process was re-parented). Returns whether the kernel accepted the request."""
    ok = False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the prctl: nobody will read what this worker does
    return ok


def run_on_actors(
    ray: Any,
    actors: list[Any],
    method: str,
    items: Iterable[Any],
    handle: Callable[[Any], None],
    depth: int = 2,
) -> None:
    """Call `actor.<method>.remote(item)` for every item, keeping `depth` calls in flight per actor (no idle gap
    between them), and `handle(result)` each result in the order they finish, on this thread. A task that failed for
    good raises its Ray error from here; the calls still in flight are left to the caller (kill the actors)."""
    queue = deque(items)
    in_flight: dict[Any, Any] = {}
    for actor in actors:
        for _ in range(depth):
            if queue:
                in_flight[getattr(actor, method).remote(queue.popleft())] = actor
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        actor = in_flight.pop(ready[0])
        handle(ray.get(ready[0]))
        if queue:
            in_flight[getattr(actor, method).remote(queue.popleft())] = actor


class RayUnavailable(RuntimeError):
    """Ray did not start, or did not connect to the cluster asked for."""


def check_reachable(address: str) -> None:
    """Refuse an unreachable HOST:PORT at once (ray.init itself retries for minutes) with a ValueError. "auto" is
    left to Ray."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc


def start_ray(address: str | None, num_cpus: int) -> tuple[Any, bool]:
    """Import Ray and connect to `address` (HOST:PORT, ray://HOST:PORT or auto), or start a local instance with
    `num_cpus` CPUs; a Ray already initialised in this process is used as it is. Returns (the `ray` module, whether
    this call started it: then the caller shuts it down). ValueError when the `ray` package is missing or the
    address is malformed or unreachable; RayUnavailable when Ray itself fails to start or connect."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise ValueError(f"--backend ray needs the `ray` package ({exc}); pip install ray") from exc
    if ray.is_initialized():
        return ray, False
    if address:
        check_reachable(address)
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"connect to the Ray cluster at {address!r}" if address else "start Ray"
        raise RayUnavailable(f"cannot {where}: {exc}") from exc
    return ray, True
