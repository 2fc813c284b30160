"""lrjax on two JAX processes: a range test and a search under ``jax.distributed``, on one CPU.

A TPU pod slice or a GPU cluster runs one process per host, all running the same script;
here two processes with 4 simulated CPU devices each stand in for two hosts (gloo over
127.0.0.1). Run ``python examples/multihost_cpu.py``: it starts itself twice (process 0
and 1), and each prints what it got back. Both print the same numbers, which are also what
one process with all 8 devices and the whole batch computes.

What each process does:

* passes its share of every batch: rows ``[p * 32, (p + 1) * 32)`` of the global batch of
  64 (its block of the batch axis, in process order);
* calls :func:`lrjax.range_test` and :func:`lrjax.search` as one process would; lrjax
  shards the batch (range test) or the trials (search) over the devices of both processes;
* gets back the same host results as the other process; only process 0 writes files.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

NUM_PROCESSES = 2
GLOBAL_BATCH = 64


def launch() -> int:
    """Starts this script once per process and waits (at most 5 minutes) for them."""
    with socket.socket() as sock:  # a free port on localhost for the coordinator
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port)])
             for i in range(NUM_PROCESSES)]
    try:
        return max(proc.wait(timeout=300) for proc in procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def worker(process_id: int, port: int) -> None:
    # Before JAX starts: 4 CPU devices per process. On a TPU pod slice or a GPU cluster
    # none of this is needed, and jax.distributed.initialize() finds its peers itself.
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    try:  # CPU collectives across processes (newer jax needs the choice made)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:
        pass
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=NUM_PROCESSES, process_id=process_id)

    import jax.numpy as jnp
    import numpy as np
    import optax

    import lrjax

    # Every process can make the whole data set here; a real input pipeline would load only
    # this process's rows (e.g. a tf.data / grain shard of index jax.process_index()).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, GLOBAL_BATCH, 8)).astype(np.float32)  # (steps, batch, features)
    y = (x @ rng.normal(size=8) > 0).astype(np.float32)
    p, share = jax.process_index(), GLOBAL_BATCH // jax.process_count()
    rows = slice(p * share, (p + 1) * share)
    data = {"x": x[:, rows], "y": y[:, rows]}  # this process's share of every batch

    def loss_fn(params, batch):
        logits = batch["x"] @ params["w"] + params["b"]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch["y"]))

    params = {"w": jnp.zeros(8), "b": jnp.zeros(())}
    result = lrjax.range_test(loss_fn, params, optax.adam, data, min_lr=1e-4, max_lr=10.0,
                              num_steps=100)
    print(f"process {p}: range test loss {result.losses[0]:.4f} -> min "
          f"{np.nanmin(result.losses):.4f}, suggested lr {result.suggest():.3g}", flush=True)

    train_fn = lrjax.make_train_fn(loss_fn, lambda key: params, lambda h: optax.adam(h["lr"]),
                                   data, num_steps=50)
    found = lrjax.search(train_fn, {"lr": lrjax.log_uniform(1e-4, 1.0)}, num_trials=16,
                         method="quasirandom")
    print(f"process {p}: best lr {found.best_params['lr']:.4g}, "
          f"train loss {found.best_value:.4f}", flush=True)
    if p == 0:  # one process writes the files
        found.to_json("multihost_search.json")


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.exit(launch())
    worker(int(sys.argv[1]), int(sys.argv[2]))
