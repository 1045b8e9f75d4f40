"""`PeriodicSampler`: a query run every few seconds on a daemon thread, kept by the connection.

The lag history (`wb.consumer_lag_history`) and the offset history (the topic overview's rates) are
both "one sample of a system table every `interval` seconds, an hour of them, shared by every widget
of a connection". This base holds what they share: one instance per SQL engine (`of`), a daemon
thread started on first use and ended by `stop()` or by the engine closing (`close_sql()`,
`Cluster.stop()`), `poke()` for an immediate sample, and the error of the last failed sample kept
for readers (a widget shows it; a sample never raises on the thread). A subclass says what a sample
is (`sample`) and how it is read.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import Any, ClassVar, Self

import pandas as pd


class PeriodicSampler:
    """Base of the connection's histories: the thread, its lifecycle and one instance per engine."""

    #: The sampling thread's name (shows in `threading.enumerate()` and py-spy).
    thread_name: ClassVar[str] = "workbench-sampler"
    _instances: ClassVar[weakref.WeakKeyDictionary[Any, Any]]
    _instances_lock: ClassVar[threading.Lock]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = weakref.WeakKeyDictionary()  # each kind of history has its own per engine
        cls._instances_lock = threading.Lock()

    @classmethod
    def of(cls, engine, *, start: bool = True) -> Self:
        """The engine's (the connection's) one instance of this history, started unless `start=False`."""
        with cls._instances_lock:
            history = cls._instances.get(engine)
            if history is None:
                history = cls._instances[engine] = cls(engine)
        if start:
            history.start()
        return history

    def __init__(self, engine, *, interval: float, span: float) -> None:
        self._engine = weakref.ref(engine)
        self.interval = interval
        self.span = span
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: Why the last sample failed (None after a good one): readers show it, the thread never raises.
        self.error: BaseException | None = None
        #: Samples taken so far.
        self.samples = 0

    # ------------------------------------------------------------------ thread
    def start(self) -> Self:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def poke(self) -> None:
        """Take the next sample now."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        if self.samples:  # someone just took one: wait a period first
            self._wake.wait(self.interval)
        while not self._stop.is_set():
            engine = self._engine()
            if engine is None or getattr(engine, "_closed", False):
                return
            with contextlib.suppress(Exception):  # kept in self.error for the readers
                self.sample(engine)
            del engine
            self._wake.wait(self.interval)
            self._wake.clear()

    # ------------------------------------------------------------------ sampling
    def sample(self, engine=None) -> Any:
        """Take one sample now (on the caller's thread) and return what was read."""
        raise NotImplementedError

    def _query(self, engine, query: str) -> tuple[float, pd.DataFrame]:
        """Run `query` on the engine (this history's own when None): (unix time, frame); a failure
        is kept in `error` and raised."""
        engine = engine or self._engine()
        if engine is None:
            raise RuntimeError("the connection's SQL engine is closed")
        try:
            frame = engine.sql(query)
        except Exception as exc:
            self.error = exc
            raise
        return time.time(), frame

    def _recorded(self) -> None:
        """Call with `_lock` held once a sample is stored."""
        self.error = None
        self.samples += 1
