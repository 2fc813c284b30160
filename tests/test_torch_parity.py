"""Parity with the real PyTorch schedulers and optimizers, when PyTorch is installed.

PyTorch is not a test dependency (CI skips this module); the numpy transcriptions in the
other test files are the references that always run. Where torch is present (the
benchmarks install the CPU wheel), this checks the transcriptions' source itself.
"""

import json
import pathlib

import jax
import numpy as np
import optax
import pytest

import lrjax

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch_porting.json"

torch = pytest.importorskip("torch")
lr_scheduler = torch.optim.lr_scheduler


def _torch_values(make_scheduler, num_steps: int, key: str = "lr") -> np.ndarray:
    """Values of a PyTorch scheduler's param-group entry at steps 0..num_steps-1."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    scheduler = make_scheduler(opt)
    values = []
    for _ in range(num_steps):
        values.append(opt.param_groups[0][key])
        opt.step()
        scheduler.step()
    return np.asarray(values)


SCHEDULE_CASES = {
    "cyclic-triangular": (
        lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.1, step_size_up=20),
        lrjax.cyclic(0.01, 0.1, 20),
        "lr",
    ),
    "cyclic-triangular2-asymmetric": (
        lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.1, 15, 35, mode="triangular2"),
        lrjax.cyclic(0.01, 0.1, 15, 35, mode="triangular2"),
        "lr",
    ),
    "cyclic-exp_range": (
        lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.1, 30, 10, mode="exp_range", gamma=0.995),
        lrjax.cyclic(0.01, 0.1, 30, 10, mode="exp_range", gamma=0.995),
        "lr",
    ),
    "cyclic-momentum": (
        lambda o: lr_scheduler.CyclicLR(
            o, 0.01, 0.1, 15, 35, mode="triangular2", base_momentum=0.8, max_momentum=0.9
        ),
        lrjax.cyclic_momentum(0.8, 0.9, 15, 35, mode="triangular2"),
        "momentum",
    ),
    "one_cycle-cos": (
        lambda o: lr_scheduler.OneCycleLR(o, 0.5, total_steps=137),
        lrjax.one_cycle(0.5, 137),
        "lr",
    ),
    "one_cycle-linear-three_phase": (
        lambda o: lr_scheduler.OneCycleLR(
            o, 0.5, total_steps=137, anneal_strategy="linear", three_phase=True
        ),
        lrjax.one_cycle(0.5, 137, anneal="linear", three_phase=True),
        "lr",
    ),
    "one_cycle-momentum": (
        lambda o: lr_scheduler.OneCycleLR(o, 0.5, total_steps=137),
        lrjax.one_cycle_momentum(137),
        "momentum",
    ),
    "sgdr-golden": (
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=2),
        lrjax.sgdr(0.1, 1, 2.0),
        "lr",
    ),
    "sgdr-fixed-period": (
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=7, eta_min=0.001),
        lrjax.sgdr(0.1, 7, 1.0, 0.001),
        "lr",
    ),
    "multistep-repeated": (
        lambda o: lr_scheduler.MultiStepLR(o, [5, 5, 12], 0.5),
        lrjax.multistep_decay(0.1, [5, 5, 12], 0.5),
        "lr",
    ),
    "step": (lambda o: lr_scheduler.StepLR(o, 7, 0.3), lrjax.step_decay(0.1, 7, 0.3), "lr"),
    "exponential": (
        lambda o: lr_scheduler.ExponentialLR(o, 0.97),
        lrjax.exponential_decay(0.1, 0.97),
        "lr",
    ),
    "polynomial": (
        lambda o: lr_scheduler.PolynomialLR(o, 40, 2.0),
        lrjax.polynomial_decay(0.1, 0.0, 40, 2.0),
        "lr",
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULE_CASES))
def test_schedule_matches_pytorch(name):
    make_scheduler, schedule, key = SCHEDULE_CASES[name]
    # The golden SGDR sequence is 8 steps long; PyTorch's float log misplaces later
    # restarts for period_mult > 1 (CosineAnnealingWarmRestarts.step(epoch) finds the cycle as
    # int(math.log(epoch / T_0 * (T_mult - 1) + 1, T_mult)), torch/optim/lr_scheduler.py), so
    # longer runs compare only fixed periods.
    # OneCycleLR refuses to step past total_steps (137 here).
    num_steps = 8 if name == "sgdr-golden" else 137 if name.startswith("one_cycle") else 300
    expected = _torch_values(make_scheduler, num_steps, key)
    np.testing.assert_allclose(lrjax.schedule_values(schedule, num_steps), expected, rtol=1e-4, atol=1e-9)


OPTIMIZER_CASES = {
    "adamw": (
        lambda: lrjax.adamw(0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
    "amsgrad": (lambda: lrjax.amsgrad(0.01), lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True)),
    "sgdw-momentum": (
        lambda: lrjax.sgdw(0.01, momentum=0.9, weight_decay=0.0),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    ),
    "sgdw-nesterov": (
        lambda: lrjax.sgdw(0.01, momentum=0.9, nesterov=True, weight_decay=0.0),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
def test_optimizer_matches_pytorch(name, x64):
    make_ours, make_torch = OPTIMIZER_CASES[name]
    rng = np.random.default_rng(0)
    x0, grads = rng.normal(size=5), rng.normal(size=(30, 5))

    param = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    torch_opt = make_torch([param])
    expected = []
    for g in grads:
        param.grad = torch.tensor(g)
        torch_opt.step()
        expected.append(param.detach().numpy().copy())

    tx = make_ours()
    x = np.asarray(x0)
    state = tx.init(x)
    ours = []
    for g in grads:
        updates, state = tx.update(g, state, x)
        x = optax.apply_updates(x, updates)
        ours.append(np.asarray(x))
    np.testing.assert_allclose(np.array(ours), np.array(expected), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------
# Porting pieces (tests/test_porting.py checks lrjax against the recorded numbers; here
# the recording is redone with the installed torch and must give the same numbers)
# ------------------------------------------------------------------------------------
def _torch_run(make_opt, make_scheduler, num_steps, keys=("lr",), grads=None, metrics=None, steps_per_epoch=1):
    """Param-group values used at each step, and the parameters after it (float64 [1, -2])."""
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = make_opt([param])
    scheduler = make_scheduler(opt)
    values, trajectory = {k: [] for k in keys}, []
    for t in range(num_steps):
        for k in keys:
            v = opt.param_groups[0][k]
            values[k].append(float(v[0] if k == "betas" else v))
        param.grad = torch.tensor(grads[t] if grads is not None else [0.1, -0.2], dtype=torch.float64)
        opt.step()
        trajectory.append(param.detach().numpy().copy().tolist())
        if (t + 1) % steps_per_epoch == 0:
            if metrics is None:
                scheduler.step()
            else:
                scheduler.step(metrics[(t + 1) // steps_per_epoch - 1])
    return values, trajectory


def record_porting_fixtures() -> dict:
    """The numbers in tests/fixtures/torch_porting.json (run this file as a script to rewrite it)."""
    L = lr_scheduler
    sgd = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)  # noqa: E731
    adam = lambda p: torch.optim.Adam(p, lr=0.1)  # noqa: E731
    grads = np.random.default_rng(0).normal(size=(20, 2))
    metrics = [1.0, 0.9, 0.95, 0.92, 0.91, 0.91, 0.93, 0.8, 0.85, 0.86, 0.87, 0.88, 0.9, 0.7]
    runs = {
        "onecycle_sgd": _torch_run(sgd, lambda o: L.OneCycleLR(o, 0.1, total_steps=20), 20, ("lr", "momentum"), grads),
        "onecycle_adam": _torch_run(adam, lambda o: L.OneCycleLR(o, 0.1, total_steps=20), 20, ("lr", "betas"), grads),
        "cyclic_sgd": _torch_run(sgd, lambda o: L.CyclicLR(o, 0.01, 0.1, step_size_up=4, step_size_down=6,
                                 base_momentum=0.8, max_momentum=0.9), 20, ("lr", "momentum"), grads),
    }  # fmt: skip
    lrs = {
        "linear": (lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4), 8),
        "linear_down": (lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=5), 8),
        "chained_constant_exp": (lambda o: L.ChainedScheduler(
            [L.ConstantLR(o, factor=0.5, total_iters=3), L.ExponentialLR(o, gamma=0.9)]), 8),
        "chained_linear_step": (lambda o: L.ChainedScheduler(
            [L.LinearLR(o, start_factor=0.2, total_iters=4), L.StepLR(o, 3, 0.5)]), 10),
        "sequential_linear_exp": (lambda o: L.SequentialLR(
            o, [L.LinearLR(o, start_factor=0.2, total_iters=3), L.ExponentialLR(o, gamma=0.8)], milestones=[3]), 8),
        "constant": (lambda o: L.ConstantLR(o, factor=0.25, total_iters=3), 6),
    }  # fmt: skip
    fixtures = {name: [values, trajectory] for name, (values, trajectory) in runs.items()}
    fixtures.update({name: _torch_run(sgd, make, n)[0]["lr"] for name, (make, n) in lrs.items()})
    fixtures["sgdr_per_epoch"] = _torch_run(
        sgd, lambda o: L.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2), 56, steps_per_epoch=4
    )[0]["lr"]
    fixtures["plateau"] = _torch_run(
        sgd, lambda o: L.ReduceLROnPlateau(o, factor=0.5, patience=2, threshold=1e-4, cooldown=1),
        len(metrics) + 1, metrics=metrics + [0.0],
    )[0]["lr"]  # fmt: skip
    return fixtures


def test_recorded_porting_fixtures_are_what_pytorch_gives():
    recorded = json.loads(FIXTURE.read_text())
    fresh = record_porting_fixtures()
    assert set(fresh) == set(recorded) - {"_source"}
    for name, values in fresh.items():
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15),
                     values, recorded[name])  # fmt: skip


def test_per_epoch_cosine_and_abs_plateau_match_pytorch_live():
    """Cases beyond the fixtures: CosineAnnealingLR per epoch; ReduceLROnPlateau in abs mode."""
    expected = _torch_values(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01), 5)
    stepped = lrjax.per_epoch(lrjax.cosine_annealing(0.1, 5, min_value=0.01), steps_per_epoch=3)
    np.testing.assert_allclose(lrjax.schedule_values(stepped, 15), np.repeat(expected, 3), rtol=1e-5)

    metrics = [1.0, 0.95, 0.949, 0.948, 0.9, 0.899, 0.898, 0.897, 0.5]
    lrs = _torch_run(
        lambda p: torch.optim.SGD(p, lr=0.1),
        lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=0.3, patience=1, threshold=0.01,
                                                 threshold_mode="abs"),
        len(metrics) + 1, metrics=metrics + [0.0],
    )[0]["lr"][1:]  # fmt: skip
    opt = optax.chain(
        optax.sgd(0.1), optax.contrib.reduce_on_plateau(factor=0.3, patience=2, rtol=0.0, atol=0.01)
    )
    params = np.ones(2)
    state = opt.init(params)
    ours = []
    for m in metrics:
        _, state = opt.update(params, state, params, value=m)
        ours.append(0.1 * float(state[1].scale))
    np.testing.assert_allclose(ours, lrs, rtol=1e-6)


if __name__ == "__main__":
    data = record_porting_fixtures()
    data["_source"] = json.loads(FIXTURE.read_text())["_source"]
    FIXTURE.write_text(json.dumps(data, indent=0))
