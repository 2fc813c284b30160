"""The storage of a search shared by processes: opening it, checking it, and lost trials.

A search with ``storage=`` keeps its trials in an Optuna study that any number of worker
processes share (``optuna.storages``: no coordinator of lrjax's own). This module opens
that storage before anything compiles, so a bad path or URL fails at once; refuses a study
made for another search; and makes the trials of a worker that died outright (SIGKILL, a
lost machine) run again on the others:

- URLs (``sqlite:///``, ``postgresql://``, ``mysql://``) open as an ``RDBStorage`` with
  Optuna's heartbeat: every running trial's worker records a heartbeat every
  ``heartbeat_interval`` seconds; a trial whose heartbeat is older than ``grace_period``
  is failed by whichever worker looks next, and its point is queued again.
- A journal file (one machine) has no heartbeat: a trial records the host and process that
  runs it (``lrjax_worker``, ``"host:pid"``), and a worker on that host fails the trials of
  a process that no longer exists.
- Either way a lost trial does not count in the budget: ``num_trials`` is the number of
  finished trials, so the study ends with exactly that many.

Optuna is imported lazily (the ``search`` extra).

References:
    Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD
    2019 (its storages, heartbeat and journal file are what this module builds on).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from lrjax.tuning.space import SEARCH_EXTRA, Dimension, space_to_spec

HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial (RDB storages)
GRACE_PERIOD = 60  # seconds without a heartbeat before a trial counts as lost
POLL_SECONDS = 1.0  # how often a worker waiting for others' running trials looks again
SCHEMA_TRIES = 20  # creating the tables of a fresh RDB storage, when processes race for it
DEFAULT_STUDY_NAME = "lrjax-search"

# Trial user attributes.
ATTR = "lrjax"  # trials that do not count: "unused", "interrupted"
METRICS_ATTR = "lrjax_metrics"
WORKER_ATTR = "lrjax_worker"  # "host:pid" of the process that ran the trial
RETRY_ATTR = "lrjax_retry_of"  # on a re-run trial: the number of the lost trial it replaces
# Study user attributes: what defines the search.
SPACE_ATTR = "lrjax_space"
OBJECTIVE_ATTR = "lrjax_objective"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise ImportError(f"storage= needs Optuna ({SEARCH_EXTRA}): {error}") from error
    return optuna


# ---------------------------------------------------------------------------------------------
# Which process runs a trial, and whether it still exists.

HOST = socket.gethostname()


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _started_at(fields: list[bytes]) -> float | None:
    """The wall-clock start time (seconds since the epoch) of a process, from its stat."""
    try:
        with open("/proc/stat", "rb") as file:
            boot = next(float(line.split()[1]) for line in file if line.startswith(b"btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return None


def process_gone(worker: Any, started: Any = None) -> bool:
    """Whether the process ``worker`` (``"host:pid"``) that started a trial at ``started``
    (a datetime) is known to have ended.

    Only processes of this host can be checked: for another host's, False. A pid now held
    by a process that started after the trial (a reused pid) counts as ended.
    """
    if not isinstance(worker, str) or worker.rpartition(":")[0] != HOST:
        return False
    try:
        pid = int(worker.rpartition(":")[2])
        os.kill(pid, 0)
    except ValueError:
        return False
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it exists
        pass
    fields = _proc_stat(pid)
    if fields is None:  # no /proc (not Linux), or gone between the two looks
        return not os.path.exists(f"/proc/{pid}") and os.path.exists("/proc/self")
    if fields[0] == b"Z":  # a killed child its parent has not reaped yet: it runs nothing
        return True
    if started is not None:
        begun = _started_at(fields)
        trial_start = started.timestamp()  # naive datetimes are local time, as recorded
        if begun is not None and begun > trial_start + 2.0:  # clock ticks round: a margin
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Opening a storage.

def describe(storage: Any) -> str:
    """``storage`` for a message: a URL with its password hidden, a path, or a type."""
    if isinstance(storage, str) and "://" in storage:
        try:
            from sqlalchemy.engine import make_url

            return make_url(storage).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, sans password
            scheme, _, rest = storage.partition("://")
            return f"{scheme}://{rest.rpartition('@')[2]}"
    if isinstance(storage, (str, os.PathLike)):
        return os.fspath(storage)
    inner = getattr(storage, "_backend", storage)  # Optuna's cache around an RDB storage
    url = getattr(inner, "url", None)
    if isinstance(url, str):
        return describe(url)
    path = getattr(inner, "_file_path", None)  # a journal file
    if isinstance(path, str):
        return path
    return type(storage).__name__


def open_storage(storage: Any, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = GRACE_PERIOD) -> Any:
    """The Optuna storage of ``storage=``, opened and checked (before anything compiles).

    Args:
        storage: None (returned as is), a storage URL (:func:`rdb_storage`), a journal file
            path (a str without ``://``, or an ``os.PathLike``: :func:`journal_storage`), or
            an ``optuna.storages.BaseStorage`` (returned as is).
        heartbeat_interval, grace_period: of a URL's storage (:func:`rdb_storage`).

    Returns:
        None or an ``optuna.storages.BaseStorage``.

    Raises:
        ValueError: a path whose directory does not exist, a URL that cannot be opened, a
            damaged journal file; the message names the storage and what to do.
    """
    if storage is None:
        return None
    if isinstance(storage, str) and "://" in storage:
        return rdb_storage(storage, heartbeat_interval=heartbeat_interval,
                           grace_period=grace_period)
    if isinstance(storage, (str, os.PathLike)):
        return journal_storage(storage)
    return storage


def close_storage(storage: Any) -> None:
    """Release an RDB storage's pooled database connections (also through Optuna's cache).

    The storage stays usable: SQLAlchemy connects again when it is next used.
    """
    storage = getattr(storage, "_backend", storage)
    engine = getattr(storage, "engine", None)
    if engine is not None:
        storage.remove_session()
        engine.dispose()


def _check_directory(what: str, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"storage {what!r}: the directory {directory!r} does not exist; "
                         "create it first, or give another path.")
    if os.path.isdir(path):
        raise ValueError(f"storage {what!r} is a directory; give a file path in it, e.g. "
                         f"{os.path.join(path, 'search.journal')!r}.")


def rdb_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                grace_period: int = GRACE_PERIOD, connect_timeout: int = 10) -> Any:
    """An ``optuna.storages.RDBStorage`` for ``url`` with the heartbeat on.

    A trial whose worker stopped recording heartbeats for ``grace_period`` seconds is
    failed by another worker and its point queued again (see the module docstring). Several
    processes creating the tables of a fresh database at once race (``IntegrityError:
    UNIQUE constraint failed: alembic_version`` on SQLite): the loser tries again.

    Args:
        url: an SQLAlchemy URL: ``sqlite:///path.db``, ``postgresql://user@host/db``
            (``psycopg2-binary`` or ``psycopg``, in ``lrjax[search]``), ``mysql://...``.
        heartbeat_interval: seconds between heartbeats (a positive int).
        grace_period: seconds without a heartbeat after which a trial is lost (a positive
            int, more than ``heartbeat_interval``).
        connect_timeout: seconds to wait for a PostgreSQL/MySQL server to answer.

    Returns:
        The storage.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "search.db")
        >>> storage = rdb_storage(f"sqlite:///{path}", heartbeat_interval=5, grace_period=20)
        >>> storage.heartbeat_interval, storage.grace_period
        (5, 20)
    """
    for name, value in (("heartbeat_interval", heartbeat_interval),
                        ("grace_period", grace_period), ("connect_timeout", connect_timeout)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1 (seconds), got {value!r}.")
    if grace_period <= heartbeat_interval:
        raise ValueError(f"grace_period ({grace_period} s) must be longer than "
                         f"heartbeat_interval ({heartbeat_interval} s): a live trial between "
                         "two heartbeats would count as lost.")
    optuna = _optuna()
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = describe(url)
    try:
        parsed = make_url(url)
    except Exception as error:  # noqa: BLE001 - sqlalchemy's ArgumentError and kin
        raise ValueError(f"storage {shown!r} is not a valid database URL: {error}") from error
    backend = parsed.get_backend_name()
    if parsed.drivername == "postgresql":  # no driver named: the one installed
        driver = _postgres_driver(shown)
        parsed = parsed.set(drivername=f"postgresql+{driver}")
        url = parsed.render_as_string(hide_password=False)
    engine_kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            _check_directory(url, database)
    elif backend in ("postgresql", "mysql") and "connect_timeout" not in parsed.query:
        engine_kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    import inspect

    callback_name = ("heartbeat_stale_trial_callback"
                     if "heartbeat_stale_trial_callback"
                     in inspect.signature(optuna.storages.RDBStorage).parameters
                     else "failed_trial_callback")
    kwargs = {"engine_kwargs": engine_kwargs, "heartbeat_interval": heartbeat_interval,
              "grace_period": grace_period, callback_name: requeue_lost}
    for attempt in range(SCHEMA_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except sqlalchemy.exc.IntegrityError:
            pass  # another process created the schema at the same moment: look again
        except sqlalchemy.exc.OperationalError as error:
            text = str(error).lower()
            if "locked" not in text and "already exists" not in text:
                raise ValueError(f"storage {shown!r} cannot be opened: "
                                 f"{str(error.orig).strip() or error}") from None
        except ImportError as error:
            raise ImportError(f"storage {shown!r}: its database driver cannot be imported "
                              f"({error}); {SEARCH_EXTRA} installs psycopg for PostgreSQL."
                              ) from error
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError) as error:
            raise ValueError(f"storage {shown!r} cannot be opened: {error}") from error
        time.sleep(0.05 * (1 + attempt) * (0.5 + (os.getpid() % 7) / 7))
    raise ValueError(f"storage {shown!r}: its tables could not be created after "
                     f"{SCHEMA_TRIES} tries (other processes kept creating them).")


def _postgres_driver(shown: str) -> str:
    """``psycopg`` (3) where installed, else ``psycopg2``: SQLAlchemy's default for a plain
    ``postgresql://`` URL depends on its version, the installed driver does not."""
    import importlib.util

    for module in ("psycopg", "psycopg2"):
        try:
            if importlib.util.find_spec(module) is not None:
                return module
        except ValueError:  # a module set to None in sys.modules (hidden)
            continue
    raise ImportError(f"storage {shown!r} needs a PostgreSQL driver: {SEARCH_EXTRA} installs "
                      "psycopg (or pip install psycopg2-binary).")


def journal_storage(path: str | os.PathLike) -> Any:
    """An ``optuna.storages.JournalStorage`` on the journal file ``path`` (one machine).

    The file's last line can be torn: a process killed while writing it, a full disk.
    Optuna skips such a line when reading but appends after it, which damages the file for
    good; lrjax's backend cuts a torn last line off (taking the journal's lock first, so
    that no live writer is cut), with a warning, before every append and when opening. A
    damaged line before the end (left by an earlier append after a torn line) is refused
    with a ``ValueError`` saying how to keep the records before it.

    Args:
        path: the journal file (created if missing; its directory must exist).

    Returns:
        The storage.

    Example:
        >>> import os, tempfile
        >>> storage = journal_storage(os.path.join(tempfile.mkdtemp(), "search.journal"))
        >>> type(storage).__name__
        'JournalStorage'
    """
    path = os.fspath(path)
    if not path.strip():
        raise ValueError("storage must be a storage URL or a journal file path, got an empty "
                         "string.")
    _check_directory(path, path)
    optuna = _optuna()
    backend = _journal_backend_class()(path)
    backend.check()
    with warnings.catch_warnings():  # experimental before Optuna 4.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.JournalStorage(backend)


_BACKEND: list = []


def _journal_backend_class() -> type:
    """lrjax's journal file backend (defined on first use: Optuna is imported lazily)."""
    if _BACKEND:
        return _BACKEND[0]
    optuna = _optuna()
    journal = getattr(optuna.storages, "journal", None)  # public since Optuna 4.0
    base = getattr(journal, "JournalFileBackend", None) or optuna.storages.JournalFileStorage
    symlink_lock = (getattr(journal, "JournalFileSymlinkLock", None)
                    or optuna.storages.JournalFileSymlinkLock)

    class RepairingJournalBackend(base):  # type: ignore[misc, valid-type]
        """Optuna's journal file backend, cutting off a torn last line under the lock."""

        def __init__(self, file_path: str) -> None:
            self._lrjax_path = file_path
            self._lrjax_lock = symlink_lock(file_path)
            super().__init__(file_path, lock_obj=self._lrjax_lock)

        def _locked(self) -> Any:
            lock = self._lrjax_lock

            class Held:
                def __enter__(self) -> None:
                    lock.acquire()

                def __exit__(self, *exc: Any) -> None:
                    lock.release()

            return Held()

        def check(self) -> None:
            """Refuse a damaged line before the end; cut a torn last line off."""
            with self._locked():
                _check_journal_lines(self._lrjax_path)
                _cut_torn_tail(self._lrjax_path)

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            with self._locked():
                _cut_torn_tail(self._lrjax_path)
                with open(self._lrjax_path, "ab") as file:
                    file.write(text.encode("utf-8"))
                    file.flush()
                    os.fsync(file.fileno())

    _BACKEND.append(RepairingJournalBackend)
    return RepairingJournalBackend


def _cut_torn_tail(path: str) -> None:
    """Truncate ``path`` after its last newline (called with the journal's lock held)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as file:
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return
        keep, block = 0, 1 << 16
        for end in range(size, 0, -block):  # find the last newline, reading backwards
            start = max(0, end - block)
            file.seek(start)
            chunk = file.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
        file.truncate(keep)
        file.flush()
        os.fsync(file.fileno())
    warnings.warn(f"journal file {path!r} ended with a torn line ({size - keep} bytes: a "
                  "process was killed while writing it); it was cut off. The records before "
                  "it are kept; the one it held had not been read by any process.",
                  RuntimeWarning, stacklevel=4)


def _check_journal_lines(path: str) -> None:
    """Raise if a complete line of the journal file is not a JSON record."""
    if not os.path.exists(path):
        return
    offset = 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.endswith(b"\n"):
                return  # a torn last line: cut off by the caller
            try:
                json.loads(line)
            except ValueError:
                raise ValueError(
                    f"journal file {path!r} is damaged at line {number} (byte {offset}): it is "
                    "not a complete record (a write was cut off, e.g. a process killed while "
                    "writing, and another was appended after it), so Optuna cannot load the "
                    "study. To keep the records before it: stop every process using the file, "
                    f"back it up, then `truncate -s {offset} {path}` and run again (the trials "
                    "recorded after that line are lost; finished ones are run again)."
                ) from None
            offset += len(line)


# ---------------------------------------------------------------------------------------------
# What defines a search: a study made for one search is not reused by another.

def search_definition(space: Mapping[str, Dimension], objective: str | None,
                      direction: str) -> dict:
    """The space (as :func:`~lrjax.tuning.space.space_to_spec`), objective and direction."""
    spec = json.loads(json.dumps(space_to_spec(space)))  # the form stored attributes take
    return {"space": spec, "objective": objective, "direction": direction}


def definition_hash(definition: Mapping[str, Any]) -> str:
    """8 hex digits naming a search's definition (for default study names)."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _dim_text(item: Mapping[str, Any]) -> str:
    """One dimension of a space spec as its maker's call, e.g. ``uniform(0.0, 1.0)``."""
    if item.get("kind") == "choice":
        return f"choice({list(item['values'])})"
    return f"{item.get('kind')}({item.get('low')!r}, {item.get('high')!r})"


def _spec_text(spec: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{name!r}: {_dim_text(item)}" for name, item in spec.items()) + "}"


def _space_difference(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    parts = []
    missing = [n for n in stored if n not in wanted]
    extra = [n for n in wanted if n not in stored]
    if missing:
        parts.append(f"the study has {missing}, this search does not")
    if extra:
        parts.append(f"this search has {extra}, the study does not")
    for name in stored:
        if name in wanted and stored[name] != wanted[name]:
            parts.append(f"{name!r} is {_dim_text(stored[name])} in the study, "
                         f"{_dim_text(wanted[name])} here")
    return "; ".join(parts)


def _trial_space(storage: Any, study_id: int) -> dict | None:
    """The space of a study made without lrjax's attributes, from its trials' distributions."""
    optuna = _optuna()
    dists: dict[str, Any] = {}
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        dists.update(trial.distributions)
    if not dists:
        return None
    spec = {}
    for name, dist in dists.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            spec[name] = {"kind": "choice", "values": list(dist.choices)}
        elif isinstance(dist, optuna.distributions.FloatDistribution) and dist.step is None:
            spec[name] = {"kind": "log_uniform" if dist.log else "uniform",
                          "low": dist.low, "high": dist.high}
        else:
            spec[name] = {"kind": type(dist).__name__}
    return json.loads(json.dumps(spec))


def check_study(storage: Any, study_name: str, definition: Mapping[str, Any]) -> bool:
    """Refuse reusing study ``study_name`` of ``storage`` for another search.

    Compares the study's recorded space, objective and direction (or, for a study made
    without them, its trials' parameters) with ``definition`` (:func:`search_definition`;
    an objective of None is not compared).

    Returns:
        Whether the study exists.

    Raises:
        ValueError: naming the study and the difference.
    """
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return False
    where = f"study {study_name!r} in storage {describe(storage)!r}"
    fix = ("Give this search another study_name (the CLI: --study-name) or another storage, "
           "or the same settings to resume the study.")
    directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
    if directions != [definition["direction"]]:
        raise ValueError(f"direction={definition['direction']!r}, but the {where} was made to "
                         f"{' and '.join(directions)}. {fix}")
    attrs = storage.get_study_user_attrs(study_id)
    stored = attrs.get(SPACE_ATTR)
    source = "was made for"
    if stored is None:
        stored, source = _trial_space(storage, study_id), "has trials of"
    wanted = definition["space"]
    if stored is not None and stored != wanted:
        raise ValueError(f"the {where} {source} another space: {_spec_text(stored)}, this "
                         f"search's is {_spec_text(wanted)} ({_space_difference(stored, wanted)})."
                         f" {fix}")
    objective = attrs.get(OBJECTIVE_ATTR)
    if None not in (objective, definition["objective"]) and objective != definition["objective"]:
        raise ValueError(f"the {where} optimizes the metric {objective!r}, this search "
                         f"objective={definition['objective']!r}. {fix}")
    return True


def record_definition(study: Any, definition: Mapping[str, Any]) -> None:
    """Check the study against ``definition`` (:func:`check_study`), then record it."""
    check_study(study._storage, study.study_name, definition)
    attrs = study.user_attrs
    if attrs.get(SPACE_ATTR) is None:
        study.set_user_attr(SPACE_ATTR, definition["space"])
    if attrs.get(OBJECTIVE_ATTR) is None and definition["objective"] is not None:
        study.set_user_attr(OBJECTIVE_ATTR, definition["objective"])
    check_study(study._storage, study.study_name, definition)  # a racing process's record


# ---------------------------------------------------------------------------------------------
# Lost trials: heartbeats, failing a dead worker's trials, running their points again.

def requeue_lost(study: Any, trial: Any) -> None:
    """Queue the point of ``trial`` (failed as lost) again, marked as its re-run.

    The storage calls this once per lost trial, in the worker that failed it.
    """
    study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.number},
                        skip_if_exists=False)


def heartbeat_interval(study: Any) -> int | None:
    """The study storage's heartbeat interval, None without heartbeat."""
    get = getattr(study._storage, "get_heartbeat_interval", None)
    return get() if callable(get) else None


def fail_lost(study: Any) -> None:
    """Fail the study's trials whose worker died, and queue their points again.

    With a heartbeat (RDB storages): Optuna's ``fail_stale_trials`` (its callback,
    :func:`requeue_lost` for storages lrjax opened, queues the points). Without: the running
    trials of processes of this host that no longer exist. Only one worker succeeds in
    failing a trial, so each point is queued once.
    """
    optuna = _optuna()
    if heartbeat_interval(study) is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        if not process_gone(trial.user_attrs.get(WORKER_ATTR), trial.datetime_start):
            continue
        try:
            failed = study._storage.set_trial_state_values(
                trial._trial_id, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first (and queued its point)
        if failed:
            requeue_lost(study, trial)


def waiting_on(study: Any, trials: Iterable[Any]) -> list[Any]:
    """The running ``trials`` of other processes that a worker must wait for.

    Those that either finish or are found lost (and run again): every running trial of an
    lrjax worker under a heartbeat, else those of this host's processes. A trial of another
    host without a heartbeat is not waited for (nothing would tell if it died), nor one
    that another program (plain Optuna) runs.
    """
    optuna = _optuna()
    beating = heartbeat_interval(study) is not None
    mine = f"{HOST}:{os.getpid()}"
    out = []
    for trial in trials:
        if trial.state != optuna.trial.TrialState.RUNNING:
            continue
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:
            # Asked an instant ago by a worker that has not yet recorded itself on it (or
            # run by another program): waited for while young.
            started = trial.datetime_start
            if started is not None and age(started) < GRACE_PERIOD:
                out.append(trial)
            continue
        if worker == mine:
            continue
        if beating or worker.rpartition(":")[0] == HOST:
            out.append(trial)
    return out


def age(started: Any) -> float:
    """Seconds since the naive or aware datetime ``started`` (as storages record it)."""
    import datetime

    now = (datetime.datetime.now(started.tzinfo) if started.tzinfo is not None
           else datetime.datetime.now())
    return (now - started).total_seconds()


class Heartbeat:
    """Records the heartbeat of a batch's running trials from a thread, until stopped."""

    def __init__(self, study: Any) -> None:
        self._storage = study._storage
        self._interval = heartbeat_interval(study)
        self._ids: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, trial: Any) -> None:
        """Record ``trial``'s first heartbeat now, and the next ones from the thread."""
        if self._interval is None:
            return
        self._storage.record_heartbeat(trial._trial_id)
        with self._lock:
            self._ids.append(trial._trial_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lrjax-heartbeat",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                with self._lock:
                    ids = list(self._ids)
                for trial_id in ids:
                    try:
                        self._storage.record_heartbeat(trial_id)
                    except Exception:  # noqa: BLE001 - a missed beat; the next may pass
                        pass
        finally:
            remove = getattr(self._storage, "remove_session", None)
            if callable(remove):  # SQLAlchemy sessions are per thread: close this one's
                try:
                    remove()
                except Exception:  # noqa: BLE001
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
