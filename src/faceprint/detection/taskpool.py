"""A small pool of helper threads for one detection's independent pieces of work (pyramid levels, row
bands of P-Net's output, chunks of R-/O-Net crops), each running torch ops on one torch thread."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar


class _Job:
    """One ``TaskPool.map`` call: items are claimed in order by whichever thread is free. Every item
    runs even after one fails (items may wait for earlier ones); the first error is kept."""

    def __init__(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> None:
        self.fn, self.items = fn, items
        self.results: list[Any] = [None] * len(items)
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._left = len(items)

    def work(self) -> None:
        while True:
            with self._lock:
                k = self._next
                if k >= len(self.items):
                    return
                self._next += 1
            error = None
            try:
                self.results[k] = self.fn(self.items[k])
            except BaseException as err:  # re-raised in the caller's thread
                error = err
            with self._lock:
                self.error = self.error or error
                self._left -= 1
                if self._left == 0:
                    self.done.set()


class TaskPool:
    """Runs a function over items on ``size`` daemon helper threads whose torch ops run on one thread
    each; the caller waits. Items are handed out in order, so putting the largest first balances them.

    Why not torch's own threads: oneDNN splits each op of these small nets across threads and loses more
    to synchronising them than it gains (docs/detection.md), so a detection parallelises across levels,
    bands and crop chunks itself. Why the caller only waits: torch's thread count is per thread,
    so only threads that never run anything else may have it changed. Plain threads and events, no
    executor: a Ctrl-C in the caller must not be able to leave a pool's lock held (a hang at exit)."""

    _shared: ClassVar[dict[int, TaskPool]] = {}
    _shared_lock = threading.Lock()

    def __init__(self, size: int) -> None:
        self.size = size
        self._reset()

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._helpers = 0
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, size: int) -> TaskPool:
        """The process's pool of this size: detectors share helper threads instead of each keeping its
        own idle ones for the life of the process."""
        with cls._shared_lock:
            return cls._shared.setdefault(size, cls(size))

    @classmethod
    def _after_fork(cls) -> None:
        """A forked child has none of its parent's threads: its pools start helpers anew (else the first
        detection in, say, a pre-forked server worker would wait forever)."""
        cls._shared_lock = threading.Lock()
        for pool in cls._shared.values():
            pool._reset()

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        self._start_helpers()
        job = _Job(fn, items)
        for _ in range(min(self.size, len(items))):
            self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.results

    def _start_helpers(self) -> None:
        with self._lock:
            if self._helpers == self.size:
                return
            import torch

            # Setting a helper's count also sets torch's default for threads that start later; this
            # thread's own count (read first) puts that default back.
            count = torch.get_num_threads()
            while self._helpers < self.size:
                ready = threading.Event()
                threading.Thread(target=self._serve, args=(ready,), name="mtcnn-worker", daemon=True).start()
                ready.wait()
                self._helpers += 1
            torch.set_num_threads(count)

    def _serve(self, ready: threading.Event) -> None:
        import torch

        torch.get_num_threads()  # torch sets a thread's count on first use; after that, ours sticks
        torch.set_num_threads(1)
        ready.set()
        while True:
            self._queue.get().work()


os.register_at_fork(after_in_child=TaskPool._after_fork)
