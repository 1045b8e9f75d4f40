"""`python -m workbench.broker`: run one broker process.

Started by `workbench.Cluster`. Prints `READY <port>` on stdout once it
listens, logs to `<broker_dir>/broker.log`, stops cleanly on SIGTERM/SIGINT
(a controlled shutdown first: its leaderships move to other brokers) or on SIGUSR1
(`Cluster.stop()`: the whole cluster is stopping, so there is nobody to hand
leadership to and the broker only flushes its logs), and exits by itself
when the process that started it dies (its stdin pipe closes, or its parent
pid changes), so brokers never outlive a notebook kernel or a test.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from workbench._malloc import keep_large_buffers_in_the_heap
from workbench.broker.broker import Broker
from workbench.broker.config import BrokerConfig


def parse_args(argv: list[str] | None = None) -> BrokerConfig:
    parser = argparse.ArgumentParser(prog="python -m workbench.broker")
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--cluster-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--raft-port", type=int, default=0)
    parser.add_argument(
        "--voters",
        default="{}",
        help='JSON: {"<node id>": ["host", kafka_port, raft_port], ...} (the controller quorum)',
    )
    parser.add_argument("--config", default="{}", help="JSON object of BrokerConfig overrides")
    args = parser.parse_args(argv)
    overrides = json.loads(args.config)
    voters = {int(k): v for k, v in json.loads(args.voters).items()}
    return BrokerConfig(
        node_id=args.node_id,
        cluster_dir=args.cluster_dir,
        host=args.host,
        port=args.port,
        raft_port=args.raft_port,
        voters=voters,
        **overrides,
    )


class ParentWatch:
    """Exit when the process that started us goes, from the first moment of the process on.

    Three signals, any of which is enough: the kernel's parent-death signal
    (``PR_SET_PDEATHSIG``, Linux), EOF on stdin (a pipe only the parent holds
    open) and a changed parent pid. They are armed in `main` before the event
    loop, the metadata log or the controller quorum exist, so a broker started
    while no quorum majority runs (it waits in `Broker.start`) still dies with
    its parent (issue 12, item 9).

    A thread (not the event loop) watches, because `Broker.start` may wait a
    long time for the quorum. Before `attach` there is nothing to flush, so the
    process exits at once; after it the event loop stops the broker cleanly.

    ``PR_SET_PDEATHSIG`` fires when the parent *thread* exits, which is not the
    parent process dying when `Cluster` was called from a worker thread: the
    handler therefore acts only once the parent pid has really changed.
    """

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._lock = threading.Lock()
        self.gone = False

    def arm(self) -> None:
        _set_parent_death_signal(PARENT_DEATH_SIGNAL)
        signal.signal(PARENT_DEATH_SIGNAL, lambda _sig, _frame: self._check_parent())
        if os.getppid() != self.parent_pid:  # died before the signal was armed
            self._parent_gone("the parent exited during start-up")
        if not sys.stdin.isatty():
            threading.Thread(target=self._watch_stdin, name="parent-watch-stdin", daemon=True).start()
        threading.Thread(target=self._poll_parent, name="parent-watch-pid", daemon=True).start()

    def attach(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        """From now on the parent's death stops the broker through its event loop."""
        with self._lock:
            self._loop, self._stop = loop, stop
            gone = self.gone
        if gone:
            stop.set()

    def _check_parent(self) -> None:
        if os.getppid() != self.parent_pid:
            self._parent_gone("parent death signal")

    def _watch_stdin(self) -> None:
        while True:
            try:
                data = os.read(0, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                self._parent_gone("stdin closed")
                return

    def _poll_parent(self) -> None:
        while not self.gone:
            if os.getppid() != self.parent_pid:
                self._parent_gone("re-parented")
                return
            time.sleep(PARENT_POLL_S)

    def _parent_gone(self, why: str) -> None:
        with self._lock:
            self.gone = True
            loop, stop = self._loop, self._stop
        logging.getLogger(__name__).warning("parent process %d is gone (%s): exiting", self.parent_pid, why)
        if loop is None or stop is None:
            os._exit(0)  # not serving yet: nothing to flush or hand over
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop already closed: we are on our way out anyway
            os._exit(0)


PARENT_DEATH_SIGNAL = signal.SIGUSR2
PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` when our parent exits (Linux prctl; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


async def run(config: BrokerConfig, watch: ParentWatch | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    whole_cluster = False

    def on_cluster_stop() -> None:
        # SIGUSR1: the whole cluster stops at once, so there is nobody to hand leadership to.
        nonlocal whole_cluster
        whole_cluster = True
        stop.set()

    loop.add_signal_handler(signal.SIGUSR1, on_cluster_stop)
    if watch is not None:
        watch.attach(loop, stop)
    broker = Broker(config)
    starting = loop.create_task(broker.start())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # Stopped (parent gone, SIGTERM) while still waiting for the quorum: give up the start.
        starting.cancel()
        try:
            await starting
        except (asyncio.CancelledError, Exception):
            pass
        stopping.cancel()
        try:
            await asyncio.wait_for(broker.stop(controlled=False), 5.0)
        except Exception:
            logging.getLogger(__name__).exception("stopping a broker that had not started")
        return
    port = starting.result()
    print(f"READY {port}", flush=True)
    await stopping
    await broker.stop(controlled=not whole_cluster)


def main(argv: list[str] | None = None) -> None:
    keep_large_buffers_in_the_heap()  # see workbench._malloc: halves the CPU of a 1 MB produce
    watch = ParentWatch(os.getppid())
    watch.arm()  # before anything else: a broker must never outlive its parent (see ParentWatch)
    config = parse_args(argv)
    config.broker_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(
        filename=str(config.broker_dir / "broker.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [broker %(process)d] %(name)s: %(message)s",
    )
    try:
        import uvloop  # a faster event loop (libuv), where available
    except ImportError:
        asyncio.run(run(config, watch))
    else:
        uvloop.run(run(config, watch))
    # `Broker.stop()` has closed every log, index and the metadata log: what remains is tearing down
    # the interpreter (freeing a heap of segments, pyarrow, modules), which took about half a second
    # of `Cluster.stop()` and has nothing left to write. Flush what buffers we own and leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
