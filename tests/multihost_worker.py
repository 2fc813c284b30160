"""One process of tests/test_multihost.py: a range test, snapshots and searches, results pickled.

Run as ``python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR``: with 2
processes each one has 4 CPU devices and joins ``jax.distributed`` over gloo on 127.0.0.1,
and passes its share of every batch (rows ``[p * n, (p + 1) * n)``). :func:`run` also runs
in the test process itself (1 process, 8 devices, the whole batch): the reference.
"""

from __future__ import annotations

import os
import pickle
import sys


def _init(process_id: int, num_processes: int, port: int) -> None:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    try:  # jax < 0.5 had no choice; later ones need gloo for CPU collectives
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:
        pass
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id)


GLOBAL_BATCH = 16
STEPS = 12


def _problem():
    import numpy as np

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3,)).astype(np.float32)
    x = rng.normal(size=(STEPS, GLOBAL_BATCH, 3)).astype(np.float32)
    y = (x @ w + 0.1 * rng.normal(size=(STEPS, GLOBAL_BATCH))).astype(np.float32)
    return x, y


def run(storage: str | None = None, out_dir: str | None = None) -> dict:
    """Every scenario on this process's share of the data; results as host numpy."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import lrjax

    p, count = jax.process_index(), jax.process_count()
    x, y = _problem()
    rows = slice(p * GLOBAL_BATCH // count, (p + 1) * GLOBAL_BATCH // count)
    share = {"x": x[:, rows], "y": y[:, rows]}  # (steps, batch share, ...)

    def loss_fn(w, batch):
        return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

    w0 = jnp.zeros(3, jnp.float32)
    out: dict = {"pid": os.getpid(), "process": p}

    def curves(result):
        return {k: np.asarray(v) for k, v in (
            ("lrs", result.lrs), ("losses", result.losses),
            ("smoothed", result.smoothed_losses), ("val", result.val_losses))}

    val = {"x": x[0, rows] + 0.5, "y": y[0, rows]}
    stacked = lrjax.range_test(loss_fn, w0, optax.sgd, share, min_lr=1e-3, max_lr=10.0,
                               num_steps=STEPS, val_data=val, execution="compiled")
    out["range_stacked"] = curves(stacked) | {"diverged_at": stacked.diverged_at}
    batches = [jax.tree.map(lambda a: a[t], share) for t in range(STEPS)]  # an iterable
    host = lrjax.range_test(loss_fn, w0, optax.sgd, iter(batches), min_lr=1e-3, max_lr=10.0,
                            num_steps=STEPS, val_data=val, chunk_size=5, execution="host")
    out["range_iterable_host"] = curves(host) | {"diverged_at": host.diverged_at}

    def data_fn(key, i):  # the function form describes the whole batch
        xs = jax.random.normal(key, (GLOBAL_BATCH, 3))
        return {"x": xs, "y": xs @ jnp.arange(1.0, 4.0)}

    generated = lrjax.range_test(loss_fn, w0, optax.sgd, data_fn, min_lr=1e-3, max_lr=10.0,
                                 num_steps=STEPS, chunk_size=5, execution="compiled")
    out["range_function"] = curves(generated)

    def small_fn(key, i):  # 6 rows do not split over 8 devices: each process runs it whole
        return jax.tree.map(lambda a: a[:6], data_fn(key, i))

    small = lrjax.range_test(loss_fn, w0, optax.sgd, small_fn, min_lr=1e-3, max_lr=10.0,
                             num_steps=STEPS, execution="compiled")
    out["range_function_unsplit"] = curves(small)

    # Arrays the caller assembled over every process already (the whole batch).
    mesh = jax.sharding.Mesh(np.asarray(sorted(jax.devices(), key=lambda d: d.process_index)),
                             ("data",))
    spec = jax.sharding.PartitionSpec
    assembled = jax.make_array_from_process_local_data(
        jax.sharding.NamedSharding(mesh, spec(None, "data")), share)
    assembled_val = jax.make_array_from_process_local_data(
        jax.sharding.NamedSharding(mesh, spec("data")), val)
    global_ = lrjax.range_test(loss_fn, w0, optax.sgd, assembled, min_lr=1e-3, max_lr=10.0,
                               num_steps=STEPS, val_data=assembled_val, execution="compiled")
    out["range_global_arrays"] = curves(global_) | {"diverged_at": global_.diverged_at}

    snaps = lrjax.train_snapshots(loss_fn, w0, optax.sgd, share, num_steps=STEPS, num_cycles=3,
                                  init_value=0.1, execution="host")
    out["snapshots"] = {"params": np.asarray(snaps.params), "losses": snaps.losses,
                        "lrs": snaps.learning_rates, "steps": snaps.steps}
    snaps = lrjax.train_snapshots(loss_fn, w0, optax.sgd, iter(batches), num_steps=STEPS,
                                  num_cycles=3, init_value=0.1, execution="compiled")
    out["snapshots_iterable_compiled"] = {"params": np.asarray(snaps.params),
                                          "losses": snaps.losses}

    # Accumulation: (batches, 2 micro-batches, share of the micro-batch, ...).
    micro = jax.tree.map(lambda a: a.reshape((STEPS // 2, 2) + a.shape[1:]), share)
    train_fn = lrjax.make_train_fn(loss_fn, lambda k: 0.1 * jax.random.normal(k, (3,)),
                                   lambda h: optax.sgd(h["lr"]), micro, num_steps=6,
                                   eval_fn=lambda w: loss_fn(w, {"x": x[0], "y": y[0]}),
                                   accumulation_steps=2, execution="host")
    space = {"lr": lrjax.log_uniform(1e-3, 1.0)}
    found = lrjax.search(train_fn, space, num_trials=8, method="random", key=1)
    out["search_random"] = _trials(found)
    if out_dir is not None:  # only process 0 writes files
        found.to_json(os.path.join(out_dir, f"search_{p}.json"))
    if count > 1:
        out["errors"] = _errors(lrjax, loss_fn, w0, x, y, p, train_fn, space, assembled)
    if storage is not None:
        train_fn.execution  # noqa: B018  resolve before the copy below
        compiled = lrjax.make_train_fn(loss_fn, lambda k: 0.1 * jax.random.normal(k, (3,)),
                                       lambda h: optax.sgd(h["lr"]), share, num_steps=6,
                                       execution="compiled")
        tpe = lrjax.search(compiled, space, num_trials=10, batch_size=8, method="tpe", key=2,
                           storage=storage, study_name="multihost")
        out["search_tpe"] = _trials(tpe)
        out["search_tpe_has_study"] = tpe.study is not None
    return out


def _error(fn) -> tuple[str, str] | None:
    try:
        fn()
    except Exception as error:  # noqa: BLE001  recorded for the test to judge
        return type(error).__name__, str(error)
    return None


def _errors(lrjax, loss_fn, w0, x, y, p, train_fn, space, assembled) -> dict:
    """Calls that must fail on every process with a clear error (nothing hangs)."""
    import jax
    import optax

    rows = 4 if p else 8  # process 1 passes a smaller share than process 0
    return {
        # 3 rows per process do not split over 4 local devices.
        "indivisible": _error(lambda: lrjax.range_test(
            loss_fn, w0, optax.sgd, {"x": x[:, :3], "y": y[:, :3]}, num_steps=STEPS)),
        "unequal": _error(lambda: lrjax.range_test(
            loss_fn, w0, optax.sgd, {"x": x[:, :rows], "y": y[:, :rows]}, num_steps=STEPS)),
        # Process 0 cannot open this storage; process 1 never tries and hears of it.
        "storage": _error(lambda: lrjax.search(
            train_fn, space, num_trials=8, method="random", key=1,
            storage=os.path.join(os.sep, "nonexistent-lrjax-dir", "sub", "journal.log"))),
        "halving": _error(lambda: lrjax.successive_halving(
            train_fn, space, num_trials=4, method="random")),
        # Batches spanning every process cannot be stacked on one host.
        "iterable_of_global": _error(lambda: lrjax.range_test(
            loss_fn, w0, optax.sgd, [jax.tree.map(lambda a, t=t: a[t], assembled)
                                     for t in range(STEPS)], num_steps=STEPS)),
    }


def _trials(result) -> dict:
    return {"trials": result.trials, "best": (result.best_params, result.best_value),
            "method": result.method, "objective": result.objective}


def main() -> None:
    process_id, num_processes, port, out_dir = (int(sys.argv[1]), int(sys.argv[2]),
                                                int(sys.argv[3]), sys.argv[4])
    storage = sys.argv[5] if len(sys.argv) > 5 else None
    _init(process_id, num_processes, port)
    out = run(storage, out_dir)
    with open(os.path.join(out_dir, f"process{process_id}.pkl"), "wb") as file:
        pickle.dump(out, file)


if __name__ == "__main__":
    main()
