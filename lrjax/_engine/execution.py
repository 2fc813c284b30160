"""How the engine runs N training steps: one compiled loop, or a host loop over compiled steps.

Every trainer describes one step as a pure ``body(carry, consts, t) -> carry`` (``t`` the
global step, ``consts`` what every step reads: data, hyperparameters) and, optionally,
``done(carry) -> bool`` (every curve diverged: stop early). The engine runs it one of two
ways, with the same arithmetic:

* ``"compiled"``: the steps as one ``lax.while_loop`` inside one program. Fastest on
  GPU/TPU, and on CPU for dense models (no per-step dispatch).
* ``"host"``: a Python loop over one compiled program of ``unroll`` steps (no loop
  construct inside it). XLA's CPU backend runs a convolution's gradient inside a loop body
  (``while``, ``scan``, even ``cond``) 4-20x slower than the same step compiled alone
  (jax-ml/jax#12868), so for convolutions on CPU this is the fastest. Dispatch is
  asynchronous: ``done`` is read ``lag`` programs behind the one just queued, so the device
  never waits for the host, and at most ``lag * unroll`` steps run after the stop (their
  records are masked by the trainer).

``execution="auto"`` (the default of every trainer) picks ``"host"`` on a CPU when the
step contains a convolution (read off its jaxpr) and ``"compiled"`` otherwise;
:func:`choose_execution` is that rule.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "EXECUTIONS",
    "check_execution",
    "choose_execution",
    "compiled_loop",
    "contains_primitive",
    "host_steps",
    "loop",
    "run_host",
    "run_host_interleaved",
    "vmap_or_map",
]

EXECUTIONS = ("auto", "compiled", "host")
# Primitives whose gradients XLA's CPU backend runs slowly inside a loop body.
SLOW_IN_LOOP_ON_CPU = frozenset({"conv_general_dilated"})

Body = Callable[[Any, Any, jax.Array], Any]
Done = Callable[[Any], jax.Array]


def check_execution(execution: Any) -> str:
    """``execution`` validated: one of :data:`EXECUTIONS`."""
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}.")
    return execution


def _sub_jaxprs(params: dict) -> Iterable[Any]:
    """The jaxprs nested in an equation's params (loop bodies, branches, custom rules)."""
    for value in params.values():
        values = value if isinstance(value, (tuple, list)) else (value,)
        for item in values:
            inner = getattr(item, "jaxpr", item)  # a ClosedJaxpr wraps a Jaxpr
            if hasattr(inner, "eqns"):
                yield inner


def contains_primitive(jaxpr: Any, names: frozenset[str]) -> bool:
    """Whether ``jaxpr`` (or any jaxpr nested in it) applies a primitive named in ``names``."""
    stack = [getattr(jaxpr, "jaxpr", jaxpr)]
    while stack:
        current = stack.pop()
        for eqn in current.eqns:
            if eqn.primitive.name in names:
                return True
            stack.extend(_sub_jaxprs(eqn.params))
    return False


def choose_execution(execution: str, step: Callable[..., Any], *args: Any,
                     backend: str | None = None) -> str:
    """The strategy for ``step(*args)``: ``execution`` itself unless it is ``"auto"``.

    ``"auto"``: ``"host"`` when the backend is a CPU and the step contains a primitive that
    XLA runs slowly inside a loop body there (a convolution), else ``"compiled"``. Only the
    step's jaxpr is traced (abstract values suffice); nothing is compiled.

    Args:
        execution: ``"auto"``, ``"compiled"`` or ``"host"``.
        step: one training step (with its gradient), e.g. the trainer's body.
        *args: its arguments (arrays or ``jax.ShapeDtypeStruct`` s).
        backend: the platform it will run on (default: JAX's default backend).

    Returns:
        ``"compiled"`` or ``"host"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> dense = lambda w, x: jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w)))(w)
        >>> choose_execution("auto", dense, jnp.ones((3, 2)), jnp.ones((4, 3)))
        'compiled'

    References:
        jax-ml/jax#12868 (convolutions in loop bodies on XLA:CPU).
    """
    check_execution(execution)
    if execution != "auto":
        return execution
    if (backend or jax.default_backend()) != "cpu":
        return "compiled"
    jaxpr = jax.make_jaxpr(step)(*args)
    return "host" if contains_primitive(jaxpr, SLOW_IN_LOOP_ON_CPU) else "compiled"


def vmap_or_map(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.vmap(fn)``, or ``lax.map`` over the same leading axis where jax cannot batch.

    jax < 0.8 has no batching rule for a convolution's gradient whose operands carry a
    sharding (a batch or a trial axis sharded over a mesh): it raises NotImplementedError
    while tracing. The items then run one after another inside the same program, with the
    same numbers. Trace-time only: nothing is decided on a traced value.
    """
    def batched(*args: Any) -> Any:
        try:
            return jax.vmap(fn)(*args)
        except NotImplementedError:
            return jax.lax.map(lambda a: fn(*a), args)

    return batched


def _never_done(carry: Any) -> jax.Array:
    return jnp.zeros((), bool)


def loop(body: Body, done: Done | None, carry: Any, consts: Any, start: jax.Array,
         num_steps: jax.Array) -> Any:
    """The steps ``t = start, ..., start + num_steps - 1`` as one ``lax.while_loop``.

    Traceable (use it inside a trainer's own program, e.g. a vmapped trial); exits early
    once ``done(carry)``. ``start`` and ``num_steps`` may be traced, so one program serves
    every length.
    """
    stop = start + num_steps
    done = done or _never_done

    def cond(state: tuple) -> jax.Array:
        t, carry = state
        return (t < stop) & ~done(carry)

    def step(state: tuple) -> tuple:
        t, carry = state
        return t + 1, body(carry, consts, t)

    start = jnp.asarray(start, jnp.int32)
    return jax.lax.while_loop(cond, step, (start, carry))[1]


def compiled_loop(body: Body, done: Done | None = None) -> Callable[..., Any]:
    """``jit(program(carry, consts, start, num_steps) -> carry)``: :func:`loop` compiled."""
    return jax.jit(functools.partial(loop, body, done))


def _unrolled(body: Body, done: Done | None, unroll: int, carry: Any, consts: Any,
              start: jax.Array) -> tuple[Any, jax.Array]:
    start = jnp.asarray(start, jnp.int32)
    for j in range(unroll):  # a Python loop: no loop construct in the program
        carry = body(carry, consts, start + j)
    return carry, (done or _never_done)(carry)


def host_steps(body: Body, done: Done | None = None, unroll: int = 1) -> Callable[..., Any]:
    """``jit(program(carry, consts, start) -> (carry, done))``: ``unroll`` steps, no loop."""
    return jax.jit(functools.partial(_unrolled, body, done, unroll))


def run_host(program: Callable[..., Any], carry: Any, consts: Any, start: int, num_steps: int,
             *, unroll: int = 1, lag: int = 2,
             tail: Callable[..., Any] | None = None) -> tuple[Any, int]:
    """Drives a :func:`host_steps` program from the host for ``num_steps`` steps.

    Args:
        program: ``host_steps(body, done, unroll)``.
        carry: the state before step ``start`` (on device).
        consts: what every step reads.
        start: the first global step.
        num_steps: steps to run; a remainder of ``num_steps % unroll`` runs through
            ``tail`` (a one-step ``host_steps`` program), which is then required.
        unroll: steps per call of ``program``.
        lag: ``done`` is read this many calls behind the newest queued one (0: at once).

    Returns:
        ``(carry, steps_run)``; fewer than ``num_steps`` when ``done`` stopped it.
    """
    pending: collections.deque = collections.deque()
    t, stop = start, start + num_steps
    while t < stop:
        if stop - t >= unroll:
            carry, done = program(carry, consts, t)
            t += unroll
        else:
            if tail is None:
                raise ValueError("run_host: num_steps is not a multiple of unroll and no tail "
                                 "program was given.")
            carry, done = tail(carry, consts, t)
            t += 1
        pending.append(done)
        if len(pending) > lag and bool(pending.popleft()):
            break
    return carry, t - start


def run_host_interleaved(program: Callable[..., Any], carries: list, consts: list, start: int,
                         num_steps: int) -> list:
    """Drives several independent trainings' one-step programs from the host, interleaved.

    Step ``t`` of every training, then ``t + 1``: dispatch is asynchronous, so the host
    queues steps while the device runs them, and nothing is read back (no stop). The
    search runs one trial per program this way on a CPU, where one program vmapped over
    trials ran slower than per-trial programs.

    Args:
        program: ``host_steps(body)`` (one step, no ``done``).
        carries: each training's state.
        consts: each training's constants (same order).
        start: the first global step.
        num_steps: steps to run.

    Returns:
        The carries after the steps.
    """
    carries = list(carries)
    for t in range(start, start + num_steps):
        for i, const in enumerate(consts):
            carries[i] = program(carries[i], const, t)[0]
    return carries
