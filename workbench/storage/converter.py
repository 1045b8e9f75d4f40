"""Parquet conversion in a separate process that only uses idle CPU.

Turning a sealed 16 MiB segment into Parquet decodes ~150,000 records and
builds Arrow columns: about a second of CPU, most of it holding the GIL. Done
in a broker thread it stalled the event loop (the profile put it at 45-63 % of
the broker's CPU during a produce benchmark, and it showed in p99 latency).
Here it runs in a child process at the lowest CPU priority Linux has
(`SCHED_IDLE`, falling back to `nice 19`), so on a machine whose cores are busy
with clients and brokers it takes only what they leave, and never the broker's
GIL. The Parquet tier lags the log a little under load; SQL reads the live tail
from the raw log anyway (`workbench.sql`), so nothing a user sees is missing.

The child is started on the first conversion and exits after
`idle_exit_s` without work, so an idle broker carries no pyarrow at all. It
dies with the broker: it exits when its stdin (a pipe only the broker holds)
closes, and asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG).

Protocol: one JSON object per line each way. The broker sends
``{"id", "segment", "size", "directory", "base_offset", "next_offset", "topic",
"partition", "name"}``; the child reads `size` bytes of the sealed segment, writes
``name`` (a name the broker never used in that directory, `parquet_tier.file_name`) atomically
(temp file, fsync, rename) and answers
``{"id", "ok": true, "path", "base_offset", "next_offset", "max_timestamp", "size"}``
or ``{"id", "ok": false, "error"}`` (the id lets the broker skip the late answer to a
job it abandoned). A job with ``"tail": true`` is a tail file
(`workbench.storage.parquet_tail`): written to ``<base>.parquet.tail.tmp`` and left there, for
the broker to rename under the log's lock. A job with ``"iceberg": true`` commits the
partition's new records to its topic's Iceberg table (`workbench.storage.iceberg_tables`) and
answers with the committed offset range. The broker installs the file only if the log
has not been truncated or the segment deleted meanwhile (`PartitionLog.install_parquet`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from workbench._malloc import keep_large_buffers_in_the_heap

log = logging.getLogger(__name__)

IDLE_EXIT_S = 30.0


# -- the child process ----------------------------------------------------------------------------


def _lower_priority() -> str:
    if "--nice" in sys.argv[1:]:  # the Iceberg committer: below the broker, above SCHED_IDLE
        try:
            os.nice(int(sys.argv[sys.argv.index("--nice") + 1]))
            return "nice"
        except (OSError, IndexError, ValueError):
            return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        try:
            os.nice(19)
            return "nice 19"
        except OSError:
            return "normal"


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stdin EOF still ends us


#: Tail jobs (issue 17): the decoded bytes ``[lo, hi)`` of each growing segment, so a chunk decodes
#: only what was appended since the last one and a merge of chunks (`parquet_tail.plan_merge`)
#: decodes nothing (decoding, in Python, is the cost; writing the Parquet file from Arrow is C++).
#: Keyed by (segment path, generation); oldest dropped first beyond TAIL_CACHE_BYTES of Arrow
#: data, which bounds this process's memory with many partitions. Since the compiled decoder
#: (`record_tables`, ~0.1 us per record) a miss costs little, so the bound is about one segment's
#: records: 256 MiB held 485 MB of peak RSS at 6 partitions, 16 MiB 230 MB at the same CPU (issue 19).
_tail_cache: OrderedDict[tuple[str, str], tuple[int, int, Any]] = OrderedDict()
TAIL_CACHE_BYTES = 16 * 1024 * 1024


def convert_tail(job: dict[str, Any]) -> dict[str, Any]:
    """Write one tail file, offsets ``[base_offset, next_offset)`` from segment bytes
    ``[start_position, size)`` (left at ``.tail.tmp``), decoding only bytes not decoded before."""
    import pyarrow as pa

    from workbench.storage.parquet_tier import decode_table, write_tail_table
    from workbench.storage.record_tables import first_row_at

    key = (job["segment"], str(job.get("generation", "")))
    start, end = int(job.get("start_position", 0)), int(job["size"])
    lo, hi, table = _tail_cache.pop(key, (0, 0, None))
    if table is None or not lo <= start <= hi:
        lo, hi, table = start, start, None  # nothing usable cached: decode the job's bytes only
    if end > hi:
        with open(job["segment"], "rb") as f:
            f.seek(hi)
            data = f.read(end - hi)
        if len(data) != end - hi:
            raise ValueError(f"segment {job['segment']} holds {hi + len(data)} bytes, expected {end}")
        new = decode_table(data)
        table, hi = (new if table is None else pa.concat_tables([table, new])), end
    assert table is not None
    _tail_cache[key] = (lo, hi, table)
    while len(_tail_cache) > 1 and sum(t.nbytes for _, _, t in _tail_cache.values()) > TAIL_CACHE_BYTES:
        _tail_cache.popitem(last=False)
    offsets = table.column("offset")
    first, nxt = job["base_offset"], job["next_offset"]
    if table.num_rows and (offsets[0].as_py() < first or offsets[-1].as_py() >= nxt):
        lo = first_row_at(offsets, first)
        table = table.slice(lo, first_row_at(offsets, nxt) - lo)
    pseg = write_tail_table(
        Path(job["directory"]),
        first,
        nxt,
        table,
        topic=job["topic"],
        partition=job["partition"],
        aborted=[tuple(a) for a in job.get("aborted", [])],
    )
    return _answer(pseg)


def _answer(pseg: Any) -> dict[str, Any]:
    """What the child sends back for a written file (a `ParquetSegment`)."""
    return {
        "ok": True,
        "path": str(pseg.path),
        "base_offset": pseg.base_offset,
        "next_offset": pseg.next_offset,
        "max_timestamp": pseg.max_timestamp,
        "size": pseg.size,
    }


def convert_one(job: dict[str, Any]) -> dict[str, Any]:
    """Convert one sealed segment (or write a tail file, or commit to Iceberg); the answer the
    child sends back."""
    if job.get("iceberg"):
        from workbench.storage.iceberg_tables import publish

        return publish(job)
    if job.get("tail"):
        return convert_tail(job)
    from workbench.storage.parquet_tier import write_segment, write_segment_table

    with open(job["segment"], "rb") as f:
        data = f.read(job["size"])
    if len(data) != job["size"]:
        raise ValueError(f"segment {job['segment']} holds {len(data)} bytes, expected {job['size']}")
    # The segment's tails decoded it already (from its first byte, same log generation): decode
    # only what they had not reached (records above the LSO when it sealed) and write from Arrow.
    cached = _tail_cache.pop((job["segment"], str(job.get("generation", ""))), None)
    if cached is not None and cached[0] == 0 and 0 < cached[1] <= len(data) and "generation" in job:
        import pyarrow as pa

        from workbench.storage.parquet_tier import decode_table

        _lo, hi, table = cached
        if hi < len(data):
            table = pa.concat_tables([table, decode_table(memoryview(data)[hi:])])
        pseg = write_segment_table(
            Path(job["directory"]),
            job["base_offset"],
            job["next_offset"],
            data,
            table,
            topic=job["topic"],
            partition=job["partition"],
            aborted=[tuple(a) for a in job.get("aborted", [])],
            name=job.get("name"),
        )
        return _answer(pseg)
    pseg = write_segment(
        Path(job["directory"]),
        job["base_offset"],
        job["next_offset"],
        data,
        topic=job["topic"],
        partition=job["partition"],
        aborted=[tuple(a) for a in job.get("aborted", [])],
        name=job.get("name"),
    )
    return _answer(pseg)


def main() -> int:
    _die_with_parent()
    _lower_priority()
    keep_large_buffers_in_the_heap()
    parent = os.getppid()
    for line in sys.stdin:
        if os.getppid() != parent:
            return 0
        job: dict[str, Any] = {}
        try:
            job = json.loads(line)
            answer = convert_one(job)
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        answer["id"] = job.get("id") if isinstance(job, dict) else None
        try:
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The broker died (SIGKILL) while we converted: nobody to answer. Exit quietly
            # rather than leave a traceback in its stderr.log, which reads like a broker crash.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    return 0


# -- the broker side ------------------------------------------------------------------------------


class ConversionError(Exception):
    pass


class ParquetConverter:
    """The broker's handle on the converter process: one conversion at a time, started on demand."""

    def __init__(self, idle_exit_s: float = IDLE_EXIT_S, nice: int | None = None) -> None:
        self.idle_exit_s = idle_exit_s
        self.nice = nice  # None: SCHED_IDLE (else nice 19); a number: that niceness instead
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._next_id = 0

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def convert(self, job: dict[str, Any]) -> dict[str, Any]:
        """Send `job` to the child; return its answer. Raises ConversionError on failure."""
        async with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            proc = await self._ensure_started()
            stdin, stdout = proc.stdin, proc.stdout
            if stdin is None or stdout is None:  # started with pipes: cannot happen
                raise ConversionError("converter process has no pipes")
            self._next_id += 1
            job_id = self._next_id
            try:
                stdin.write((json.dumps({**job, "id": job_id}) + "\n").encode())
                await stdin.drain()
                while True:  # an answer to an abandoned (cancelled) job may come first: skip it
                    line = await stdout.readline()
                    if not line or json.loads(line).get("id") == job_id:
                        break
            except (ConnectionError, BrokenPipeError) as exc:
                await self._stop_process()
                raise ConversionError(f"converter process failed: {exc}") from exc
            if not line:
                code = await proc.wait()
                self._proc = None
                raise ConversionError(f"converter process exited with code {code}")
            self._idle_timer = asyncio.get_running_loop().call_later(
                self.idle_exit_s, lambda: asyncio.ensure_future(self._exit_if_idle())
            )
            answer: dict[str, Any] = json.loads(line)
            if not answer.get("ok"):
                raise ConversionError(answer.get("error", "conversion failed"))
            return answer

    async def _ensure_started(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "workbench.storage.converter",
                *(["--nice", str(self.nice)] if self.nice is not None else []),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            log.info("Parquet converter process %d started", self._proc.pid)
        return self._proc

    async def _exit_if_idle(self) -> None:
        if self._lock.locked():
            return
        async with self._lock:
            self._idle_timer = None
            if self._proc is not None:
                log.info(
                    "Parquet converter process %d idle for %.0f s; stopping it",
                    self._proc.pid,
                    self.idle_exit_s,
                )
                await self._stop_process()

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except Exception:
            pass
        try:
            await asyncio.wait_for(proc.wait(), 1.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        await self._stop_process()


if __name__ == "__main__":
    sys.exit(main())
