"""Multi-host: 2 real processes x 4 CPU devices under jax.distributed (gloo, 127.0.0.1).

Each process passes its share of every batch; the range test (stacked, iterable on the host
strategy, function data), snapshots and searches (random on the host strategy; TPE through a
journal storage on the compiled one) must return the same numbers on both processes, equal
to this process (1 process, 8 devices, tests/conftest.py) running on the whole batch. Only
process 0 may talk to the storage: every stored trial names process 0's pid as its worker.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
WORKER = HERE / "multihost_worker.py"
TIMEOUT_S = 240  # per worker; a few seconds are typical, a loaded CI machine is slower


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load_worker():
    spec = importlib.util.spec_from_file_location("multihost_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _optuna_available() -> bool:
    return importlib.util.find_spec("optuna") is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(process 0's, process 1's, this process's results, the storage path).

    Run once per test session: under pytest-xdist the first worker to get here runs the
    processes and the others read its results (a lock file in the session's folder).
    """
    if jax.device_count() != 8 or jax.process_count() != 1:
        pytest.skip("needs the 8 simulated CPU devices of tests/conftest.py")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    done = shared / "multihost-results.pkl"
    with open(shared / "multihost.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            done.write_bytes(pickle.dumps(_run_all(tmp_path_factory.mktemp("multihost"))))
    return pickle.loads(done.read_bytes())


def _run_all(tmp: Path) -> tuple:
    """Two worker processes, and the reference in this process while they run."""
    storage = str(tmp / "journal.log") if _optuna_available() else None
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    port = _free_port()
    args = [str(tmp)] + ([storage] if storage else [])
    logs = [open(tmp / f"log{i}.txt", "wb") for i in range(2)]  # a pipe could fill and block
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), "2", str(port), *args],
                              env=env, stdout=logs[i], stderr=subprocess.STDOUT)
             for i in range(2)]
    try:
        single = tmp / "single"
        single.mkdir()
        reference = _load_worker().run(storage=str(tmp / "single.log") if storage else None,
                                       out_dir=str(single))
        for i, proc in enumerate(procs):
            proc.wait(timeout=TIMEOUT_S)
            log = (tmp / f"log{i}.txt").read_text(errors="replace")[-4000:]
            assert proc.returncode == 0, f"worker {i} failed (rc {proc.returncode}):\n{log}"
    finally:
        for proc, log in zip(procs, logs):  # bounded: never left running
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            log.close()
    results = [pickle.loads((tmp / f"process{i}.pkl").read_bytes()) for i in range(2)]
    assert (tmp / "search_0.json").exists() and not (tmp / "search_1.json").exists()
    return results[0], results[1], reference, storage


def _same(a, b, path=""):
    """Exactly equal (numpy arrays bitwise, NaN equal to NaN), with the path on failure."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, path


def _close(a, b, path=""):
    """Equal up to float32 rounding: the cross-process reductions add in another order."""
    if isinstance(a, dict):
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif a is None or isinstance(a, str):
        assert a == b, path
    else:
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=2e-5, atol=1e-7, err_msg=path)


SCENARIOS = ["range_stacked", "range_iterable_host", "range_function", "range_function_unsplit",
             "range_global_arrays", "snapshots", "snapshots_iterable_compiled", "search_random"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_processes_agree_and_match_one_process(runs, name):
    first, second, reference, _ = runs
    _same(first[name], second[name], name)  # every process returns the same result
    _close(first[name], reference[name], name)  # and what one process with 8 devices does


def test_range_test_strategies_and_forms_agree(runs):
    first = runs[0]
    _close(first["range_stacked"], first["range_iterable_host"], "stacked vs iterable")
    _same(first["range_stacked"], first["range_global_arrays"], "shares vs assembled arrays")
    _close(first["snapshots"]["losses"], first["snapshots_iterable_compiled"]["losses"])
    _close(first["snapshots"]["params"], first["snapshots_iterable_compiled"]["params"])
    assert first["range_stacked"]["diverged_at"] is not None  # the ramp reached divergence


def test_search_tpe_on_storage_only_process_zero(runs):
    first, second, reference, storage = runs
    if storage is None:
        pytest.skip("optuna is not installed (the search extra)")
    import optuna

    _same(first["search_tpe"], second["search_tpe"], "tpe")
    assert first["search_tpe_has_study"] and not second["search_tpe_has_study"]
    assert len(first["search_tpe"]["trials"]) == 10
    backend = getattr(optuna.storages.journal, "JournalFileBackend", None) \
        or optuna.storages.JournalFileStorage
    study = optuna.load_study(study_name="multihost",
                              storage=optuna.storages.JournalStorage(backend(storage)))
    workers = {t.user_attrs.get("lrjax_worker", "").rsplit(":", 1)[-1] for t in study.trials}
    assert workers == {str(first["pid"])}  # process 1 never wrote to the storage
    # TPE's first points are its random startup points: the same as one process draws.
    numbers = [t["number"] for t in reference["search_tpe"]["trials"]]
    assert numbers == [t["number"] for t in first["search_tpe"]["trials"]]


def test_clear_errors_on_every_process(runs):
    first, second, _, _ = runs
    # The same error on both processes:
    for name in ("indivisible", "unequal", "halving", "iterable_of_global"):
        assert first["errors"][name] is not None, name
        assert first["errors"][name][0] == second["errors"][name][0], name
    kind, message = first["errors"]["indivisible"]
    assert kind == "ValueError" and "jax.distributed" in message and "multiples of 4" in message
    kind, message = first["errors"]["unequal"]
    assert kind == "ValueError" and "different" in message and "shapes" in message
    assert first["errors"]["halving"][0] == "NotImplementedError"
    assert "lrjax.search" in first["errors"]["halving"][1]
    kind, message = first["errors"]["iterable_of_global"]
    assert kind == "ValueError" and "pass them stacked" in message
    # Process 0 fails to open the storage; process 1 stops with its error instead of waiting.
    assert first["errors"]["storage"] is not None
    kind, message = second["errors"]["storage"]
    assert kind == "RuntimeError" and "process 0 failed" in message
    assert first["errors"]["storage"][0] in message
