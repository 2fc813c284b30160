"""Worker processes sharing one search study, for the tests of a distributed search.

:func:`run_with_a_killed_worker` starts a worker that takes a batch and stalls inside its
first trial, then two more workers; once one of those has finished a batch the first is
SIGKILLed (its trials stay RUNNING in the storage), and a fourth worker joins late. Every
process is bounded in time and killed at the end whatever happens.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

WORKER = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    import jax, jax.numpy as jnp, numpy as np
    import lrjax
    from lrjax.tuning.storage import rdb_storage

    cfg = json.loads(sys.argv[1])
    flags = pathlib.Path(cfg["flags"])
    storage = cfg["storage"]
    if "://" in storage:  # a short heartbeat, so that a lost trial is found in seconds
        storage = rdb_storage(storage, heartbeat_interval=1, grace_period=3)

    def pause(lr):
        if cfg["victim"]:
            (flags / "victim-running").touch()
            time.sleep(300)  # killed in here, its batch's trials RUNNING
        time.sleep(cfg["trial_seconds"])
        return np.float32(0.0)

    def train_fn(h, key):
        wait = jax.pure_callback(pause, jax.ShapeDtypeStruct((), jnp.float32), h["lr"])
        return (h["lr"] - 0.3) ** 2 + wait

    def progress(done, total):
        (flags / (cfg["name"] + "-batch")).touch()

    result = lrjax.search(train_fn, {"lr": lrjax.uniform(0.0, 1.0)}, num_trials=cfg["trials"],
                          batch_size=cfg["batch"], method=cfg["method"], storage=storage,
                          study_name=cfg["study"], progress=progress)
    print(json.dumps({"pid": os.getpid(), "trials": result.trials}))
    """
)

TIMEOUT = 300  # seconds for a whole run: 20 s alone, 100 s on a loaded 2-core machine


def _env() -> dict:
    # One CPU device per worker: the tests' 8 simulated devices are not needed here.
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")


def _wait_for(paths: list[pathlib.Path], procs: list, deadline: float, what: str) -> None:
    while not any(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a worker exited ({proc.returncode}) before {what}: "
                                     f"{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_with_a_killed_worker(tmp_path: pathlib.Path, storage: str, study: str, *,
                             trials: int = 10, batch: int = 2, method: str = "random",
                             trial_seconds: float = 0.1) -> tuple[int, list[dict]]:
    """Run the scenario; returns the killed worker's pid and the other three's outputs."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    flags = tmp_path / "flags"
    flags.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, victim: bool = False) -> subprocess.Popen:
        cfg = {"flags": str(flags), "storage": storage, "study": study, "trials": trials,
               "batch": batch, "method": method, "victim": victim, "name": name,
               "trial_seconds": trial_seconds}
        proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env())
        procs.append(proc)
        return proc

    deadline = time.monotonic() + TIMEOUT
    try:
        victim = start("victim", victim=True)
        _wait_for([flags / "victim-running"], procs, deadline, "the first worker's trial")
        others = [start("a"), start("b")]
        _wait_for([flags / "a-batch", flags / "b-batch"], others, deadline,
                  "a batch of the other workers")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        others.append(start("late"))
        outs = []
        for proc in others:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err[-3000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
        return victim.pid, outs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            for stream in (proc.stdout, proc.stderr):
                stream.close()


def check_killed_worker_run(study, victim_pid: int, outs: list[dict], trials: int) -> None:
    """Exactly ``trials`` complete trials, unique numbers, the killed worker's points re-run."""
    import optuna

    state = optuna.trial.TrialState
    all_trials = study.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == state.COMPLETE]
    assert len(complete) == trials, [(t.number, t.state.name, t.user_attrs) for t in all_trials]
    assert not [t for t in all_trials if t.state in (state.RUNNING, state.WAITING)]
    numbers = sorted(t.number for t in complete)
    assert len(set(numbers)) == trials
    lost = [t for t in all_trials
            if t.user_attrs.get("lrjax_worker", "").endswith(f":{victim_pid}")]
    assert lost and all(t.state == state.FAIL for t in lost)
    for t in lost:  # each lost point ran again, once, to completion
        rerun = t
        while rerun.state != state.COMPLETE:  # a re-run may itself be lost (a stalled worker)
            reruns = [r for r in all_trials if r.user_attrs.get("lrjax_retry_of") == rerun.number]
            assert len(reruns) == 1, (t.number, reruns)
            rerun = reruns[0]
        assert rerun.params == t.params
    for out in outs:  # every surviving worker reports the whole study
        assert sorted(t["number"] for t in out["trials"]) == numbers
        assert all(t["state"] == "complete" for t in out["trials"])
