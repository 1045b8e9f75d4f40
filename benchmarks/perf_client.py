"""Client side of the benchmarks, one measurement per process (run by `run_all.py`, or by hand):

    python benchmarks/perf_client.py produce  --bootstrap B --topic T --records N [--acks all] [--linger-ms 5]
    python benchmarks/perf_client.py consume  --bootstrap B --topic T --records N
    python benchmarks/perf_client.py e2e-produce --bootstrap B --topic T --rate 10000 --seconds 10
    python benchmarks/perf_client.py e2e-consume --bootstrap B --topic T --records N
    python benchmarks/perf_client.py loopback --records N

Each prints one JSON object on its last stdout line. `produce`/`consume` follow Kafka's
producer-perf-test/consumer-perf-test: fixed-size records from one random payload, no keys, one client
thread, time from the first send to the last acknowledgement (producer) or from the first record to the
last (consumer). `loopback` pushes the bytes those records occupy on the wire (record batches of the
same size, framed like requests) through a plain TCP socket to a process that discards them: the
ceiling no broker on this machine can pass.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import sys
import time
from multiprocessing import get_context

import confluent_kafka as ck

VALUE_SIZE = 100


def payload(size: int) -> bytes:
    """One random payload of printable bytes, reused for every record (as producer-perf-test does)."""
    rnd = random.Random(42)
    return bytes(rnd.randrange(65, 91) for _ in range(size))


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def producer_conf(args) -> dict:
    conf = {
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": args.linger_ms,
        "batch.size": args.batch_size,
        "batch.num.messages": args.batch_num_messages,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "none",
        "enable.idempotence": args.idempotence,
        "message.timeout.ms": 120_000,
    }
    if args.max_in_flight:
        conf["max.in.flight.requests.per.connection"] = args.max_in_flight
    return conf


def cmd_produce(args) -> dict:
    conf = producer_conf(args)
    p = ck.Producer(conf)
    p.list_topics(args.topic, timeout=30)  # connect and learn leaders before the clock starts
    value = payload(args.size)
    errors = [0]
    first_error: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors[0] += 1
            if not first_error:
                first_error.append(str(err))

    produce, poll, topic, n = p.produce, p.poll, args.topic, args.records
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    for i in range(n):
        try:
            produce(topic, value, on_delivery=on_delivery)
        except BufferError:
            poll(0.005)
            produce(topic, value, on_delivery=on_delivery)
        if i & 0x3FFF == 0:
            poll(0)
    sent_s = time.perf_counter() - t0
    left = p.flush(300)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    mb = n * args.size / 1e6
    return {
        "records": n,
        "value_bytes": args.size,
        "seconds": round(seconds, 3),
        "records_per_s": round(n / seconds),
        "mb_per_s": round(mb / seconds, 2),
        "enqueue_seconds": round(sent_s, 3),
        "errors": errors[0] + left,
        "first_error": first_error[:1],
        "client_cpu_s": round(cpu, 2),
        "config": {k: v for k, v in conf.items() if k != "bootstrap.servers"},
    }


def consumer(args, **extra) -> ck.Consumer:
    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": f"perf-{os.getpid()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 1_048_576,
        "queued.min.messages": 100_000,
        # librdkafka (>= 2.4) postpones a partition's next fetch by this much whenever its local queue is
        # over the thresholds above; the default, 1000 ms, made both brokers look ~10x slower than they are.
        "fetch.queue.backoff.ms": 1,
        **extra,
    }
    c = ck.Consumer(conf)
    md = c.list_topics(args.topic, timeout=30)
    parts = sorted(md.topics[args.topic].partitions)
    c.assign([ck.TopicPartition(args.topic, p, ck.OFFSET_BEGINNING) for p in parts])
    return c


def available(c: ck.Consumer, topic: str) -> int:
    """Records retained now (sum of high minus low watermarks): the mock cluster keeps only the newest
    few MB per partition, so the consumer reads what is there rather than waiting for what was dropped."""
    md = c.list_topics(topic, timeout=30)
    total = 0
    for p in md.topics[topic].partitions:
        lo, hi = c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=30)
        total += hi - lo
    return total


def cmd_consume(args) -> dict:
    t_start = time.perf_counter()
    c = consumer(args)
    retained = available(c, args.topic)
    n, got, nbytes, errors = min(args.records, retained), 0, 0, 0
    t_first = None
    cpu0 = cpu_seconds()
    deadline = time.monotonic() + args.timeout
    while got < n and time.monotonic() < deadline:
        # consume() waits for all num_messages (or the timeout): never ask for more than remain.
        msgs = c.consume(num_messages=min(10_000, n - got), timeout=1.0)
        for m in msgs:
            if m.error() is not None:
                errors += 1
                continue
            got += 1
            nbytes += len(m.value())
        if msgs and t_first is None:
            t_first = time.perf_counter()
    t_end = time.perf_counter()
    cpu = cpu_seconds() - cpu0
    c.close()
    steady = t_end - (t_first or t_end)
    return {
        "records": got,
        "expected": n,
        "produced": args.records,
        "retained": retained,
        "errors": errors,
        "seconds": round(steady, 3),
        "records_per_s": round(got / steady) if steady > 0 else None,
        "mb_per_s": round(nbytes / 1e6 / steady, 2) if steady > 0 else None,
        "seconds_including_connect": round(t_end - t_start, 3),
        "client_cpu_s": round(cpu, 2),
    }


def cmd_e2e_consume(args) -> dict:
    """Consume timestamped records; latency = receipt minus the CLOCK_MONOTONIC time in the value."""
    c = consumer(args, **{"fetch.wait.max.ms": args.fetch_wait_ms, "fetch.min.bytes": 1})
    print("READY", flush=True)
    lat_ms: list[float] = []
    warm = 0
    deadline = time.monotonic() + args.timeout
    while len(lat_ms) < args.records and time.monotonic() < deadline:
        m = c.poll(0.1)  # returns as soon as one record is there (consume() would wait for a batch)
        now = time.monotonic_ns()
        if m is not None and m.error() is None:
            v = m.value()
            if v[:1] == b"W":
                warm += 1
            else:
                lat_ms.append((now - int(v[1:21])) / 1e6)
    c.close()
    lat_ms.sort()
    k = len(lat_ms)

    def pct(q: float) -> float | None:
        return round(lat_ms[min(k - 1, int(k * q))], 3) if k else None

    return {
        "records": k,
        "expected": args.records,
        "warmup_records": warm,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": round(lat_ms[-1], 3) if k else None,
        "mean_ms": round(sum(lat_ms) / k, 3) if k else None,
        "fetch_wait_max_ms": args.fetch_wait_ms,
    }


def cmd_e2e_produce(args) -> dict:
    """Produce at a fixed rate, each value starting with its CLOCK_MONOTONIC send time in ns."""
    conf = producer_conf(args)
    p = ck.Producer(conf)
    p.list_topics(args.topic, timeout=30)
    pad = payload(args.size)[21:]
    rate, produce, poll, topic = args.rate, p.produce, p.poll, args.topic
    sent = 0
    acks: list[float] = []  # produce() to acknowledgement, from librdkafka (msg.latency())
    measuring = [False]

    def on_delivery(err, msg):
        if err is None and measuring[0] and msg.value()[:1] == b"M":
            acks.append(msg.latency() * 1000)

    for phase, seconds, tag in (("warmup", args.warmup, b"W"), ("measure", args.seconds, b"M")):
        n_phase = int(rate * seconds)
        measuring[0] = tag == b"M"
        start = time.monotonic()
        i = 0
        while i < n_phase:
            due = min(n_phase, int((time.monotonic() - start) * rate) + 1)
            while i < due:
                produce(topic, tag + b"%020d" % time.monotonic_ns() + pad, on_delivery=on_delivery)
                i += 1
            poll(0)
            time.sleep(0.0002)
        if phase == "measure":
            sent = n_phase
            achieved = n_phase / (time.monotonic() - start)
    p.flush(120)
    acks.sort()
    k = len(acks)
    return {
        "records": sent,
        "rate_target": rate,
        "rate_achieved": round(achieved),
        "ack_ms_p50": round(acks[k // 2], 3) if k else None,
        "ack_ms_p99": round(acks[min(k - 1, int(k * 0.99))], 3) if k else None,
        "ack_ms_max": round(acks[-1], 3) if k else None,
        "config": {k: v for k, v in conf.items() if k != "bootstrap.servers"},
    }


def _discard(sock_fd_port: int, ready) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    ready.send(srv.getsockname()[1])
    conn, _ = srv.accept()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    while True:
        k = conn.recv_into(view)
        if not k:
            break
        total += k
    conn.sendall(total.to_bytes(8, "big"))
    conn.close()


def cmd_loopback(args) -> dict:
    """The wire bytes of `records` 100-byte records, in record batches the size the producer builds,
    each framed as a request (4-byte size), pushed to a discarding reader in another process."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    value = payload(args.size)
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=args.batch_size * 2,
    )
    per_batch = 0
    ts = int(time.time() * 1000)
    while per_batch < args.batch_num_messages and builder.size() + VALUE_SIZE + 16 <= args.batch_size:
        builder.append(per_batch, timestamp=ts, key=None, value=value, headers=[])
        per_batch += 1
    batch = bytes(builder.build())
    frame = (len(batch)).to_bytes(4, "big") + batch
    batches = max(1, args.records // per_batch)
    ctx = get_context("spawn")
    parent, child = ctx.Pipe()
    reader = ctx.Process(target=_discard, args=(0, child), daemon=True)
    reader.start()
    port = parent.recv()
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    for _ in range(batches):
        s.sendall(frame)
    s.shutdown(socket.SHUT_WR)
    total = int.from_bytes(s.recv(8), "big")
    seconds = time.perf_counter() - t0
    s.close()
    reader.join(5)
    records = batches * per_batch
    return {
        "records": records,
        "records_per_batch": per_batch,
        "batch_bytes": len(batch),
        "wire_bytes_per_record": round(len(frame) / per_batch, 1),
        "bytes": total,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds),
        "mb_per_s": round(records * args.size / 1e6 / seconds, 2),
        "wire_mb_per_s": round(total / 1e6 / seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["produce", "consume", "e2e-produce", "e2e-consume", "loopback"])
    ap.add_argument("--bootstrap", default="")
    ap.add_argument("--topic", default="perf")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=VALUE_SIZE)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1_048_576)
    ap.add_argument("--batch-num-messages", type=int, default=10_000)
    ap.add_argument("--idempotence", action="store_true")
    ap.add_argument("--max-in-flight", type=int, default=0, help="0: librdkafka's default (1,000,000)")
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--fetch-wait-ms", type=int, default=500, help="consumer fetch.wait.max.ms (e2e-consume)")
    args = ap.parse_args(argv)
    fn = {
        "produce": cmd_produce,
        "consume": cmd_consume,
        "e2e-produce": cmd_e2e_produce,
        "e2e-consume": cmd_e2e_consume,
        "loopback": cmd_loopback,
    }[args.command]
    print(json.dumps(fn(args)), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
