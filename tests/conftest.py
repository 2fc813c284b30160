"""Test configuration: 8 simulated CPU devices and headless plotting.

The environment variables must be set before JAX initialises its backends, which is
why they live at the top of conftest.py (pytest imports it before any test module).
float64 is *not* switched on globally: the library promises float32 outputs and a
global x64 would hide dtype bugs. Reference-number tests use the ``x64`` fixture.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402


# jax.enable_x64 is new (jax 0.8); Colab's pinned jax 0.7.2 has only the experimental form.
try:
    enable_x64 = jax.enable_x64
except AttributeError:  # jax < 0.8
    from jax.experimental import enable_x64


@pytest.fixture
def x64():
    """Run the test body with 64-bit types enabled (for tight reference checks)."""
    with enable_x64(True):
        yield


@pytest.fixture(scope="session")
def num_devices() -> int:
    return jax.device_count()
