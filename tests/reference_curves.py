"""Loop references shared by the suggestion tests (written from the documented rules)."""

import math


def finite_prefix(raw):
    """The values before the first non-finite one (divergence)."""
    n = 0
    while n < len(raw) and math.isfinite(raw[n]):
        n += 1
    return list(raw[:n])


def loop_truncated_mean(values, half_width):
    """Centred moving average, the window cut (not extrapolated) at the ends."""
    n = len(values)
    out = []
    for i in range(n):
        window = values[max(0, i - half_width) : min(n, i + half_width + 1)]
        out.append(sum(window) / len(window))
    return out
