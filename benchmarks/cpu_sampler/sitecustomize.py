"""A CPU-time sampling profiler for broker processes, loaded as `sitecustomize` (no broker change).

py-spy samples wall-clock time; on a shared, loaded machine a process that is runnable but waiting
for a core still "holds the GIL" and is sampled, so its profile mixes CPU with queueing. This one
samples on `ITIMER_PROF`, which ticks only while the process burns CPU (user + system), so each
sample is a slice of CPU time. Python runs the SIGPROF handler in the main thread at the next
bytecode boundary, so a C call (a socket write, a CRC) is charged to the Python frame that made it.

Active only when `WB_CPU_SAMPLE=<path prefix>` is set in the environment and the process is sent
SIGRTMIN (start sampling every `WB_CPU_SAMPLE_US` µs of CPU, default 1000) and then SIGRTMIN+1 (stop
and write `<prefix>.<pid>.collapsed`: one `frame;frame;... count` line per stack, flamegraph.pl /
speedscope input). `broker_cpu.py --sample` puts this directory on the brokers' PYTHONPATH.

With `WB_CPU_SAMPLE_CALLS=1` the same two signals run `cProfile` instead and write
`<prefix>.<pid>.calls.json` (Python function calls, total and by function): a count of work
that, unlike CPU time, a loaded machine does not inflate (`replication_cost.py --calls`).
"""

from __future__ import annotations

import os

if os.environ.get("WB_CPU_SAMPLE"):
    import signal
    from collections import Counter

    _counts: Counter = Counter()
    _interval = int(os.environ.get("WB_CPU_SAMPLE_US", "1000")) / 1e6

    def _name(code) -> str:  # type: ignore[no-untyped-def]
        path = code.co_filename
        parts = path.rsplit("/", 2)
        short = "/".join(parts[-2:]) if len(parts) >= 2 else path
        return f"{getattr(code, 'co_qualname', code.co_name)} ({short})"

    def _sample(_sig, frame) -> None:  # type: ignore[no-untyped-def]
        stack = []
        while frame is not None:
            stack.append(frame.f_code)
            frame = frame.f_back
        _counts[tuple(stack)] += 1

    _calls = bool(os.environ.get("WB_CPU_SAMPLE_CALLS"))
    _prof: list = []

    def _start(_sig, _frame) -> None:  # type: ignore[no-untyped-def]
        if _calls:
            import cProfile

            _prof[:] = [cProfile.Profile()]
            _prof[0].enable()
            return
        _counts.clear()
        signal.signal(signal.SIGPROF, _sample)
        signal.setitimer(signal.ITIMER_PROF, _interval, _interval)

    def _stop(_sig, _frame) -> None:  # type: ignore[no-untyped-def]
        if _calls:
            import json
            import pstats

            _prof[0].disable()
            stats = pstats.Stats(_prof[0]).stats  # type: ignore[attr-defined]
            by = sorted(((v[1], f"{k[2]} ({k[0].rsplit('/', 1)[-1]}:{k[1]})") for k, v in stats.items()), reverse=True)
            with open(f"{os.environ['WB_CPU_SAMPLE']}.{os.getpid()}.calls.json", "w") as f:
                json.dump({"calls": sum(n for n, _ in by), "top": by[:40]}, f)
            return
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        out = f"{os.environ['WB_CPU_SAMPLE']}.{os.getpid()}.collapsed"
        with open(out, "w") as f:
            for stack, n in _counts.items():
                f.write(";".join(_name(c) for c in reversed(stack)) + f" {n}\n")

    signal.signal(signal.SIGRTMIN, _start)
    signal.signal(signal.SIGRTMIN + 1, _stop)
