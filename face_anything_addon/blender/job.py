# SPDX-License-Identifier: GPL-3.0-or-later
"""A reconstruction in progress: footage decoded on the main thread, the network and the solve in a
worker thread, the scene built on the main thread at the end.

`ReconstructJob` has no event handling of its own: the modal operator calls `tick()` from its
timer, the command line calls `run()`; tests drive `tick()` directly. The worker never touches
bpy: it reads frames from a `FrameFeed` and reports through thread-safe queues.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.capture import Capture
from ..core.capture_run import CaptureSettings, capture_warnings, run_capture
from ..core.frame_feed import FeedClosed, FrameFeed
from ..core.frames import reduced
from ..core.marker_picks import PickResult
from ..core.pipeline import Progress
from . import clip_picks
from .footage import Footage


# phase -> (start, width) of its part of the progress bar
SPAN = {"detect": (0.0, 0.05), "predict": (0.05, 0.9), "fit": (0.95, 0.05)}


@dataclass
class JobStatus:
    phase: str = "starting"  # starting | detect | predict | fit | done | failed | cancelled
    done: int = 0
    total: int = 0
    fps: float = 0.0
    eta_s: float = float("nan")
    message: str = ""
    providers: list[str] = field(default_factory=list)
    note: str = ""  # e.g. why CUDA is not used
    warnings: list[str] = field(default_factory=list)  # e.g. clip tracks left out, and why

    @property
    def factor(self) -> float:
        if self.phase == "done":
            return 1.0
        if not self.total or self.phase not in SPAN:
            return 0.0
        # the detection pass and the expression fit are quick: a twentieth of the bar each
        start, width = SPAN[self.phase]
        return start + width * self.done / self.total

    def text(self) -> str:
        if self.phase in SPAN:
            eta = f", {self.eta_s:.0f} s left" if self.eta_s == self.eta_s else ""
            label = {"detect": "Finding the face", "predict": "Frame",
                     "fit": "Fitting the face and expressions"}[self.phase]
            return f"{label} {self.done} / {self.total}, {self.fps:.1f} fps{eta}"
        return self.message or self.phase.capitalize()


class ReconstructJob:
    """footage (main thread) -> worker: run_capture -> Capture (main thread)."""

    TICK_BUDGET_S = 0.025  # decoding time per tick on the main thread

    def __init__(self, footage: Footage, settings: CaptureSettings, model_path=None,
                 fps: float = 24.0, background=None, pick_frames: dict | None = None,
                 warnings: list[str] | None = None):
        self.footage = footage
        self.background = background  # what the scene shows behind the camera (path or clip)
        self.settings = settings
        self.model_path = model_path
        self.fps = fps
        self.status = JobStatus(total=len(footage))
        self.cancel_event = threading.Event()
        self.feed = FrameFeed(len(footage), size=tuple(footage.size))
        self._progress: queue.Queue = queue.Queue()
        self._result: queue.Queue = queue.Queue(1)
        self._source = None
        self._pending = None
        self._thread: threading.Thread | None = None
        self.capture: Capture | None = None
        self.error: BaseException | None = None
        # settings.pixel_picks: their frames (decoded on the main thread), and what became of them
        self.pick_frames = pick_frames or {}
        self.picks: PickResult | None = None
        self.status.warnings = list(warnings or [])

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="face-anything", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self.cancel_event.set()
        self.status.message = "Cancelling..."

    @property
    def finished(self) -> bool:
        return self.status.phase in ("done", "failed", "cancelled")

    def tick(self) -> bool:
        """Main thread: decode a few frames, take in progress and results. True when finished."""
        if self.finished:
            return True
        try:
            self._produce()
        except Exception as exc:  # noqa: BLE001 - a reader error ends the job with its message
            self._source = None  # produce nothing more: the worker sees the feed closed
            self.feed.close(exc)
            self.error = exc
        while not self._progress.empty():
            p: Progress = self._progress.get_nowait()
            self.status.phase, self.status.done, self.status.total = p.phase, p.done, p.total
            self.status.fps, self.status.eta_s = p.fps, p.eta_s
        try:
            outcome = self._result.get_nowait()
        except queue.Empty:
            return False
        self._thread.join()
        if isinstance(outcome, BaseException):
            error = self.error if isinstance(outcome, FeedClosed) and self.error else outcome
            self.error = error
            self.status.phase, self.status.message = "failed", str(error)
        elif outcome is None:
            self.status.phase, self.status.message = "cancelled", "Cancelled: nothing was changed"
        else:
            self.capture = outcome
            self.status.phase, self.status.message = "done", f"{outcome.frame_count} frames solved"
            self.status.warnings += capture_warnings(outcome)
            if self.picks is not None:
                self.status.warnings += [clip_picks.warning(name, why)
                                         for name, why in self.picks.rejected.items()]
                self.status.warnings += clip_picks.offset_warnings(outcome)
        return True

    def run(self, poll_s: float = 0.001) -> Capture | None:
        """Run to the end on this thread (command line, tests). Raises the job's error."""
        self.start()
        while not self.tick():
            time.sleep(poll_s)
        if self.error is not None:
            raise self.error
        return self.capture

    # ---------------------------------------------------------------- the two sides

    def _produce(self) -> None:
        if self.feed.pending_pass():
            self._source, self._pending = iter(reduced(self.footage, self.feed.reduction)), None
        deadline = time.perf_counter() + self.TICK_BUDGET_S
        while self._source is not None and time.perf_counter() < deadline:
            if self.cancel_event.is_set():
                self.feed.close(FeedClosed("cancelled"))
                self._source = None
                return
            if self._pending is None:
                self._pending = next(self._source, _END)
            frame = None if self._pending is _END else self._pending
            if not self.feed.offer(frame):
                return  # the worker is busy: try again next tick
            if frame is None:
                self._source = None
            self._pending = None

    def _work(self) -> None:
        try:
            capture = run_capture(
                self.feed, footage_name=self.footage.name, footage_size=self.footage.size,
                fps=self.fps, frame_count=len(self.footage), model_path=self.model_path,
                settings=self.settings, progress=self._progress.put, cancel=self.cancel_event,
                on_session=self._session_opened, pick_frames=self.pick_frames,
                on_picks=self._picks_resolved)
            self._result.put(None if self.cancel_event.is_set() else capture)
        except FeedClosed as exc:
            self._result.put(None if self.cancel_event.is_set() else exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread to report
            self._result.put(exc)

    def _picks_resolved(self, picks: PickResult) -> None:
        self.picks = picks  # read by the main thread only after the worker has finished

    def _session_opened(self, session) -> None:
        self.status.providers = list(session.providers)
        self.status.note = session.note


_END = object()


def capture_path(blend_path: str, cache_dir: str, footage_name: str) -> Path:
    """Next to the .blend when it is saved, else in the cache folder."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in footage_name) or "footage"
    if blend_path:
        blend = Path(blend_path)
        return blend.parent / f"{blend.stem}_face_anything" / f"{safe}.capture.npz"
    return Path(cache_dir) / f"{safe}.capture.npz"
