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
from workbench.widgets._style import MESSAGE_COLOURS

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


def closed_reason(conn) -> str | None:
    """Why the connection can no longer be used (a stopped `Cluster`), or None."""
    reason = getattr(conn, "_closed_reason", None)
    if callable(reason):
        return reason()
    return "the cluster is stopped" if connection_closed(conn) else None


#: While waiting between steps, a loop looks this often whether the cluster stopped, so every
#: widget shows "stopped" within a second even while backing off from errors.
CLOSED_CHECK_S = 0.2


def message(text: str, kind: str = "error") -> str:
    """HTML for an inline message: red for errors, grey for info, green for success."""
    if not text:
        return ""
    colour = MESSAGE_COLOURS[kind]
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
            until = time.monotonic() + remaining
            while not self._stop.is_set():
                left = until - time.monotonic()
                if left <= 0 or (self._conn is not None and connection_closed(self._conn)):
                    break
                if self._wake.wait(min(left, CLOSED_CHECK_S)):
                    break
            self._wake.clear()


class LivePanel(widgets.VBox):
    """Base of the workbench widgets: owns its `LiveLoop`s and closes them with itself.

    The one refresh/error path every widget shares: `refresh()` runs `_refresh_locked()` under
    the panel's lock (skipped once the connection or panel is closed) and shows any error on the
    panel's status line (`_status_widget()`, prefixed by `error_prefix`); `_result()` is what
    `refresh()` returns. When the cluster stops, `_show_stopped()` puts the reason on the status
    line and disables every action button (`_action_buttons()`), with the reason as tooltip."""

    css_class = "workbench-panel"
    #: Put before an error on the status line ("cluster unreachable: ...").
    error_prefix = ""

    def __init__(self, conn, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conn = conn
        self._loops: list[LiveLoop] = []
        self._closed = False
        #: One refresh at a time: the live loop and an explicit `refresh()` from the notebook.
        self._refresh_lock = threading.RLock()
        self.add_class("workbench-widget")
        self.add_class(self.css_class)
        register = getattr(conn, "_on_stop", None)
        if callable(register):
            register(self._on_connection_closed)

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
            on_closed=self._closed_hook(on_closed),
        )
        self._loops.append(loop)
        return loop

    # ---- the shared refresh / error / stopped display (issue 11: one helper, not four copies) ----
    def refresh(self):
        """Read now and redraw; returns what the panel shows (see each widget's `_result`)."""
        try:
            self._refresh()
        except Exception as exc:
            self._show_error(exc)
        return self._result()

    def _result(self):
        return None

    def _refresh(self) -> None:
        with self._refresh_lock:
            if connection_closed(self.conn) or self._closed:
                if connection_closed(self.conn):
                    self._show_stopped()
                return
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        """Subclasses: read and render (called under the refresh lock, connection open)."""

    def _status_widget(self) -> widgets.HTML | None:
        return getattr(self, "info", None)

    def _show_error(self, exc: BaseException) -> None:
        self.error = short_error(exc)
        if connection_closed(self.conn):
            self._show_stopped()
            return
        status = self._status_widget()
        if status is not None:
            status.value = message(f"{self.error_prefix}{self.error}")

    def closed_reason(self) -> str | None:
        return closed_reason(self.conn)

    def _action_buttons(self) -> list[widgets.Widget]:
        """Every control that acts on the cluster (disabled once it stops)."""
        found: list[widgets.Widget] = []

        def walk(children) -> None:
            for child in children:
                if isinstance(child, widgets.Button | widgets.ToggleButton):
                    found.append(child)
                elif isinstance(child, widgets.Box) and not isinstance(child, LivePanel):
                    walk(child.children)

        walk(self.children)
        return found

    def _show_stopped(self) -> None:
        """The cluster is gone: say so on the status line and disable every action, with the reason."""
        reason = self.closed_reason() or "the cluster is stopped"
        self.stopped_reason = reason
        status = self._status_widget()
        buttons = self._action_buttons()
        with hold(*([status] if status is not None else []), *buttons):
            if status is not None:
                status.value = message(f"stopped: {reason}", "error").replace(
                    "workbench-message", "workbench-message workbench-stopped", 1
                )
            for button in buttons:
                button.disabled = True
                button.tooltip = reason

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

    def _closed_hook(self, extra: Callable[[], None] | None) -> Callable[[], None]:
        def hook() -> None:
            if extra is not None:
                with contextlib.suppress(Exception):
                    extra()
            self._on_connection_closed()

        return hook

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

    def _on_connection_closed(self) -> None:
        """A live loop saw the cluster stop: show it, then let the clients go."""
        if not self._closed:
            with contextlib.suppress(Exception):  # a closing front end cannot show it
                self._show_stopped()
        self._release_clients()

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
