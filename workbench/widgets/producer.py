"""`ProducerPanel`: send records by hand, or replay a dataset / a template at a chosen rate.

Everything goes through the connection's `Producer` (confluent-kafka). With a `schema` subject
chosen, the value typed as JSON is checked against the subject's latest schema (Avro or JSON
Schema, read from the registry; a mismatch names the field) and sent in Confluent's wire
format with that version's id. Sends are
asynchronous: the delivery report (partition, offset or the broker's error) arrives on a
background thread that serves the producer's callbacks, so a slow or dead cluster never
blocks the notebook.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from workbench.delivery import Delivery
from workbench.protocol.names import topic_name_problem
from workbench.widgets._live import (
    KAFKA_LOGGER,
    THREAD_PREFIX,
    LivePanel,
    admin_client,
    connection_closed,
    hold,
    message,
    short_error,
)
from workbench.widgets._style import primary_button

#: Rates above this are refused: a notebook generator is for watching, not benchmarking.
MAX_RATE = 100_000.0
DEFAULT_TEMPLATE = '{"id": {i}, "at": "{now}", "amount": {rand}}'
_PLACEHOLDER = re.compile(r"\{(i|now|now_ms|uuid|rand)\}")
_KEY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def find_datasets(extra: list[Path] | None = None) -> list[str]:
    """JSON-lines files in `data/` next to the working directory, its parent, or the repository."""
    roots = [Path.cwd() / "data", Path.cwd().parent / "data", Path(__file__).resolve().parents[2] / "data"]
    roots += list(extra or [])
    seen: dict[Path, str] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*.jsonl")) + sorted(root.glob("*.json")):
            resolved = path.resolve()
            if resolved in seen:
                continue
            try:
                shown = str(path.relative_to(Path.cwd()))
            except ValueError:
                shown = str(resolved)
            seen[resolved] = shown
    return list(seen.values())


def render_template(template: str, i: int) -> str:
    """Replace `{i}`, `{now}` (ISO time, UTC), `{now_ms}`, `{uuid}` and `{rand}` (0..1)."""

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name == "i":
            return str(i)
        if name == "now":
            return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if name == "now_ms":
            return str(int(time.time() * 1000))
        if name == "uuid":
            return uuid.uuid4().hex
        return f"{random.random():.4f}"

    return _PLACEHOLDER.sub(one, template)


def render_key(template: str, i: int, record: Any) -> str | None:
    """A key template: `{i}` or any top-level field of a dataset record (`{customer_id}`)."""
    if not template:
        return None
    fields = record if isinstance(record, dict) else {}

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name == "i":
            return str(i)
        value = fields.get(name)
        return "" if value is None else str(value)

    return _KEY_PLACEHOLDER.sub(one, template)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _encode_header(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return _compact(value)


class ProducerPanel(LivePanel):
    """Pick or create a topic, write a key, a JSON value and headers, Send; or run a generator."""

    css_class = "workbench-producer"

    def __init__(self, conn, *, topic: str | None = None) -> None:
        super().__init__(conn)
        self._topics: dict[str, int] = {}  # name -> partition count
        self._unreachable = ""  # the last connection error, until a refresh succeeds
        self._topic_note = ""  # "created topic ..." until the topic changes
        self._topics_at = 0.0  # when the topic list was last read
        self._created: dict[str, tuple[int, float]] = {}  # created here: name -> (partitions, when)
        self._producer = None
        self._producer_lock = threading.Lock()
        self.last_delivery = None  # a workbench.Delivery, or the error text
        self.generated = 0  # generator records acknowledged
        self.generator_failed = 0
        self._generator_sent = 0
        self._generator_thread: threading.Thread | None = None
        self._generator_stop = threading.Event()
        self._last_ui = 0.0

        layout = widgets.Layout(width="520px")
        self.topic = widgets.Combobox(
            description="topic",
            placeholder="existing topic or a new name",
            ensure_option=False,
            continuous_update=False,
            layout=layout,
        )
        self.new_partitions = widgets.BoundedIntText(
            value=3, min=1, max=10_000, description="partitions", layout=widgets.Layout(width="160px")
        )
        self.create_button = widgets.Button(description="Create topic", icon="plus")
        self.topic_status = widgets.HTML()
        self.key = widgets.Text(description="key", placeholder="optional", layout=layout)
        self.value_format = widgets.Dropdown(
            options=["JSON", "text"], value="JSON", description="format", layout=widgets.Layout(width="200px")
        )
        self.value_schema = widgets.Combobox(
            description="schema",
            placeholder="none, or a subject: orders-value",
            ensure_option=False,
            continuous_update=False,
            tooltip="send the value in Confluent's wire format, checked against the subject's latest schema",
            layout=widgets.Layout(width="320px"),
        )
        self._subject: Any = None  # the chosen subject's workbench.widgets._schemas.SubjectSchema
        self._subject_problem = ""
        self.value = widgets.Textarea(
            value='{"hello": "world"}',
            description="value",
            layout=widgets.Layout(width="520px", height="90px"),
        )
        self.value_error = widgets.HTML()
        self.headers = widgets.Textarea(
            description="headers",
            placeholder='{"source": "notebook"}',
            layout=widgets.Layout(width="520px", height="48px"),
        )
        self.headers_error = widgets.HTML()
        self.partition = widgets.Dropdown(
            options=[("auto", None)],
            value=None,
            description="partition",
            layout=widgets.Layout(width="200px"),
        )
        self.send_button = primary_button(description="Send", icon="paper-plane")
        self.send_button.add_class("workbench-send")
        self.status = widgets.HTML()
        self.status.add_class("workbench-producer-status")

        # Generator
        self.generator_mode = widgets.ToggleButtons(
            options=["dataset", "template"], value="dataset", description="generate"
        )
        datasets = find_datasets()
        self.generator_file = widgets.Combobox(
            options=datasets,
            value=datasets[0] if datasets else "",
            ensure_option=False,
            description="dataset",
            placeholder="data/orders.jsonl or any JSON-lines file",
            layout=layout,
        )
        self.generator_template = widgets.Textarea(
            value=DEFAULT_TEMPLATE,
            description="template",
            layout=widgets.Layout(width="520px", height="60px"),
        )
        self.generator_key = widgets.Text(description="key", placeholder="{i} or a field: {customer_id}", layout=layout)
        self.generator_rate = widgets.FloatText(
            value=10.0, description="records/s", layout=widgets.Layout(width="200px")
        )
        self.generator_limit = widgets.IntText(
            value=0,
            description="limit",
            tooltip="0: the dataset once, or a template until stopped",
            layout=widgets.Layout(width="200px"),
        )
        self.generator_start = primary_button(description="Start", icon="play")
        self.generator_stop = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.generator_status = widgets.HTML()
        self.generator_status.add_class("workbench-generator-status")

        self._generator_source = widgets.VBox()
        self.children = [
            widgets.HTML("<b>Produce</b>"),
            widgets.HBox([self.topic, self.new_partitions, self.create_button]),
            self.topic_status,
            self.key,
            widgets.HBox([self.value_format, self.partition, self.value_schema]),
            self.value,
            self.value_error,
            self.headers,
            self.headers_error,
            widgets.HBox([self.send_button]),
            self.status,
            widgets.HTML("<hr style='margin:6px 0'><b>Generator</b>"),
            self.generator_mode,
            self._generator_source,
            self.generator_key,
            widgets.HBox([self.generator_rate, self.generator_limit, self.generator_start, self.generator_stop]),
            self.generator_status,
        ]

        self.topic.observe(self._on_topic, "value")
        self.value.observe(self._on_change, "value")
        self.value_format.observe(self._on_change, "value")
        self.value_schema.observe(self._on_schema, "value")
        self.headers.observe(self._on_change, "value")
        self.generator_mode.observe(self._on_mode, "value")
        self.generator_template.observe(self._on_change, "value")
        self.generator_rate.observe(self._on_change, "value")
        self.generator_limit.observe(self._on_change, "value")
        self.generator_file.observe(self._on_change, "value")
        self.send_button.on_click(lambda _b: self.send())
        self.create_button.on_click(lambda _b: self.create_topic())
        self.generator_start.on_click(lambda _b: self.start_generator())
        self.generator_stop.on_click(lambda _b: self.stop_generator())

        self._topic_loop = self._loop(
            "producer-topics", self._refresh_topics_step, 1.0, on_error=self._show_unreachable
        )
        self._pump = self._loop("producer-delivery", self._pump_step, 0.25, on_error=lambda exc: None)
        try:
            self.refresh_topics()
        except Exception as exc:
            self._show_unreachable(exc)
        if topic is not None:
            self.topic.value = topic
        elif self._topics:
            self.topic.value = min(self._topics)
        self._on_mode()
        self._validate()
        self._topic_loop.start()

    # ------------------------------------------------------------------ topics
    def refresh_topics(self) -> dict[str, int]:
        """Ask the cluster for its topics (Metadata); updates the dropdown."""
        md = self._admin().list_topics(timeout=3)
        self._unreachable = ""
        self._topics_at = time.monotonic()
        topics = {
            name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__") and t.error is None
        }
        # A topic created here a moment ago may not be in every broker's metadata yet.
        self._created = {n: (p, at) for n, (p, at) in self._created.items() if time.monotonic() - at < 30}
        for name, (partitions, _at) in self._created.items():
            topics.setdefault(name, partitions)
        changed = topics != self._topics
        self._topics = topics
        if changed:
            with hold(self.topic):
                self.topic.options = sorted(topics)
            self._update_partitions()
        self._refresh_subjects()
        return topics

    def _refresh_topics_step(self) -> None:
        # Every 5 s; every second while the chosen topic is not known yet (metadata of a topic
        # created a moment ago can take a little while to reach every broker).
        chosen = self.topic.value.strip()
        if time.monotonic() - self._topics_at < 5.0 and (not chosen or chosen in self._topics):
            return
        was_unreachable = self._unreachable
        known = self.topic.value in self._topics
        self.refresh_topics()
        if was_unreachable or known != (self.topic.value in self._topics):
            self._validate()

    error_prefix = "cluster unreachable: "

    def _status_widget(self):
        return self.topic_status

    def _show_unreachable(self, exc: BaseException) -> None:
        self._unreachable = short_error(exc)
        self._show_error(exc)

    def _admin(self):
        if not hasattr(self, "_admin_client"):
            self._admin_client = admin_client(self.conn)
        return self._admin_client

    def _update_partitions(self) -> None:
        count = self._topics.get(self.topic.value, 0)
        options = [("auto", None)] + [(str(p), p) for p in range(count)]
        if list(self.partition.options) != options:
            current = self.partition.value
            with hold(self.partition):
                self.partition.options = options
                self.partition.value = current if current is not None and current < count else None

    def _on_topic(self, _change=None) -> None:
        self._topic_note = ""
        name = self.topic.value.strip()
        if name and name not in self._topics:
            try:
                self.refresh_topics()
            except Exception as exc:
                self._show_unreachable(exc)
        self._update_partitions()
        self._validate()

    def create_topic(self) -> bool:
        """Create the topic named in the topic box with `new_partitions` partitions."""
        name = self.topic.value.strip()
        problem = self._topic_name_problem(name)
        if problem:
            self.topic_status.value = message(problem)
            return False
        if name in self._topics:
            self.topic_status.value = message(
                f"topic {name!r} already exists ({self._topics[name]} partitions)", "info"
            )
            return False
        try:
            self.conn.create_topic(name, partitions=int(self.new_partitions.value))
            self._created[name] = (int(self.new_partitions.value), time.monotonic())
            self.refresh_topics()
        except Exception as exc:
            self.topic_status.value = message(short_error(exc))
            return False
        self._topic_note = f"created topic {name!r} with {self.new_partitions.value} partitions"
        self._update_partitions()
        self._validate()
        return True

    @staticmethod
    def _topic_name_problem(name: str) -> str:
        if not name:
            return "choose a topic, or type a new name and press Create topic"
        problem = topic_name_problem(name)
        return f"{name!r} is not a valid topic name: {problem}" if problem else ""

    # ------------------------------------------------------------------ validation
    def _on_schema(self, _change=None) -> None:
        """A subject chosen (or cleared): fetch its latest schema from the registry."""
        subject = self.value_schema.value.strip()
        self._subject, self._subject_problem = None, ""
        if subject:
            from workbench.widgets._schemas import SubjectSchema, registry_url

            url = registry_url(self.conn)
            if not url:
                self._subject_problem = "this connection has no schema registry (Cluster(schema_registry=True))"
            else:
                try:
                    self._subject = SubjectSchema(url, subject)
                except Exception as exc:
                    self._subject_problem = short_error(exc)
        self._validate()

    def _refresh_subjects(self) -> None:
        from workbench.widgets._schemas import registry_url, subjects

        try:
            found = subjects(registry_url(self.conn))
        except Exception:
            return
        if tuple(found) != tuple(self.value_schema.options):
            self.value_schema.options = found

    def _parse_value(self) -> tuple[bytes | None, str]:
        """(encoded value, error text)."""
        text = self.value.value
        if self.value_schema.value.strip():
            return self._parse_typed(text)
        if self.value_format.value == "text":
            return text.encode("utf-8"), ""
        if not text.strip():
            return None, ""
        try:
            return _compact(json.loads(text)), ""
        except ValueError as exc:
            return None, f"value is not valid JSON: {exc}"

    def _parse_typed(self, text: str) -> tuple[bytes | None, str]:
        """The value typed as JSON, checked against the chosen subject and framed with its id."""
        if self._subject is None:
            return None, self._subject_problem or "choose a registered subject"
        try:
            value = json.loads(text)
        except ValueError as exc:
            return None, f"value is not valid JSON: {exc}"
        problem = self._subject.problem(value)
        if problem:
            return None, f"does not match the schema: {problem}"
        try:
            return self._subject.encode(value), ""
        except Exception as exc:
            return None, f"does not match the schema: {short_error(exc)}"

    def _parse_headers(self) -> tuple[list[tuple[str, bytes | None]], str]:
        text = self.headers.value.strip()
        if not text:
            return [], ""
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            return [], f"headers are not valid JSON: {exc}"
        if not isinstance(parsed, dict):
            return [], 'headers must be a JSON object, e.g. {"source": "notebook"}'
        return [(str(k), _encode_header(v)) for k, v in parsed.items()], ""

    def _topic_problem(self) -> str:
        name = self.topic.value.strip()
        problem = self._topic_name_problem(name)
        if problem:
            return problem
        if name not in self._topics:
            return f"topic {name!r} does not exist: press Create topic to make it"
        return ""

    def _validate(self) -> bool:
        """Show inline errors; enable Send only when the record can be sent."""
        _, value_problem = self._parse_value()
        _, header_problem = self._parse_headers()
        topic_problem = self._topic_problem()
        empty_note = (
            "empty value: sends a null value (a tombstone)"
            if not value_problem and self.value_format.value == "JSON" and not self.value.value.strip()
            else ""
        )
        stopped = self.closed_reason()
        with hold(self.value_error, self.headers_error, self.send_button, self.topic_status):
            self.value_error.value = message(value_problem) if value_problem else message(empty_note, "info")
            self.headers_error.value = message(header_problem)
            if stopped:
                self.send_button.disabled = True
                self.send_button.tooltip = stopped
                self.topic_status.value = message(f"stopped: {stopped}")
                return False
            if self._unreachable:
                self.topic_status.value = message(f"cluster unreachable: {self._unreachable}")
            elif topic_problem:
                self.topic_status.value = message(topic_problem, "warn")
            else:
                self.topic_status.value = message(self._topic_note, "ok")
            self.send_button.disabled = bool(value_problem or header_problem or topic_problem or self._closed)
        self._validate_generator()
        return not self.send_button.disabled

    def _on_change(self, _change=None) -> None:
        self._validate()

    # ------------------------------------------------------------------ sending
    def _get_producer(self):
        if self._closed or connection_closed(self.conn):
            raise RuntimeError("this panel is closed" if self._closed else "the cluster is stopped")
        with self._producer_lock:
            if self._producer is None:
                # Errors (an unknown topic, brokers gone) come back within 15 s instead of Kafka's 5 min.
                self._producer = self.conn.producer(**{"message.timeout.ms": 15000, "logger": KAFKA_LOGGER})
                self._pump.start()
            return self._producer

    def _pump_step(self) -> None:
        producer = self._producer
        if producer is not None:
            producer.raw.poll(0.25)

    def send(self) -> bool:
        """Send the record described by the panel; the delivery report appears in `status`."""
        name = self.topic.value.strip()
        if name and name not in self._topics:
            try:
                self.refresh_topics()
            except Exception as exc:
                self._show_unreachable(exc)
        if not self._validate():
            self.status.value = message("not sent: fix the message above first")
            return False
        value, _ = self._parse_value()
        headers, _ = self._parse_headers()
        key = self.key.value or None
        partition = self.partition.value
        started = time.monotonic()

        def on_delivery(err, msg) -> None:
            ms = (time.monotonic() - started) * 1000
            if err is not None:
                self.last_delivery = err.str()
                self.status.value = message(f"not delivered: {err.str()}")
            else:
                self.last_delivery = Delivery(msg.topic(), msg.partition(), msg.offset())
                self.status.value = message(
                    f"delivered to {msg.topic()} partition {msg.partition()} offset {msg.offset()} ({ms:.0f} ms)",
                    "ok",
                )

        self.last_delivery = None
        self.status.value = message(f"sending to {name}…", "info")
        try:
            self._get_producer().send(
                name, value, key, partition=partition, headers=headers or None, on_delivery=on_delivery
            )
        except Exception as exc:
            self.last_delivery = short_error(exc)
            self.status.value = message(f"not sent: {short_error(exc)}")
            return False
        return True

    # ------------------------------------------------------------------ generator
    def _on_mode(self, _change=None) -> None:
        if self.generator_mode.value == "dataset":
            self._generator_source.children = [self.generator_file]
        else:
            self._generator_source.children = [self.generator_template]
        self._validate_generator()

    def _generator_problem(self) -> str:
        try:
            rate = float(self.generator_rate.value)
        except (TypeError, ValueError):
            rate = float("nan")
        if not (0 < rate <= MAX_RATE):
            return f"rate must be between 0 and {MAX_RATE:g} records/s, not {self.generator_rate.value}"
        if self.generator_limit.value < 0:
            return "limit must be 0 (no limit) or a positive number of records"
        if self.generator_mode.value == "template":
            if self.value_format.value == "JSON":
                try:
                    json.loads(render_template(self.generator_template.value, 0))
                except ValueError as exc:
                    return f"template does not render to JSON: {exc}"
        else:
            path = self._dataset_path()
            if path is None:
                return "choose a dataset file (JSON lines), e.g. data/orders.jsonl"
            if not path.is_file():
                return f"no such dataset file: {path}"
        return ""

    def _dataset_path(self) -> Path | None:
        text = self.generator_file.value.strip()
        if not text:
            return None
        path = Path(text).expanduser()
        if not path.is_absolute() and not path.exists():
            for root in (Path.cwd().parent, Path(__file__).resolve().parents[2]):
                if (root / path).exists():
                    return root / path
        return path

    def _validate_generator(self) -> None:
        if self.generator_running:
            return
        problem = self._generator_problem()
        self.generator_start.disabled = bool(problem) or self._closed or self.closed_reason() is not None
        if problem:
            self.generator_status.value = message(problem, "warn")
        elif "workbench-warn" in self.generator_status.value:
            self.generator_status.value = ""

    @property
    def generator_running(self) -> bool:
        return self._generator_thread is not None and self._generator_thread.is_alive()

    def _records(self, limit: int) -> Iterator[tuple[bytes | None, str | None]]:
        """(value, key) pairs for the generator: the dataset's lines (looping when `limit` asks
        for more) or the rendered template."""
        key_template = self.generator_key.value
        as_text = self.value_format.value == "text"
        if self.generator_mode.value == "template":
            template = self.generator_template.value
            i = 0
            while True:
                text = render_template(template, i)
                value = text.encode("utf-8") if as_text else _compact(json.loads(text))
                yield value, render_key(key_template, i, None)
                i += 1
        path = self._dataset_path()
        i = 0
        while True:
            produced_any = False
            with open(path, encoding="utf-8") as lines:
                for line in lines:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        record = json.loads(line)
                        value = line.encode("utf-8") if as_text else _compact(record)
                    except ValueError:
                        record, value = None, line.encode("utf-8")
                    yield value, render_key(key_template, i, record)
                    produced_any = True
                    i += 1
            if limit == 0 or not produced_any:
                return

    def start_generator(self) -> bool:
        """Start producing at `generator_rate` records/s (up to `generator_limit`, 0: no limit)."""
        if self.generator_running:
            return False
        topic_problem = self._topic_problem()
        problem = topic_problem or self._generator_problem()
        if problem:
            self.generator_status.value = message(problem)
            return False
        rate, limit, topic = (
            float(self.generator_rate.value),
            int(self.generator_limit.value),
            self.topic.value,
        )
        records = self._records(limit)
        self.generated = self.generator_failed = self._generator_sent = 0
        self._generator_stop.clear()
        try:
            self._get_producer()
        except Exception as exc:
            self.generator_status.value = message(short_error(exc))
            return False
        self._generator_thread = threading.Thread(
            target=self._generate,
            args=(topic, records, rate, limit),
            name=THREAD_PREFIX + "producer-generator",
            daemon=True,
        )
        with hold(self.generator_start, self.generator_stop):
            self.generator_start.disabled = True
            self.generator_stop.disabled = False
        self._generator_thread.start()
        return True

    def stop_generator(self, timeout: float = 10.0) -> None:
        """Stop the generator; records already queued are still delivered."""
        self._generator_stop.set()
        thread = self._generator_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _on_generated(self, err, _msg) -> None:
        if err is None:
            self.generated += 1
        else:
            self.generator_failed += 1
            self._generator_error = err.str()

    def _show_generator(self, state: str, rate: float | None = None) -> None:
        text = f"{state} · {self.generated} delivered · {self._generator_sent} sent"
        if self.generator_failed:
            text += f" · {self.generator_failed} failed ({getattr(self, '_generator_error', '')})"
        if rate is not None:
            text += f" · {rate:.1f} records/s"
        self.generator_status.value = message(
            text, "error" if self.generator_failed else ("info" if state == "running" else "ok")
        )

    def _generate(self, topic: str, records: Iterator, rate: float, limit: int) -> None:
        producer = self._get_producer()
        started = time.monotonic()
        state = "done"
        try:
            while not self._generator_stop.is_set() and (limit == 0 or self._generator_sent < limit):
                due = started + self._generator_sent / rate
                wait = due - time.monotonic()
                if wait > 0:
                    self._generator_stop.wait(min(wait, 0.25))
                else:
                    try:
                        value, key = next(records)
                    except StopIteration:
                        break
                    producer.send(topic, value, key, on_delivery=self._on_generated)
                    self._generator_sent += 1
                now = time.monotonic()
                if now - self._last_ui >= 0.25:
                    self._last_ui = now
                    self._show_generator("running", self._generator_sent / max(now - started, 1e-9))
            if self._generator_stop.is_set():
                state = "stopped"
            deadline = time.monotonic() + 15
            while (
                self.generated + self.generator_failed < self._generator_sent
                and time.monotonic() < deadline
                and not (self._closed and self._generator_stop.is_set())
            ):
                producer.raw.poll(0.1)
        except Exception as exc:
            state = f"failed: {short_error(exc)}"
        elapsed = time.monotonic() - started
        if not self._closed:
            self._show_generator(state, self._generator_sent / max(elapsed, 1e-9))
            with hold(self.generator_start, self.generator_stop):
                self.generator_stop.disabled = True
                self.generator_start.disabled = False

    # ------------------------------------------------------------------ lifecycle
    def _stop_threads(self) -> None:
        self._generator_stop.set()
        thread = self._generator_thread
        if thread is not None:
            thread.join(10)
        super()._stop_threads()

    def _release_clients(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None and not connection_closed(self.conn):
            with contextlib.suppress(Exception):  # records still queued after 2 s are given up
                producer.flush(2)
        super()._release_clients()

    def pause(self) -> None:
        """Hidden (a dashboard tab): stop refreshing the topic list; deliveries are still reported."""
        self._topic_loop.pause()

    def resume(self) -> None:
        self._topic_loop.resume()
