"""How a budget sweep's jobs and its sweeper talk: heartbeats, allowances and the STOP signal.

One small interface — put, get and delete a JSON text under a *kind* and a job number — and two transports:

* :class:`FileChannel` (the default): files under ``<hydra.sweep.dir>/.greenai/``; every job must see that folder
  (one machine, or a shared filesystem such as NFS or Lustre).
* :class:`SqlChannel` (``hydra.sweeper.storage=<SQLAlchemy URL>``): one table, ``greenai_signals``, in a SQL
  database (SQLite for one machine, PostgreSQL for clusters: the storage Optuna users already run), keyed by the
  sweep dir; jobs need the database, not the sweep dir itself. A dropped connection is retried; a write that still
  fails raises :class:`~lightning_greenai.errors.StateWriteError`, like a file that cannot be written.

The sweeper's own books (``ledger.jsonl``, the report, the lock) stay in the sweep dir on the sweeper's machine.
"""

from __future__ import annotations

import abc
import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lightning_greenai.errors import BudgetConfigError, MissingDependencyError, StateWriteError
from lightning_greenai.io import JSONDepthError, parse_json, replace_text
from lightning_greenai.trial.record import Allowance, Message, StopSignal, TrialRecord, state_dir

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "heartbeat_path",
    "read_record",
    "KINDS",
    "Channel",
    "FileChannel",
    "SqlChannel",
    "check_no_password",
    "masked",
    "open_channel",
    "storage_url",
]

Kind = Literal["heartbeat", "allowance", "stop"]
#: What travels: a job's heartbeat (and final record), the allowance the sweeper gives it, the sweep's STOP signal.
KINDS: tuple[Kind, ...] = ("heartbeat", "allowance", "stop")
#: The message type of each kind: nothing else travels.
_MESSAGE_TYPES: dict[Kind, type[TrialRecord] | type[Allowance] | type[StopSignal]] = {
    "heartbeat": TrialRecord,
    "allowance": Allowance,
    "stop": StopSignal,
}
_SWEEP_WIDE = -1  # the job number of a sweep-wide signal (STOP)


class Channel(abc.ABC):
    """Text messages between a sweep's jobs and its sweeper, by kind and job number (``None``: the whole sweep).

    Each (kind, job) has one writer: the job writes its heartbeat, the sweeper its allowance and the STOP signal.
    """

    @abc.abstractmethod
    def put(self, kind: Kind, job_num: int | None, text: str, *, patience_s: float = 0.0) -> None:
        """Replace the message; readers see the old one or the new one, never half.

        Args:
            kind: ``heartbeat``, ``allowance`` or ``stop``.
            job_num: The job (``None``: the whole sweep).
            text: The message (JSON).
            patience_s: How long to keep retrying a transport that fails (a dropped database connection).

        Raises:
            StateWriteError: it could not be written; the old message, if any, is intact.
        """

    @abc.abstractmethod
    def get(self, kind: Kind, job_num: int | None, *, max_age_s: float = 0.0, patience_s: float = 0.0) -> str | None:
        """The message, or ``None`` if there is none.

        Args:
            kind: ``heartbeat``, ``allowance`` or ``stop``.
            job_num: The job (``None``: the whole sweep).
            max_age_s: A copy read this recently may be returned instead of a fresh read (a job checks its signals
                every step).
            patience_s: How long to keep retrying a transport that fails.

        Raises:
            StateWriteError: the transport failed for ``patience_s`` and nothing was read before.
        """

    @abc.abstractmethod
    def delete(self, kind: Kind, job_num: int | None) -> None:
        """Remove the message if there is one."""

    @abc.abstractmethod
    def where(self, kind: Kind, job_num: int | None) -> str:
        """Where the message lives, for messages to the user."""

    def send(self, kind: Kind, job_num: int | None, message: Message, *, patience_s: float = 0.0) -> None:
        """:meth:`put` a message of ``kind`` as JSON (never a NaN: it is not JSON).

        The channel carries three types only: a ``heartbeat`` is a :class:`TrialRecord`, an ``allowance`` an
        :class:`Allowance`, ``stop`` a :class:`StopSignal` (a message made by hand goes through :meth:`put`).

        Raises:
            TypeError: ``message`` is not the kind's type.
            ValueError: the message holds a NaN.
        """
        expected = _MESSAGE_TYPES[kind]
        if not isinstance(message, expected):
            raise TypeError(f"{kind} messages are {expected.__name__}s, not {type(message).__name__}s")
        data = message.to_dict() if isinstance(message, TrialRecord) else message.to_json()
        self.put(kind, job_num, json.dumps(data, allow_nan=False), patience_s=patience_s)

    def send_heartbeat(self, record: TrialRecord, *, patience_s: float = 0.0) -> None:
        """Write a job's heartbeat (or final record), under its own job number."""
        self.send("heartbeat", record.job_num, record, patience_s=patience_s)

    def send_allowance(self, job_num: int, allowance: Allowance, *, patience_s: float = 0.0) -> None:
        """Write what job ``job_num`` may spend."""
        self.send("allowance", job_num, allowance, patience_s=patience_s)

    def send_stop(self, signal: StopSignal, *, job_num: int | None = None, patience_s: float = 0.0) -> None:
        """Write the sweep's STOP signal, or (``job_num``) one job's: the search pruned that trial."""
        self.send("stop", job_num, signal, patience_s=patience_s)

    def allowance(self, job_num: int, *, max_age_s: float = 0.0) -> Allowance:
        """What job ``job_num`` may spend: empty (no caps) if none was written, it is damaged, or none can be read."""
        return Allowance.from_json(self.receive("allowance", job_num, max_age_s=max_age_s))

    def stop_signal(self, *, job_num: int | None = None, max_age_s: float = 0.0) -> StopSignal | None:
        """The sweep's STOP signal (``job_num``: the one sent to that job alone), or ``None``.

        A STOP present but unreadable still stops (gracefully); a database away and silent means no STOP heard (the
        job's allowance still holds).
        """
        data = self.receive("stop", job_num, max_age_s=max_age_s, unreadable="present")
        return None if data is None else StopSignal.from_json(data)

    def receive(self, kind: Kind, job_num: int | None, *, max_age_s: float = 0.0, unreadable: Any = None) -> Any | None:
        """The message as JSON; ``None`` if there is none or the transport failed, ``unreadable`` if it is not JSON."""
        try:
            text = self.get(kind, job_num, max_age_s=max_age_s)
        except OSError:  # StateWriteError included: the transport failed and never answered
            return None
        if text is None:
            return None
        try:
            return parse_json(text)
        except ValueError:
            return unreadable


class FileChannel(Channel):
    """Files under ``<sweep_dir>/.greenai/``: ``trials/<job>.json``, ``trials/<job>.allowance.json``, ``STOP``.

    A STOP sent to one job (the search pruned it) is ``trials/<job>.stop.json``.
    """

    def __init__(self, sweep_dir: str | os.PathLike[str]) -> None:
        self.sweep_dir = Path(sweep_dir)
        self._paths: dict[tuple[Kind, int | None], Path] = {}  # a trial asks for its signals at every batch

    def path(self, kind: Kind, job_num: int | None) -> Path:
        """The file of a message."""
        key = (kind, job_num)
        if key not in self._paths:
            folder = state_dir(self.sweep_dir)
            if kind == "stop" and job_num is None:
                self._paths[key] = folder / "STOP"
            else:
                suffix = {"heartbeat": ".json", "allowance": ".allowance.json", "stop": ".stop.json"}[kind]
                self._paths[key] = folder / "trials" / f"{job_num}{suffix}"
        return self._paths[key]

    def put(self, kind: Kind, job_num: int | None, text: str, *, patience_s: float = 0.0) -> None:
        """Write the file atomically (temporary name, fsync, ``os.replace``)."""
        replace_text(self.path(kind, job_num), text)

    def get(self, kind: Kind, job_num: int | None, *, max_age_s: float = 0.0, patience_s: float = 0.0) -> str | None:
        """The file's text (``""`` for an empty or unreadable file that exists), or ``None`` if it is missing."""
        path = self.path(kind, job_num)
        try:
            return path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return "" if path.exists() else None

    def delete(self, kind: Kind, job_num: int | None) -> None:
        """Remove the file."""
        self.path(kind, job_num).unlink(missing_ok=True)

    def where(self, kind: Kind, job_num: int | None) -> str:
        """The file's path."""
        return str(self.path(kind, job_num))


_ENGINES: dict[tuple[str, int], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(url: str) -> Engine:
    """One engine per URL and process (a forked job must not share its parent's connections)."""
    from sqlalchemy import create_engine

    key = (url, os.getpid())
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            # pre_ping: a connection the server dropped while idle is replaced before use, not failed on
            options: dict[str, Any] = {"pool_pre_ping": True}
            if url.startswith("sqlite"):
                options["connect_args"] = {"timeout": 30}  # writers queue on SQLite's lock instead of failing
            _ENGINES[key] = create_engine(url, **options)
        return _ENGINES[key]


def _table() -> Any:
    from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

    return Table(
        "greenai_signals",
        MetaData(),
        Column("sweep", String(1024), primary_key=True),
        Column("kind", String(16), primary_key=True),
        Column("job_num", Integer, primary_key=True, autoincrement=False),
        Column("body", Text, nullable=False),
        Column("updated_at", Float, nullable=False),
    )


#: Database errors that waiting will not mend, and what to do about each (matched in the driver's message).
_PERMANENT = (
    ("unable to open database file", "The SQLite file's folder does not exist or cannot be written: create it."),
    ("file is not a database", "That file is not a SQLite database: give the sweep a new file."),
    ("readonly database", "The SQLite file is read-only for this user: make it writable or use another."),
    ("no such table", "The database lacks greenai_signals: the sweeper creates it before any job starts."),
    ("no such column", "greenai_signals there has another layout (another program's table): use another database."),
    ("does not exist", "Create the database (or the user) first, or fix the name."),
    ("password authentication failed", "Fix the user or password in the URL."),
    ("no password supplied", "Give the password through PGPASSWORD or ~/.pgpass (never in the URL)."),
    ("no pg_hba.conf entry", "The server refuses this host or user: add a pg_hba.conf entry for it."),
    ("permission denied", "Grant this user CREATE, SELECT, INSERT, UPDATE and DELETE there."),
)


def _permanent(message: str) -> str | None:
    """What to do about a database error that retrying will not mend; ``None`` for one worth retrying."""
    lowered = message.lower()
    return next((hint for needle, hint in _PERMANENT if needle in lowered), None)


class SqlChannel(Channel):
    """Rows of ``greenai_signals`` in a SQL database, one per (sweep, kind, job), through SQLAlchemy.

    Args:
        url: A SQLAlchemy URL (``sqlite:////abs/path.db``, ``postgresql://user@host:5432/db``).
        sweep: The sweep's key: two sweeps on one database never see each other's rows.
        create: Create the table if missing (the sweeper does, before it launches a job).
    """

    def __init__(self, url: str, sweep: str, *, create: bool = False) -> None:
        self.url, self.sweep = url, sweep
        self.engine = _engine(url)
        self.table = _table()
        self._cache: dict[tuple[str, int], tuple[float, str | None]] = {}
        if create:
            self._retry(lambda: self.table.metadata.create_all(self.engine, checkfirst=True), 60.0, "create")

    def _key(self, kind: Kind, job_num: int | None) -> Any:
        t = self.table
        job = _SWEEP_WIDE if job_num is None else int(job_num)
        return (t.c.sweep == self.sweep) & (t.c.kind == kind) & (t.c.job_num == job)

    def _retry(self, action: Any, patience_s: float, what: str) -> Any:
        """Run ``action`` until it succeeds, retrying a failed transport for ``patience_s`` (twice at least)."""
        from sqlalchemy.exc import DBAPIError, OperationalError

        deadline, pause, attempt = time.monotonic() + patience_s, 0.05, 0
        while True:
            attempt += 1
            try:
                return action()
            except (DBAPIError, OperationalError) as err:
                message = str(err.orig or err).strip()
                hint = _permanent(message)
                if hint is not None or (attempt >= 2 and time.monotonic() >= deadline):
                    safe = self.engine.url.render_as_string(hide_password=True)
                    raise StateWriteError(
                        f"Cannot {what} the sweep's signals in {safe}: {type(err.orig or err).__name__}: "
                        f"{message.splitlines()[0] if message else ''}. "
                        f"{hint or 'Check that the database is up and reachable from this host.'}"
                    ) from err
                # the pool's connections may carry the failure with them (a session made read-only during a
                # failover stays so after it): the next try takes fresh ones
                self.engine.dispose()
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def put(self, kind: Kind, job_num: int | None, text: str, *, patience_s: float = 0.0) -> None:
        """Update the row, or insert it (one writer per row: no race between the two)."""
        from sqlalchemy import insert, update

        job = _SWEEP_WIDE if job_num is None else int(job_num)

        def write() -> None:
            with self.engine.begin() as conn:
                now = time.time()
                done = conn.execute(update(self.table).where(self._key(kind, job)).values(body=text, updated_at=now))
                if done.rowcount == 0:
                    row = {"sweep": self.sweep, "kind": kind, "job_num": job, "body": text, "updated_at": now}
                    conn.execute(insert(self.table).values(**row))

        self._retry(write, patience_s, "write")
        self._cache[(kind, job)] = (time.monotonic(), text)

    def get(self, kind: Kind, job_num: int | None, *, max_age_s: float = 0.0, patience_s: float = 0.0) -> str | None:
        """Read the row (or a copy read within ``max_age_s``); the last copy read when the database is unreachable."""
        from sqlalchemy import select

        job = _SWEEP_WIDE if job_num is None else int(job_num)
        cached = self._cache.get((kind, job))
        if cached is not None and time.monotonic() - cached[0] <= max_age_s:
            return cached[1]

        def read() -> str | None:
            with self.engine.connect() as conn:
                value = conn.execute(select(self.table.c.body).where(self._key(kind, job))).scalar_one_or_none()
                return None if value is None else str(value)

        try:
            text: str | None = self._retry(read, patience_s, "read")
        except StateWriteError:
            if cached is None:
                raise
            return cached[1]  # the last word heard: a job keeps its allowance while the database is away
        self._cache[(kind, job)] = (time.monotonic(), text)
        return text

    def delete(self, kind: Kind, job_num: int | None) -> None:
        """Delete the row."""
        from sqlalchemy import delete

        job = _SWEEP_WIDE if job_num is None else int(job_num)

        def remove() -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(self.table).where(self._key(kind, job)))

        self._retry(remove, 30.0, "delete")
        self._cache.pop((kind, job), None)

    def where(self, kind: Kind, job_num: int | None) -> str:
        """The row, as ``<url>#<sweep>/<kind>/<job>`` (password hidden)."""
        return f"{self.engine.url.render_as_string(hide_password=True)}#{self.sweep}/{kind}/{job_num}"


def check_storage(storage: str) -> str:
    """Return the backend of a SQLAlchemy URL (``sqlite``, ``postgresql`` ...), with a clear error for a bad one.

    Raises:
        BudgetConfigError: not a database URL.
        MissingDependencyError: SQLAlchemy or the database's driver is not installed.
    """
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    except ImportError as err:
        raise MissingDependencyError(
            "hydra.sweeper.storage needs SQLAlchemy: pip install 'lightning-greenai[postgresql]'"
        ) from err
    try:
        url = make_url(storage)
        dialect = url.get_dialect()
        load_driver: Any = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2 / 1.4
        load_driver()
    except (ArgumentError, ValueError) as err:
        raise BudgetConfigError(
            f"hydra.sweeper.storage={masked(storage)!r} is not a database URL. Allowed: a SQLAlchemy URL such as "
            "sqlite:////path/to/sweeps.db or postgresql://user@host:5432/db"
        ) from err
    except NoSuchModuleError as err:
        raise BudgetConfigError(
            f"hydra.sweeper.storage={masked(storage)!r}: unknown database. Allowed: sqlite:///... or postgresql://..."
        ) from err
    except ImportError as err:
        backend = url.get_backend_name()
        install = "pip install 'lightning-greenai[postgresql]'" if backend == "postgresql" else "install it"
        raise MissingDependencyError(
            f"hydra.sweeper.storage={masked(storage)!r} needs the {backend} driver `{err.name or err}`, which is not "
            f"installed: {install}"
        ) from err
    if url.get_backend_name() == "sqlite":
        if url.host:
            raise BudgetConfigError(
                f"hydra.sweeper.storage={storage!r} puts {url.host!r} where SQLite has no host: a SQLite URL has three "
                "slashes before a relative path (sqlite:///sweeps.db) and four before an absolute one "
                "(sqlite:////path/to/sweeps.db)"
            )
        if not url.database or url.database == ":memory:" or "mode=memory" in str(url.query):
            raise BudgetConfigError(
                f"hydra.sweeper.storage={storage!r} is an in-memory database, private to one process: the jobs "
                "could not reach it. Allowed: a file, e.g. sqlite:///sweeps.db"
            )
    return str(url.get_backend_name())


def sqlite_absolute(storage: str, cwd: str | os.PathLike[str]) -> str:
    """A relative SQLite path made absolute against ``cwd`` (the sweep's launch folder), so every job finds it."""
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return storage
    database, prefix = url.database, ""
    if url.query.get("uri") == "true" and database.startswith("file:"):  # SQLite's URI form: file:path?options
        prefix, database = "file:", database[len("file:") :]
    if os.path.isabs(database):
        return storage
    absolute = url.set(database=prefix + str(Path(cwd) / database))
    return str(absolute.render_as_string(hide_password=False)).replace("file%3A", "file:", 1)


def open_channel(
    sweep_dir: str | os.PathLike[str],
    storage: str | None = None,
    *,
    key: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    create: bool = False,
) -> Channel:
    """The channel of a sweep: files in its dir, or ``storage``'s database keyed by the sweep's id.

    The key is the id the sweep wrote into its ledger when it began (``sweep_id``), never a path or an Optuna study
    name: a sweep dir reached through a symlink, or two machines' sweep dirs of the same path, would otherwise meet
    the wrong rows. (Sweeps begun before ids were recorded are keyed by their sweep dir, as they were then.)

    Args:
        sweep_dir: The sweep's absolute folder (``hydra.sweep.dir`` as the sweeper passes it to each job).
        storage: ``hydra.sweeper.storage``; ``None`` for files.
        key: The sweep's id (default: the sweep dir).
        cwd: The folder a relative SQLite path is relative to (default: the current one).
        create: Create the database table if missing.
    """
    if not storage:
        return FileChannel(sweep_dir)
    check_storage(storage)
    return SqlChannel(storage_url(storage, cwd), key or str(sweep_dir), create=create)


def storage_url(storage: str, cwd: str | os.PathLike[str] | None = None) -> str:
    """The database a storage URL reaches from ``cwd`` (a relative SQLite path made absolute), as a URL."""
    return sqlite_absolute(storage, cwd if cwd is not None else os.getcwd())


def masked(storage: str) -> str:
    """A storage URL fit to print or record: its password, if any, hidden."""
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(storage).render_as_string(hide_password=True))
    except Exception:  # not a URL at all: nothing in it parses as a password
        return storage


def check_no_password(raw: Any) -> None:
    """Refuse a storage URL written with its password: Hydra would write it into every job's config files.

    ``raw`` is the option as written (unresolved): a password that comes through ``${oc.env:...}`` is not written
    anywhere, and libpq reads ``PGPASSWORD`` and ``~/.pgpass`` by itself.

    Raises:
        BudgetConfigError: the URL holds a literal password (the message does not repeat it).
    """
    if not isinstance(raw, str) or "${" in raw:
        return
    try:
        from sqlalchemy.engine import make_url

        password = make_url(raw).password
    except Exception:
        return  # check_storage says what is wrong with it
    if password:
        raise BudgetConfigError(
            f"hydra.sweeper.storage={masked(raw)!r} holds a password, which Hydra would write into multirun.yaml "
            "and every job's .hydra/hydra.yaml. Give it through the environment instead: PGPASSWORD or ~/.pgpass "
            "(PostgreSQL reads both), or an interpolation such as "
            "'postgresql://user:${oc.env:DB_PASSWORD}@host:5432/db' (written as it is, resolved when used)."
        )


def heartbeat_path(sweep_dir: str | os.PathLike[str], job_num: int) -> Path:
    """Where job ``job_num`` writes its heartbeat when the sweep talks through files."""
    return FileChannel(sweep_dir).path("heartbeat", job_num)


def read_record(
    channel: Channel | str | os.PathLike[str],
    job_num: int,
    notes: list[str] | None = None,
    *,
    patience_s: float = 0.0,
) -> TrialRecord | None:
    """Read job ``job_num``'s latest heartbeat, or ``None`` if it never wrote one or it is damaged.

    ``channel`` is the sweep's channel (a sweep dir: its files). A damaged heartbeat (not JSON, the wrong shape, a
    NaN) is never trusted; what is wrong is appended to ``notes``. A database that stays unreachable for
    ``patience_s`` reads as no heartbeat, with a note.
    """
    channel = channel if isinstance(channel, Channel) else FileChannel(channel)
    try:
        text = channel.get("heartbeat", job_num, patience_s=patience_s)
    except StateWriteError as err:
        if notes is not None:
            notes.append(f"heartbeat of job {job_num} could not be read: {err}")
        return None
    if text is None:
        return None
    where = channel.where("heartbeat", job_num)
    try:
        data = parse_json(text)
    except ValueError as err:
        if notes is not None and text.strip():
            detail = f" ({err})" if isinstance(err, JSONDepthError) else ""
            notes.append(f"heartbeat {where} is not valid JSON{detail}: ignored")
        return None
    try:
        return TrialRecord.from_dict(data)
    except ValueError as err:
        if notes is not None:
            notes.append(f"heartbeat {where} is damaged ({err}): ignored")
        return None
