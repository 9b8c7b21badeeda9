# SPDX-License-Identifier: GPL-3.0-or-later
"""FrameFeed: a producer thread (Blender's main thread) feeding a worker, pass by pass."""
import threading
import time

import numpy as np
import pytest

from face_anything_addon.core.frame_feed import FeedClosed, FrameFeed
from face_anything_addon.core.frames import Frame, from_blender_pixels


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


def test_reduced_passes_tell_the_producer_the_reduction():
    """A pass asked through `reduced(n)` reaches the producer as `feed.reduction` (which it reads
    its footage at); a plain pass asks for full size again."""
    feed = FrameFeed(frame_count=3, maxsize=2, size=(4, 4))
    seen = []

    class Reader:  # the producer's footage: records the reduction of each pass it is asked for
        def __iter__(self):
            seen.append(feed.reduction)
            return iter(footage(3))

    stop, ticks = threading.Event(), []
    t = threading.Thread(target=produce, args=(feed, Reader(), stop, ticks))
    t.start()
    try:
        halves = feed.reduced(2)
        assert halves.size == (4, 4) and len(halves) == 3
        assert [f.number for f in halves] == [1, 2, 3]
        assert [f.number for f in feed.reduced(4)] == [1, 2, 3]
        assert [f.number for f in feed] == [1, 2, 3]
        assert seen == [2, 4, 1]
    finally:
        stop.set()
        t.join(5)


@pytest.mark.parametrize("width, height, channels, block", [
    (1920, 1080, 4, 9), (23, 17, 4, 5), (23, 17, 1, 4), (10, 10, 3, 3), (7, 5, 4, 8)])
def test_blender_pixels_in_blocks_are_block_means_top_row_first(width, height, channels, block):
    """from_blender_pixels(block=n): the mean of each n x n block of the top-row-first RGB frame
    (partial blocks at the right and bottom average what they hold), grey repeated to RGB."""
    rng = np.random.default_rng(block)
    flat = rng.random(width * height * channels, dtype=np.float32)
    full = from_blender_pixels(flat, width, height, channels)
    out = from_blender_pixels(flat, width, height, channels, block=block)
    assert out.shape == (-(-height // block), -(-width // block), 3) and out.dtype == np.float32
    rows = np.minimum(np.arange(height) // block, out.shape[0] - 1)
    cols = np.minimum(np.arange(width) // block, out.shape[1] - 1)
    sums = np.zeros(out.shape, np.float64)
    counts = np.zeros(out.shape[:2], np.float64)
    np.add.at(sums, (rows[:, None], cols[None, :]), full)
    np.add.at(counts, (rows[:, None], cols[None, :]), 1)
    np.testing.assert_allclose(out, sums / counts[..., None], atol=2e-6)
    frame = Frame(1, out, (width, height), (1 / block, 1 / block))
    assert frame.scale == (1 / block, 1 / block) and frame.size == (width, height)


def test_a_pixel_scale_needs_a_footage_size():
    with pytest.raises(ValueError, match="pixel scale"):
        Frame(1, np.zeros((2, 2, 3), np.float32), None, (0.5, 0.5))
    with pytest.raises(ValueError, match="pixel scale"):
        Frame(1, np.zeros((2, 2, 3), np.float32), (4, 4), (2.0, 0.5))
