"""Topic-browser pages on a large topic (issue 18: pagination that never loads the whole topic).

    python benchmarks/browser_pages.py                    # 200 000 records, 4 partitions, 1 broker
    python benchmarks/browser_pages.py --records 50000 --limit 50

Fills a topic, then times what a person clicks in `TopicBrowser`: the newest page, a seek by time
to the middle (ListOffsets + one page), Next five times, a seek to offset 0 and Prev before it.
The kernel's resident memory is read after the paging and again after one `SELECT *` of the whole
topic, to show what a page costs next to what loading the topic would. Prints a table and writes
JSON to benchmarks/results/. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's workbench

import pandas as pd

from workbench import Cluster
from workbench.widgets import TopicBrowser


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--limit", type=int, default=100, help="rows per page")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pages-") as tmp, Cluster(brokers=1, data_dir=tmp) as c:
        c.create_topic("big", partitions=args.partitions)
        producer = c.producer(linger_ms=20)
        base = int(time.time() * 1000) - args.records  # one record per ms of event time
        for i in range(args.records):
            producer.send("big", {"id": i, "kind": "click", "note": "x" * 60}, key=str(i % 997), timestamp=base + i)
        producer.flush()
        assert c.sql('SELECT count(*) AS n FROM "big"')["n"].iloc[0] == args.records
        browser = TopicBrowser(c, "big", tail=False, limit=args.limit)
        try:
            rss_before = rss_mb()
            rows.append({"step": "newest page", "seconds": timed(browser.refresh), "rows": len(browser.rows)})
            middle = pd.Timestamp(base + args.records // 2, unit="ms", tz="UTC").isoformat()

            def seek_middle() -> None:
                browser.seek_time.value = middle
                browser.refresh()

            rows.append({"step": "seek by time (middle)", "seconds": timed(seek_middle), "rows": len(browser.rows)})
            nexts = [timed(browser.next_page) for _ in range(5)]
            rows.append(
                {"step": "next page (median of 5)", "seconds": statistics.median(nexts), "rows": len(browser.rows)}
            )

            def seek_start() -> None:
                browser.seek_time.value = ""
                browser.seek_offset.value = 0
                browser.refresh()

            rows.append({"step": "seek offset 0", "seconds": timed(seek_start), "rows": len(browser.rows)})
            browser.seek_offset.value = args.records // (2 * args.partitions)
            browser.refresh()
            rows.append(
                {"step": "prev page (before a seek)", "seconds": timed(browser.prev_page), "rows": len(browser.rows)}
            )
            rss_paged = rss_mb()
            floor = statistics.median(timed(lambda: c.sql('SELECT 1 FROM "big" LIMIT 1')) for _ in range(3))
            rows.append({"step": "any query of the topic", "seconds": floor, "rows": 1})
        finally:
            browser.close()
        full = timed(lambda: c.sql('SELECT * FROM "big"'))
        rss_full = rss_mb()
    print(f"{args.records} records, {args.partitions} partitions, {args.limit} rows a page")
    print(f"{'step':<28} {'seconds':>8} {'rows':>6}")
    for r in rows:
        print(f"{r['step']:<28} {r['seconds']:>8.3f} {r['rows']:>6}")
    print(f"{'SELECT * (whole topic)':<28} {full:>8.3f} {args.records:>6}")
    print(
        f"kernel RSS: {rss_before:.0f} MB before paging, {rss_paged:.0f} MB after, "
        f"{rss_full:.0f} MB after one SELECT * of the topic"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-browser-pages.json"
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), **vars(args)}
    memory = {"rss_before_mb": rss_before, "rss_after_paging_mb": rss_paged, "rss_after_select_all_mb": rss_full}
    path.write_text(json.dumps({"meta": meta, "pages": rows, "select_all_s": full, "memory": memory}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
