"""The ``workbench.duckdb`` catalog's view of an embedded cluster's fresh records (issue 17).

Plain DuckDB, without the workbench running, must see what `cluster.sql` sees up to the freshness
bound, with default settings. The brokers already publish every committed record as Parquet within
about a second (sealed files and tail files, `workbench.storage.parquet_tail`; never above the last
stable offset, never an aborted record), so the view reads those, in SQL, by the Parquet tier's own
rules, and needs no process of its own (an Iceberg committer costs 190-300 MB per broker):

* **one copy per partition**: every replica has its own directory (``broker-<id>/topics/<topic>/
  partition=<p>/``), so per partition the view picks one broker's copy, the one whose contiguous
  run of files reaches furthest (ties: the lowest broker id), and never unions two copies;
* **superseded files**: the brokers never put new content under an existing name (issue 17): a
  longer tail, the sealed file after its tails and a log cleaner's output are each a new file
  (``<base>.g<generation>.parquet``), and the file they supersede stays on disk for
  ``parquet_unlink_grace_ms`` (60 s) so that a query that listed it can still read it. So per
  base offset the view takes the file with the widest range (ties: the highest generation), and a
  file whose range starts inside an earlier file's range of the same copy (a cleaner merge's
  member) is skipped (`workbench.storage.parquet_tier.current_files`, the brokers' own rule);
* **no holes**: a copy is read only up to its first hole (a tail file being rewritten after a
  restart), so a record is never skipped in the middle; a segment's tail chunks and their merges
  (`workbench.storage.parquet_tail`) are contiguous by the same rule, so they read as one run;
* **each file within the range its footer names** (``workbench.next_offset``, read with the file
  list).

A query that runs longer than the grace period can still fail on a file unlinked under it; so
can one that meets a replica truncating a diverged log inside a file (replaced under its name).

The ranges come from ``parquet_kv_metadata`` (footers only); the rows from one ``read_parquet`` over
the same glob joined on ``filename``, which DuckDB turns into a dynamic filter, so only the chosen
files are opened. The two globs are listed when DuckDB binds the query, in the order the ``FROM``
clause names them, so the file list (``ranges``) comes first: the rows' listing is then at least as
new, holds every file the first one chose (superseded files are unlinked only after the grace
period), and a file that appeared in between is simply not joined. The other order let a query
choose a file its rows' listing had not seen yet and drop that file's records (a view that
went back in offsets, found by tests/integration/test_open_tables_concurrent_reads.py).

The glob also matches the catalog's own zero-row anchor
(``<data_dir>/_catalog/topics/<topic>/partition=none/``), so it matches a file before the brokers
wrote one: DuckDB refuses a glob that matches nothing.
"""

from __future__ import annotations

from pathlib import Path

#: The catalog's anchor directory under the data directory; sorts beside ``broker-*`` for the glob.
ANCHOR_DIR = "_catalog"
ANCHOR = "_anchor.parquet"
#: The raw columns of a broker's Parquet file, no rows (what the anchor holds).
EMPTY_RAW_ROWS = (
    'SELECT NULL::BIGINT AS "offset", NULL::TIMESTAMPTZ AS timestamp, NULL::BLOB AS key, NULL::BLOB AS value, '
    "NULL::STRUCT(key VARCHAR, value BLOB)[] AS headers LIMIT 0"
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def anchor_path(data_dir: Path, topic: str) -> Path:
    return Path(data_dir) / ANCHOR_DIR / "topics" / topic / "partition=none" / ANCHOR


def files_glob(data_dir: Path, topic: str) -> str:
    """Every broker's Parquet files of ``topic`` (sealed, tail, merged) and the catalog's anchor."""
    return str(Path(data_dir) / f"[b{ANCHOR_DIR[0]}]*" / "topics" / topic / "partition=*" / "*.parquet")


def broker_files_sql(data_dir: Path, topic: str, above: dict[int, int]) -> str:
    """Raw rows (partition, offset, timestamp, key, value, headers) of ``topic`` from the brokers'
    Parquet files, each committed record once; per partition only offsets at or above ``above``'s
    (what the notebook's cache files already cover)."""
    glob = _literal(files_glob(data_dir, topic))
    floor = " ".join(f"WHEN {int(p)} THEN {int(o)}" for p, o in sorted(above.items()))
    floor_sql = f"CASE partition {floor} ELSE 0 END" if floor else "0"
    return f"""
WITH meta AS (
    SELECT file_name AS f,
        TRY_CAST(regexp_extract(file_name, '/broker-([0-9]+)/topics/', 1) AS INTEGER) AS broker,
        TRY_CAST(regexp_extract(file_name, '/partition=([0-9]+)/[0-9]+([.]g[0-9]+)?[.]parquet$', 1) AS INTEGER)
            AS partition,
        TRY_CAST(regexp_extract(file_name, '/([0-9]+)([.]g[0-9]+)?[.]parquet$', 1) AS BIGINT) AS base,
        coalesce(TRY_CAST(regexp_extract(file_name, '/[0-9]+[.]g([0-9]+)[.]parquet$', 1) AS BIGINT), 0) AS gen,
        TRY_CAST(decode(value) AS BIGINT) AS next
    FROM parquet_kv_metadata({glob})
    WHERE decode(key) = 'workbench.next_offset'
), listed AS (
    SELECT *, max(next) OVER (PARTITION BY broker, partition ORDER BY base, next DESC, gen DESC
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier_end
    FROM meta
    WHERE broker IS NOT NULL AND partition IS NOT NULL AND base IS NOT NULL AND next > base
), live AS (
    SELECT *, coalesce(base > lag(next) OVER (PARTITION BY broker, partition ORDER BY base), false) AS hole
    FROM listed
    WHERE base >= coalesce(earlier_end, base)
), runs AS (
    SELECT *, sum(hole::INTEGER) OVER (PARTITION BY broker, partition ORDER BY base
                                       ROWS UNBOUNDED PRECEDING) AS run
    FROM live
), copies AS (
    SELECT broker, partition, max(next) AS reach FROM runs WHERE run = 0 GROUP BY broker, partition
), chosen AS (
    SELECT broker, partition FROM copies
    QUALIFY row_number() OVER (PARTITION BY partition ORDER BY reach DESC, broker) = 1
), ranges AS (
    SELECT r.f, r.partition, greatest(r.base, {floor_sql.replace("partition", "r.partition")}) AS lo, r.next AS hi
    FROM runs r JOIN chosen c ON r.broker = c.broker AND r.partition = c.partition
    WHERE r.run = 0 AND r.next > {floor_sql.replace("partition", "r.partition")}
)
SELECT g.partition AS partition, d."offset", d.timestamp, d.key, d.value, d.headers
FROM ranges g
JOIN read_parquet({glob}, filename = true, union_by_name = true) d
    ON d.filename = g.f AND d."offset" >= g.lo AND d."offset" < g.hi
"""
