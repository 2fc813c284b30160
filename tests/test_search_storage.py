"""search(storage=...): a study that persists, resumes after Ctrl-C and is shared by processes."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import pytest

import lrjax
from lrjax.tuning import batches as search_runner
from lrjax.tuning import storage as storage_module

optuna = pytest.importorskip("optuna")

SPACE = {"lr": lrjax.uniform(0.0, 1.0), "b": lrjax.log_uniform(1e-3, 1.0)}


def train_fn(h, key):
    return (h["lr"] - 0.3) ** 2 + jnp.log(h["b"]) ** 2


def _interrupt_after(batches):
    def progress(done, total):
        if done >= 4 * batches:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize("method", ["quasirandom", "tpe"])
def test_resume_after_ctrl_c_between_batches(tmp_path, method):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    common = dict(num_trials=8, batch_size=4, method=method, storage=storage, key=3)
    with pytest.raises(KeyboardInterrupt):
        lrjax.search(train_fn, SPACE, progress=_interrupt_after(1), **common)
    first = optuna.load_study(study_name="lrjax-search", storage=storage).trials
    assert [t.state for t in first] == [optuna.trial.TrialState.COMPLETE] * 4
    result = lrjax.search(train_fn, SPACE, **common)
    assert [t["number"] for t in result.trials] == list(range(8))
    for old, new in zip(first, result.trials):  # finished trials kept, not repeated
        assert new["params"] == old.params and new["value"] == pytest.approx(old.value)
    assert len({tuple(t["params"].values()) for t in result.trials}) == 8
    if method == "quasirandom":  # the same points as a search without storage
        plain = lrjax.search(train_fn, SPACE, num_trials=8, method=method, key=3)
        assert [t["params"] for t in plain.trials] == [t["params"] for t in result.trials]
    # A third call has nothing left to do.
    again = lrjax.search(train_fn, SPACE, **common)
    assert len(again.study.trials) == 8


def test_ctrl_c_inside_a_batch_requeues_its_points(tmp_path, monkeypatch):
    storage = str(tmp_path / "search.journal")  # a journal file
    real_call = search_runner.BatchRunner.__call__
    calls = []

    def interrupted_second_batch(self, hparams, numbers):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_call(self, hparams, numbers)

    monkeypatch.setattr(search_runner.BatchRunner, "__call__", interrupted_second_batch)
    common = dict(num_trials=8, batch_size=4, method="random", storage=storage)
    with pytest.raises(KeyboardInterrupt):
        lrjax.search(train_fn, SPACE, **common)
    monkeypatch.setattr(search_runner.BatchRunner, "__call__", real_call)
    study = optuna.load_study(study_name="lrjax-search",
                              storage=storage_module.journal_storage(storage))
    lost = [t.params for t in study.trials if t.user_attrs.get("lrjax") == "interrupted"]
    assert len(lost) == 4
    result = lrjax.search(train_fn, SPACE, **common)
    assert len(result.trials) == 8 and all(t["state"] == "complete" for t in result.trials)
    assert all(p in [t["params"] for t in result.trials] for p in lost)


WORKER = textwrap.dedent(
    """
    import os, sys, time, json, pathlib
    import jax.numpy as jnp
    import lrjax
    storage, me, other = sys.argv[1:4]
    pathlib.Path(me).touch()
    while not os.path.exists(other):  # start together
        time.sleep(0.02)
    space = {"lr": lrjax.uniform(0.0, 1.0)}

    def progress(done, total):
        # After its first batch each process waits (up to 2 minutes) for the other's first
        # batch, so both take part however long either one takes to compile.
        if not os.path.exists(me + ".batch"):
            pathlib.Path(me + ".batch").touch()
            deadline = time.time() + 120
            while not os.path.exists(other + ".batch") and time.time() < deadline:
                time.sleep(0.02)
        time.sleep(0.05)

    result = lrjax.search(lambda h, k: (h["lr"] - 0.3) ** 2, space, num_trials=12,
                          batch_size=2, method=sys.argv[4], storage=storage,
                          progress=progress)
    mine = [t.number for t in result.study.trials
            if t.user_attrs.get("lrjax_worker", "").endswith(f":{os.getpid()}")]
    print(json.dumps({"mine": mine, "trials": result.trials}))
    """
)


@pytest.mark.parametrize("method", ["random"])
def test_two_processes_split_the_trials(tmp_path, method):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    storage = str(tmp_path / "shared.journal")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    flags = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, str(script), storage, str(me), str(other),
                               method], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
             for me, other in (flags, flags[::-1])]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    mine = [set(o["mine"]) for o in outs]
    assert mine[0] and mine[1] and not mine[0] & mine[1]  # both worked, no trial twice
    assert mine[0] | mine[1] == set(range(12))  # no trial lost, none past the budget
    for out in outs:  # each process reports the whole study
        assert [t["number"] for t in out["trials"]] == list(range(12))
        points = [t["params"]["lr"] for t in out["trials"]]
        assert len(set(points)) == 12
