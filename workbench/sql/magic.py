"""`%%sql` and `%sql` for IPython / Jupyter: `%load_ext workbench`, then

    %%sql
    SELECT kind, count(*) FROM orders GROUP BY kind

runs against the most recently created `Cluster` or `workbench.connect(...)` connection; name
another one with `%%sql other_cluster`, and keep the DataFrame with `%%sql -o result`.
Errors print DuckDB's message, not a traceback.
"""

from __future__ import annotations

import shlex

from workbench.sql.errors import SqlError


def _parse(line: str) -> tuple[str | None, str | None, str]:
    """'[connection] [-o name] [query...]' -> (connection, output variable, rest of the line)."""
    words = shlex.split(line, posix=False) if line.strip() else []
    connection = output = None
    rest: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-o", "--out") and i + 1 < len(words):
            output = words[i + 1]
            i += 2
            continue
        if not rest and connection is None and w.isidentifier() and w.upper() not in _SQL_STARTS:
            connection = w
        else:
            rest.append(w)
        i += 1
    return connection, output, " ".join(rest)


_SQL_STARTS = {
    "SELECT",
    "WITH",
    "FROM",
    "DESCRIBE",
    "SHOW",
    "SUMMARIZE",
    "PRAGMA",
    "EXPLAIN",
    "CREATE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "DROP",
    "COPY",
    "VALUES",
    "TABLE",
    "SET",
    "ALTER",
    "CALL",
}


def sql_magic(line: str, cell: str | None = None, *, shell=None):
    from workbench.sql.mixin import SqlMixin, latest_connection

    connection_name, output, rest = _parse(line)
    query = (rest + "\n" + (cell or "")).strip()
    ns = shell.user_ns if shell is not None else {}
    if connection_name is not None:
        conn = ns.get(connection_name)
        if not isinstance(conn, SqlMixin):
            query = (connection_name + " " + query).strip()
            conn = None
    else:
        conn = None
    if conn is None:
        conn = latest_connection()
    if conn is None:
        print("SqlError: no cluster: create one first, e.g. cluster = Cluster(brokers=1)")
        return None
    try:
        df = conn.sql(query)
    except SqlError as exc:
        print(f"{type(exc).__name__}: {exc}")
        return None
    if output:
        ns[output] = df
    return df


def load_ipython_extension(ipython) -> None:
    """Registers `%sql` and `%%sql` (what `%load_ext workbench` calls)."""

    def magic(line, cell=None):
        return sql_magic(line, cell, shell=ipython)

    ipython.register_magic_function(magic, "line_cell", "sql")
