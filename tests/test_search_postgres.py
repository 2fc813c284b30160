"""A search shared through a real PostgreSQL server (``.ci/postgres.sh`` starts one in CI).

The URL comes from ``LRJAX_TEST_POSTGRES_URL`` (e.g.
``postgresql://postgres@127.0.0.1:5432/lrjax_test``); without it these tests are skipped.
Every test uses its own study names, so they can share the database under ``pytest -n``.
"""

import os
import socket
import uuid

import pytest

import lrjax
from lrjax.tuning import storage as storage_module

optuna = pytest.importorskip("optuna")

from search_worker_harness import check_killed_worker_run, run_with_a_killed_worker  # noqa: E402

URL = os.environ.get("LRJAX_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not URL, reason="LRJAX_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server "
                    "with .ci/postgres.sh and sets it)")
SPACE = {"lr": lrjax.uniform(0.0, 1.0)}


def train_fn(h, key):
    return (h["lr"] - 0.3) ** 2


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:12]}"


def test_killed_worker_trials_are_failed_and_run_again(tmp_path):
    # 3 workers, one SIGKILLed inside a batch, a fourth joining late: its trials stop
    # beating, another worker fails them after the grace period (3 s here) and their points
    # run again; the study ends with exactly 10 complete trials.
    study_name = unique("workers")
    victim, outs = run_with_a_killed_worker(tmp_path, URL, study_name, trials=10)
    storage = storage_module.open_storage(URL)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        check_killed_worker_run(study, victim, outs, trials=10)
    finally:
        storage_module.close_storage(storage)


def test_storage_url_opens_with_the_heartbeat():
    storage = storage_module.open_storage(URL)
    try:
        assert isinstance(storage, optuna.storages.RDBStorage)
        assert storage.heartbeat_interval == storage_module.HEARTBEAT_INTERVAL
        assert storage.grace_period == storage_module.GRACE_PERIOD
    finally:
        storage_module.close_storage(storage)


def test_a_study_is_not_reused_by_another_search():
    name = unique("mix")
    first = lrjax.search(train_fn, SPACE, num_trials=2, method="random", storage=URL,
                         study_name=name)
    assert first.study.user_attrs["lrjax_space"] == {
        "lr": {"kind": "uniform", "low": 0.0, "high": 1.0}}
    storage_module.close_storage(first.study._storage)  # reading it connected again
    with pytest.raises(ValueError, match=rf"study '{name}' in storage 'postgresql\S*://.*another "
                                         r"space.*'lr' is uniform\(0.0, 1.0\) in the study, "
                                         r"log_uniform\(0.001, 1.0\) here"):
        lrjax.search(train_fn, {"lr": lrjax.log_uniform(1e-3, 1.0)}, num_trials=2,
                     storage=URL, study_name=name)
    resumed = lrjax.search(train_fn, SPACE, num_trials=4, method="random", storage=URL,
                           study_name=name)
    assert [t["number"] for t in resumed.trials] == [0, 1, 2, 3]


def test_an_unreachable_server_is_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://lrjax:secret@127.0.0.1:{port}/nothing"
    with pytest.raises(ValueError, match=r"storage 'postgresql://lrjax:\*\*\*@127.0.0.1:.*"
                                         r"cannot be opened") as info:
        lrjax.search(train_fn, SPACE, num_trials=2, storage=url)
    assert "secret" not in str(info.value)
