"""What every widget shares: a background refresh loop, throttled trait updates, closing.

A widget's live data comes from one `LiveLoop` thread that calls the widget's refresh
function every `interval` seconds (at least `MIN_INTERVAL`, so at most four updates a
second reach the front end). The loop never raises: an error (a broker restarting, the
whole cluster gone) is handed to the widget to show inline, and the loop backs off
exponentially up to `MAX_BACKOFF` seconds. It ends when the widget closes it or when the
connection is closed (`Cluster.stop()`), so a stopped cluster leaves no thread polling it.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
import time
from collections.abc import Callable

import ipywidgets as widgets

from workbench.embedded import connection_closed

#: Four updates a second is as fast as a person reads a changing number, and keeps the
#: comm traffic of a dashboard of five live widgets small.
MIN_INTERVAL = 0.25
#: A connection error backs off exponentially up to this many seconds between attempts.
MAX_BACKOFF = 5.0
#: Prefix of every thread a widget starts (tests look for leftovers by it).
THREAD_PREFIX = "workbench-widget-"

#: librdkafka's own log lines from the widgets' clients ("Connect to ... failed" while a broker is
#: killed) go here instead of the process's stderr, where a notebook would show every one of them;
#: the widgets show connection problems inline. Attach a handler to see them.
KAFKA_LOGGER = logging.getLogger("workbench.widgets.kafka")
KAFKA_LOGGER.addHandler(logging.NullHandler())
KAFKA_LOGGER.propagate = False


_ENGINE_LOCK = threading.Lock()


def start_sql(conn) -> None:
    """Start the connection's SQL engine now, on the caller's thread: two widget threads asking
    for it at once must not each start one (`SqlMixin.sql_engine` is created under the connection's lock)."""
    if connection_closed(conn):
        return
    with _ENGINE_LOCK:
        conn.sql_engine  # noqa: B018 - starts it


def admin_client(conn):
    """An admin client of `conn` whose librdkafka logs go to `KAFKA_LOGGER`."""
    return conn.admin(logger=KAFKA_LOGGER)


def message(text: str, kind: str = "error") -> str:
    """HTML for an inline message: red for errors, grey for info, green for success."""
    if not text:
        return ""
    colour = {"error": "#b00020", "ok": "#1b7f3b", "info": "#555", "warn": "#a05a00"}[kind]
    return (
        f'<div class="workbench-message workbench-{kind}" style="color:{colour};white-space:pre-wrap;'
        f'font-family:var(--jp-code-font-family,monospace);font-size:12px">{html.escape(text)}</div>'
    )


def short_error(exc: BaseException) -> str:
    """One readable line for an exception: its message without a traceback."""
    text = str(exc).strip() or type(exc).__name__
    kafka_error = getattr(exc, "args", [None])[0] if exc.args else None
    if hasattr(kafka_error, "str"):  # confluent_kafka.KafkaException wraps a KafkaError
        text = kafka_error.str()
    if type(exc).__name__ not in ("SqlError", "ValueError"):
        text = f"{type(exc).__name__}: {text}"
    return text


@contextlib.contextmanager
def hold(*ws: widgets.Widget):
    """`hold_sync()` on several widgets at once: their changes go to the front end together."""
    with contextlib.ExitStack() as stack:
        for w in ws:
            stack.enter_context(w.hold_sync())
        yield


class LiveLoop:
    """A daemon thread calling `step()` every `interval` seconds until stopped.

    `poke()` runs the next step now (a user changed a setting); `pause()`/`resume()` skip
    steps while the widget is hidden (a dashboard tab not shown)."""

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        interval: float,
        *,
        conn=None,
        on_error: Callable[[BaseException], None] | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.name = THREAD_PREFIX + name
        self._on_closed = on_closed
        self.interval = max(MIN_INTERVAL, float(interval))
        self._step = step
        self._conn = conn
        self._on_error = on_error
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._paused = False
        self._thread: threading.Thread | None = None
        self.failures = 0

    def start(self) -> LiveLoop:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poke(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.poke()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._conn is not None and connection_closed(self._conn):
                if self._on_closed is not None:
                    with contextlib.suppress(Exception):  # best effort: the cluster is gone anyway
                        self._on_closed()
                return
            started = time.monotonic()
            delay = self.interval
            if not self._paused:
                try:
                    self._step()
                    self.failures = 0
                except Exception as exc:
                    self.failures += 1
                    delay = min(MAX_BACKOFF, self.interval * 2**self.failures)
                    if self._on_error is not None and not self._stop.is_set():
                        with contextlib.suppress(Exception):  # a closed widget cannot show it
                            self._on_error(exc)
            remaining = max(MIN_INTERVAL if self._wake.is_set() else 0.0, delay - (time.monotonic() - started))
            self._wake.wait(remaining)
            self._wake.clear()


class LivePanel(widgets.VBox):
    """Base of the workbench widgets: owns its `LiveLoop`s and closes them with itself."""

    css_class = "workbench-panel"

    def __init__(self, conn, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conn = conn
        self._loops: list[LiveLoop] = []
        self._closed = False
        #: One refresh at a time: the live loop and an explicit `refresh()` from the notebook.
        self._refresh_lock = threading.RLock()
        self.add_class("workbench-widget")
        self.add_class(self.css_class)

    def _loop(
        self,
        name: str,
        step: Callable[[], None],
        interval: float,
        on_error: Callable[[BaseException], None] | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> LiveLoop:
        loop = LiveLoop(
            name,
            step,
            interval,
            conn=self.conn,
            on_error=on_error,
            on_closed=on_closed or self._release_clients,
        )
        self._loops.append(loop)
        return loop

    def _on_live(self, change) -> None:
        """The panel's `live` toggle: run or pause its poller (`self._poller`)."""
        if change["new"]:
            self._poller.start()
            self._poller.resume()
        else:
            self._poller.pause()

    def _step(self) -> None:
        """One poller tick: refresh while the `live` toggle is on."""
        if self.live.value:
            self._refresh()

    @property
    def closed(self) -> bool:
        return self._closed

    def pause(self) -> None:
        """Stop refreshing while hidden (threads stay, idle)."""
        for loop in self._loops:
            loop.pause()

    def resume(self) -> None:
        for loop in self._loops:
            loop.resume()

    def _release_clients(self) -> None:
        """Drop this widget's Kafka clients (called when the cluster stops, and on close), so
        librdkafka does not keep reconnecting to brokers that are gone."""
        self.__dict__.pop("_admin_client", None)
        if connection_closed(self.conn) and hasattr(self.conn, "close_sql"):
            # A refresh that raced with `Cluster.stop()` may have started a new SQL engine.
            with contextlib.suppress(Exception):
                self.conn.close_sql()

    def _stop_threads(self) -> None:
        """Subclasses stop anything else they started here, then call super()."""
        for loop in self._loops:
            loop.stop()
        self._release_clients()

    def close(self) -> None:
        """Stop the background threads and close this widget and its children."""
        if self._closed:
            return
        self._closed = True
        self._stop_threads()
        _close_tree(self.children)
        super().close()


def _close_tree(children) -> None:
    for child in children:
        if isinstance(child, LivePanel):
            child.close()
            continue
        if isinstance(child, widgets.Box):
            _close_tree(child.children)
        child.close()
