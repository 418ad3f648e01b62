"""Terminal keyboard input shared by the nodes of one process: one reader thread, any number of listeners.

    unsubscribe = keyboard.subscribe(lambda key: ...)   # key is a 1-character str
    keyboard.start()                                   # False (and no thread) when stdin is not a TTY

The terminal is put in cbreak mode (keys arrive without Enter, no echo) and restored when the reader stops or the
process exits. Two nodes composed in one process (`wam bringup teleop_record`) share the one reader, so no key is lost
to a second thread reading the same stdin.

Core module: never imports rclpy.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger(__name__)


class KeyReader:
    """Reads single keys from a TTY in a daemon thread and calls every listener with each key."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._saved_attrs = None

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def dispatch(self, key: str) -> None:
        """Send one key to every listener (also the entry point for tests and scripted input)."""
        with self._lock:
            listeners = list(self._listeners)
        for cb in listeners:
            try:
                cb(key)
            except Exception:  # a listener's bug must not kill the reader thread
                log.exception("keyboard listener failed on key %r", key)

    def start(self) -> bool:
        """Start reading; returns False without starting when the stream is not an interactive terminal."""
        stream = self._stream or sys.stdin
        if self._thread is not None:
            return True
        try:
            if stream is None or not stream.isatty():
                return False
            fd = stream.fileno()
        except (OSError, ValueError):
            return False
        import termios
        import tty

        self._saved_attrs = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        atexit.register(self.stop)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(fd,), name="wam-keyboard", daemon=True)
        self._thread.start()
        return True

    def _run(self, fd: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                data = os.read(fd, 1)
                if not data:
                    return
                self.dispatch(data.decode(errors="replace"))

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=1.0)
        if self._saved_attrs is not None:
            import termios

            stream = self._stream or sys.stdin
            with contextlib.suppress(OSError, ValueError):  # the terminal is already gone
                termios.tcsetattr(stream.fileno(), termios.TCSADRAIN, self._saved_attrs)
            self._saved_attrs = None


keyboard = KeyReader()  # the process-wide reader
