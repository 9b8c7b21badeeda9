# SPDX-License-Identifier: GPL-3.0-or-later
"""Frames decoded on one thread and consumed on another.

In Blender only the main thread may decode footage (bpy is not thread-safe), while the network and
the solve run in a worker thread. The worker iterates a `FrameFeed` like any footage; each
`iter()` asks the producer for a fresh pass from the first frame (the pipeline reads the footage
twice with an automatic face region); `reduced(n)` gives an iterable whose passes ask for frames
up to n times smaller (`blender.footage.Footage.reduced`), which the producer reads as `reduction`
says. The main thread calls `pending_pass()` and `offer()` from a timer, a few frames per
tick, so the interface stays responsive. Memory is bounded by `maxsize`.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

from .frames import Frame

_END = object()


class FeedClosed(Exception):
    """The producer stopped (cancelled or failed) while a pass was being read."""


class FrameFeed:
    def __init__(self, frame_count: int = 0, maxsize: int = 3,
                 size: tuple[int, int] | None = None):
        self.frame_count = frame_count
        self.size = size  # (width, height) of the footage, when known
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._requested = 0  # pass number the consumer wants
        self._serving = 0  # pass number the producer is serving
        self._wanted_reduction = 1  # reduction the consumer wants for that pass
        self.reduction = 1  # reduction of the pass being served (read by the producer)
        self._closed: BaseException | None = None

    # ---------------------------------------------------------------- consumer (worker thread)

    def __len__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        return self._pass(1)

    def reduced(self, factor: int) -> "_ReducedPasses":
        """Passes of frames up to `factor` times smaller than the footage."""
        return _ReducedPasses(self, factor)

    def _pass(self, reduction: int) -> Iterator[Frame]:
        with self._lock:
            self._requested += 1
            self._wanted_reduction = reduction
            wanted = self._requested
        while True:
            try:
                number, item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closed is not None:
                    raise FeedClosed(str(self._closed)) from self._closed
                continue
            if number != wanted:
                continue  # left over from an abandoned pass
            if item is _END:
                return
            yield item

    # ---------------------------------------------------------------- producer (main thread)

    def pending_pass(self) -> int:
        """The pass to start producing (from the first frame), or 0 when the current one stands."""
        with self._lock:
            if self._requested != self._serving:
                self._serving = self._requested
                self.reduction = self._wanted_reduction
                self._drain()
                return self._serving
        return 0

    def offer(self, frame: Frame | None) -> bool:
        """Hand over the next frame of the current pass (None: the pass is over). False when the
        consumer is not ready for it yet (try again next tick) or wants a new pass."""
        with self._lock:
            serving = self._serving
            if serving != self._requested:
                return False
        try:
            self._queue.put_nowait((serving, _END if frame is None else frame))
        except queue.Full:
            return False
        return True

    def close(self, reason: BaseException | None = None) -> None:
        """Stop: a consumer waiting for frames raises FeedClosed."""
        self._closed = reason or FeedClosed("the footage reader stopped")

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class _ReducedPasses:
    """A `FrameFeed` whose passes ask for reduced frames (`FrameFeed.reduced`)."""

    def __init__(self, feed: FrameFeed, factor: int):
        self.feed, self.factor = feed, int(factor)
        self.size = feed.size

    def __len__(self) -> int:
        return len(self.feed)

    def __iter__(self) -> Iterator[Frame]:
        return self.feed._pass(self.factor)

    def reduced(self, factor: int) -> "_ReducedPasses":
        return _ReducedPasses(self.feed, factor)
