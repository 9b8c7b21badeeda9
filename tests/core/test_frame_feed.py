# SPDX-License-Identifier: GPL-3.0-or-later
"""FrameFeed: a producer thread (Blender's main thread) feeding a worker, pass by pass."""
import threading
import time

import numpy as np
import pytest

from face_anything_addon.core.frame_feed import FeedClosed, FrameFeed
from face_anything_addon.core.frames import Frame


def footage(n):
    return [Frame(i, np.full((4, 4, 3), i / 10, np.float32)) for i in range(1, n + 1)]


def produce(feed, frames, stop, ticks):
    """What the modal operator's timer does: a few frames per tick, restart on a new pass."""
    source, pending = None, None
    while not stop.is_set():
        ticks.append(1)
        if feed.pending_pass():
            source, pending = iter(frames), None
        for _ in range(2):
            if source is None:
                break
            if pending is None:
                pending = next(source, None)
                if pending is None:
                    source = None
                    pending = "end"
            if feed.offer(None if pending == "end" else pending):
                pending = None
            else:
                break
        time.sleep(0.001)


def test_two_passes_and_an_abandoned_one():
    feed = FrameFeed(frame_count=7, maxsize=2)
    stop, ticks = threading.Event(), []
    t = threading.Thread(target=produce, args=(feed, footage(7), stop, ticks))
    t.start()
    try:
        first = next(iter(feed))  # a pass abandoned after one frame
        assert first.number == 1
        assert [f.number for f in feed] == list(range(1, 8))
        assert [f.number for f in feed] == list(range(1, 8))
        assert len(feed) == 7
    finally:
        stop.set()
        t.join(5)


def test_consumer_learns_when_the_producer_fails():
    feed = FrameFeed(maxsize=2)
    feed.close(RuntimeError("cannot read frame 3 of shot.mp4"))
    with pytest.raises(FeedClosed, match="cannot read frame 3 of shot.mp4"):
        list(feed)
