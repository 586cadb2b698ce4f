"""Locating and reading MIMIC-style CSV tables through DuckDB, with counted skips.

Every table is read with all columns as text (``all_varchar``), so nothing is guessed
from a sample of rows: typing happens afterwards in SQL with ``TRY_CAST`` and each value
that fails to parse is counted in the :class:`~mingle_bench.data.report.LoadReport`.

Rows the CSV reader cannot parse (missing columns, broken quoting) are not fatal: DuckDB's
``store_rejects`` keeps them aside and they are counted per reason. Lines up to
:data:`MAX_LINE_BYTES` (64 MiB) are read, so long notes are kept; a longer one is skipped and
counted with that reason. Invalid UTF-8 bytes
(old note exports contain Latin-1 bytes) are repaired rather than dropped: the file is
streamed once through an incremental UTF-8 decoder that replaces each bad sequence with
U+FFFD, and the replacements are counted. A truncated or corrupt ``.gz`` is an error
naming the file: every ``.gz`` is decompressed once by Python's :mod:`gzip`, which checks
each member's CRC-32 and length trailer (DuckDB does not), before DuckDB reads it.

Before any table is read, its header bytes are sniffed: a gzip stream in a file named
``.csv`` and a CR-only (old Mac) line ending are one-line errors naming the file. When a
folder holds two files for one table (``X.csv`` and ``X.csv.gz``, or ``X.csv`` and ``x.csv``)
whose contents differ, the source is ambiguous and refused naming both files; identical
copies are accepted (the plain ``.csv`` is read).
"""
from __future__ import annotations

import codecs
import ctypes
import gzip
import os
import threading
import weakref
import zlib
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import duckdb

from mingle_bench.data.report import LoadReport
from mingle_bench.io import atomic_path

_SUFFIXES = (".csv.gz", ".csv")
#: the longest CSV line (a whole note with its quoted newlines) the reader accepts: 64 MiB, where
#: DuckDB's default of 2 MB dropped valid long notes; a longer line is skipped and counted under
#: :func:`line_too_long` (the limit costs ~30 MB of reader memory, not 64 MiB per line)
MAX_LINE_BYTES = 64 * 2 ** 20
#: the connections :func:`connect` opened that are still alive, for :func:`interruptible`
_OPEN: "weakref.WeakSet[duckdb.DuckDBPyConnection]" = weakref.WeakSet()
T = TypeVar("T")


def line_too_long() -> str:
    """The skip reason of a line over :data:`MAX_LINE_BYTES`."""
    return f"line longer than the CSV reader's limit of {MAX_LINE_BYTES / 2 ** 20:g} MiB (csvio.MAX_LINE_BYTES), skipped"


def expected_names(table: str) -> str:
    """Human-readable list of the file names accepted for ``table``."""
    return " or ".join(f"{table}{s}" for s in reversed(_SUFFIXES)) + " (file names in any case)"


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _same_content(a: Path, b: Path, chunk: int = 1 << 22) -> bool:
    """Whether two table files hold the same (decompressed) bytes; a broken gzip counts as different."""
    try:
        with _open_bytes(a) as fa, _open_bytes(b) as fb:
            while True:
                x, y = fa.read(chunk), fb.read(chunk)
                if x != y:
                    return False
                if not x:
                    return True
    except (OSError, EOFError, zlib.error):
        return False


def find_table(directory: Path, table: str) -> Path | None:
    """The file holding ``table`` in ``directory`` (``TABLE.csv`` or ``TABLE.csv.gz``, any case).

    Several candidates (``X.csv`` beside ``X.csv.gz``, or ``X.csv`` beside ``x.csv``) are
    accepted only when their contents are identical (the plain ``.csv`` is then read);
    otherwise a :class:`ValueError` names both files.
    """
    if not directory.is_dir():
        return None
    wanted = {f"{table}{s}".lower(): s for s in _SUFFIXES}
    hits = sorted(p for p in directory.iterdir() if p.is_file() and p.name.lower() in wanted)
    if not hits:
        return None
    # Identical copies: read the plain csv.
    hits.sort(key=lambda p: p.name.lower().endswith(".gz"))
    for other in hits[1:]:
        if other.samefile(hits[0]):
            continue
        if not _same_content(hits[0], other):
            raise ValueError(f"ambiguous source for table {table}: {hits[0]} and {other} both exist and differ; "
                             "remove one of them")
    return hits[0]


def locate_tables(directory: str | os.PathLike, tables: Sequence[str], what: str,
                  optional: Sequence[str] = ()) -> dict[str, Path]:
    """Find every table file or raise one :class:`FileNotFoundError` listing all that are missing."""
    d = Path(directory)
    if not d.exists():
        raise FileNotFoundError(f"{what} folder not found: {d}")
    if not d.is_dir():
        raise FileNotFoundError(f"{what} path is not a folder: {d}")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for t in tables:
        p = find_table(d, t)
        if p is None:
            if t not in optional:
                missing.append(expected_names(t))
        else:
            found[t] = p
    if missing:
        raise FileNotFoundError(f"{what} folder {d} lacks required table(s): " + "; ".join(missing))
    return found


def sql_str(s: str | os.PathLike) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def verify_gzip(path: Path, chunk: int = 1 << 22) -> None:
    """Decompress ``path`` once, checking every member's CRC-32 and length; raise naming the file."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(chunk):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({_first_line(exc)}); "
                         "re-download or re-compress it") from None


def repair_utf8(src: Path, dst: Path, chunk: int = 1 << 22) -> int:
    """Stream ``src`` (csv or csv.gz) to plain-csv ``dst`` replacing invalid UTF-8 with U+FFFD.

    Returns the number of replaced byte sequences. Memory stays at one chunk.
    """
    counter = {"n": 0}

    def _count(err: UnicodeDecodeError):
        counter["n"] += 1
        return ("\ufffd", err.end)

    codecs.register_error("mingle_count_replace", _count)
    dec = codecs.getincrementaldecoder("utf-8")(errors="mingle_count_replace")
    with atomic_path(dst) as tmp, _open_bytes(src) as fin, open(tmp, "w", encoding="utf-8", newline="") as fout:
        while True:
            block = fin.read(chunk)
            if not block:
                fout.write(dec.decode(b"", final=True))
                break
            fout.write(dec.decode(block))
    return counter["n"]


class CsvReader:
    """Reads table files into DuckDB relations with lower-case column names."""

    def __init__(self, con: duckdb.DuckDBPyConnection, report: LoadReport, scratch: Path):
        self.con = con
        self.report = report
        self.scratch = scratch

    def _scan_sql(self, path: Path, name: str, cols: list[str]) -> str:
        # No sniffing: the header is parsed by us, every column is text, the dialect is fixed.
        spec = "{" + ", ".join(f"{sql_str(c)}: 'VARCHAR'" for c in cols) + "}"
        return (f"read_csv({sql_str(path)}, header=true, auto_detect=false, columns={spec}, delim=',', "
                f"quote='\"', escape='\"', max_line_size={MAX_LINE_BYTES}, store_rejects=true, "
                f"rejects_table='rej_{name}', rejects_scan='rejscan_{name}')")

    def _drop_exact_duplicates(self, table: str, into: str, cols: list[str]) -> int:
        """Remove rows identical in every column but ROW_ID (first kept); count them."""
        keep = [c for c in dict.fromkeys(cols) if c != "row_id"]
        n0 = int(self.con.execute(f"SELECT count(*) FROM {into}").fetchone()[0])
        part = ", ".join(f'"{c}"' for c in keep)
        order = 'TRY_CAST("row_id" AS BIGINT) NULLS LAST' if "row_id" in cols else "1"
        self.con.execute(f"CREATE OR REPLACE TABLE {into} AS SELECT * FROM {into} "
                         f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY {order}) = 1")
        n = n0 - int(self.con.execute(f"SELECT count(*) FROM {into}").fetchone()[0])
        self.report.skip(f"{table}: exact duplicate row (all columns but ROW_ID equal)", n)
        return n

    def columns(self, path: Path) -> list[str]:
        """The header row, parsed with the csv module (headers never contain newlines)."""
        import csv

        is_gz = path.name.lower().endswith(".gz")
        try:
            with open(path, "rb") as fh:
                magic = fh.read(2)
            if magic == b"\x1f\x8b" and not is_gz:
                raise ValueError(f"{path}: gzip-compressed data in a file named .csv; rename it to "
                                 f"{path.name}.gz")
            with _open_bytes(path) as fh:
                line = fh.readline(1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: cannot read the CSV header ({_first_line(exc)})") from None
        head = line.rstrip(b"\r\n")
        if b"\r" in head:
            raise ValueError(f"{path}: CR-only line endings (old Mac format) found in the header line; "
                             "convert the file to LF or CRLF line endings")
        if b"\x00" in head:
            raise ValueError(f"{path}: NUL bytes found in the header line; not a text CSV file")
        text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
        if not text.strip():
            raise ValueError(f"{path}: empty file, expected a CSV header row")
        try:
            cols = next(csv.reader([text]))
        except csv.Error as exc:
            raise ValueError(f"{path}: cannot parse the CSV header ({exc})") from None
        if len(set(c.strip().lower() for c in cols)) != len(cols):
            raise ValueError(f"{path}: duplicate column names in the header {cols}")
        return cols

    def load(self, table: str, path: Path, required: Sequence[str], *, into: str,
             parquet: Path | None = None) -> list[str]:
        """Create DuckDB table ``into`` from ``path`` with lower-case, all-text columns.

        With ``parquet`` the rows are streamed (``COPY``) into that parquet file instead and
        ``into`` becomes a view over it: the table is never held in memory at once.
        Raises naming the file and the missing columns. Counts rejected CSV lines in the
        report and returns the lower-case column list.
        """
        cols = self.columns(path)
        lower = [c.strip().lower() for c in cols]
        missing = [c for c in required if c not in lower]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {cols}")
        key = "".join(ch if ch.isalnum() else "_" for ch in table.lower())
        select = ", ".join(f'"{c}" AS "{lc}"' for c, lc in zip(cols, lower) if '"' not in c)
        if path.name.lower().endswith(".gz"):
            verify_gzip(path)
        src = path
        for attempt in (0, 1):
            # a fresh rejects table per attempt: the repaired re-read must not count the first pass's lines
            scan = f"SELECT {select} FROM {self._scan_sql(src, f'{key}_{attempt}', cols)}"
            try:
                if parquet is None:
                    self.con.execute(f"CREATE OR REPLACE TABLE {into} AS {scan}")
                else:
                    with atomic_path(parquet) as tmp:
                        self.con.execute(f"COPY ({scan}) TO {sql_str(tmp)} (FORMAT parquet, ROW_GROUP_SIZE 4096, ROW_GROUP_SIZE_BYTES 16777216)")
                    self.con.execute(f"CREATE OR REPLACE VIEW {into} AS SELECT * FROM read_parquet({sql_str(parquet)})")
            except duckdb.InterruptException:  # Ctrl-C during the parse: an interrupt, not a bad file
                raise KeyboardInterrupt from None
            except duckdb.Error as exc:
                if "gzip" in str(exc).lower():
                    raise ValueError(f"{path}: truncated or corrupt gzip file ({_first_line(exc)}); "
                                     "re-download or re-compress it") from None
                raise ValueError(f"{path}: cannot be read ({_first_line(exc)})") from None
            # one count per rejected line (a line missing 5 columns yields 5 error rows)
            rej = dict(self.con.execute(
                f"SELECT error_type, count(*) FROM (SELECT file_id, line, min(error_type) AS error_type "
                f"FROM rej_{key}_{attempt} GROUP BY file_id, line) GROUP BY 1").fetchall())
            if attempt == 0 and (rej.get("INVALID ENCODING") or rej.get("INVALID UNICODE")):
                fixed = self.scratch / f"{key}.utf8.csv"
                n = repair_utf8(path, fixed)
                self.report.repair(f"{table}: invalid UTF-8 byte sequences replaced with U+FFFD", n)
                src = fixed
                continue
            break
        n_dup = 0
        if parquet is None:
            n_dup = self._drop_exact_duplicates(table, into, lower)
        for err, n in sorted(rej.items()):
            if str(err).upper() == "LINE SIZE OVER MAXIMUM":
                self.report.skip(f"{table}: {line_too_long()}", int(n))
            else:
                self.report.skip(f"{table}: unparseable CSV line ({str(err).lower()})", int(n))
        self.report.read[table] = (int(self.con.execute(f"SELECT count(*) FROM {into}").fetchone()[0])
                                   + int(sum(rej.values())) + n_dup)
        if src != path:
            self.report.info.setdefault("repaired_files", []).append(path.name)
        return lower


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def _physical_memory() -> int | None:
    """Bytes of memory this process may use: the cgroup limit when one is set, else the RAM."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            return int(limit)
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_limit() -> str:
    """DuckDB's memory limit for a load: a quarter of the memory available to this process,
    at least 512 MB and at most 8 GB. Sorting the 4.4 M code rows of ``synthetic:mimic`` needs
    more than 512 MB; beyond the limit DuckDB spills to the scratch folder."""
    total = _physical_memory()
    mb = 512 if total is None else int(min(max(total // 4 // 2**20, 512), 8192))
    return f"{mb}MB"


def connect(scratch: Path, memory_limit: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that spills to ``scratch`` and keeps memory bounded.

    ``memory_limit`` defaults to ``$MINGLE_DUCKDB_MEMORY`` or :func:`default_memory_limit`;
    ``threads`` to ``$MINGLE_DUCKDB_THREADS`` or 2.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    _OPEN.add(con)
    mem = memory_limit or os.environ.get("MINGLE_DUCKDB_MEMORY") or default_memory_limit()
    thr = int(threads or os.environ.get("MINGLE_DUCKDB_THREADS", "2"))
    con.execute(f"SET memory_limit = {sql_str(mem)}")
    con.execute(f"SET threads = {thr}")
    con.execute(f"SET temp_directory = {sql_str(scratch / 'duckdb_tmp')}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def interruptible(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread that Ctrl-C stops, DuckDB queries included.

    A SIGINT that arrives while DuckDB runs a query on the main thread is often lost (the query
    runs on; measured: 17 of 20 interrupts lost with duckdb 2.0.1). Here the main thread only
    waits: on ``KeyboardInterrupt`` it raises one in the worker (at its next Python bytecode) and
    interrupts every connection :func:`connect` opened until the worker has unwound (its cleanup,
    e.g. an atomic write's, runs), then re-raises. Off the main thread ``fn`` runs directly.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    done = threading.Event()
    out: dict = {}

    def work() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread as it is
            out["error"] = exc
        finally:
            done.set()

    # Event.wait, not Thread.join: a join interrupted by Ctrl-C can report a live thread as ended
    worker = threading.Thread(target=work, name="mingle-bench-load", daemon=True)
    worker.start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(KeyboardInterrupt))
        while not done.wait(0.05):  # again until it stops: a query may start after the first interrupt
            for con in list(_OPEN):
                con.interrupt()
        raise KeyboardInterrupt from None
    if "error" in out:
        raise out["error"]
    return out["value"]
