"""Draws every lrjax schedule into one PNG grid.

Usage: python examples/schedule_gallery.py [OUTPUT.png]
(default: schedule_gallery.png in a new temporary folder). Prints the path written.
Needs matplotlib: pip install lrjax[plot].
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import lrjax
from lrjax.plot.figures import _require_matplotlib

NUM_STEPS = 1000

GALLERY = {
    "constant(0.1)": lrjax.constant(0.1),
    "step_decay(0.1, 250, 0.5)": lrjax.step_decay(0.1, 250, 0.5),
    "multistep_decay(0.1, [300, 600, 800])": lrjax.multistep_decay(0.1, [300, 600, 800]),
    "exponential_decay(0.1, 0.5, 200)": lrjax.exponential_decay(0.1, 0.5, 200),
    "exponential_decay(..., staircase=True)": lrjax.exponential_decay(0.1, 0.5, 200, staircase=True),
    "inverse_time_decay(0.1, 1.0, 100)": lrjax.inverse_time_decay(0.1, 1.0, 100),
    "polynomial_decay(0.1, 0.01, 800, 2)": lrjax.polynomial_decay(0.1, 0.01, 800, power=2.0),
    "cosine_annealing(0.1, 800, 0.01)": lrjax.cosine_annealing(0.1, 800, min_value=0.01),
    "sgdr(0.1, 50, 2.0)": lrjax.sgdr(0.1, 50, period_mult=2.0),
    "sgdr(0.1, 100, 1.5, decay=0.7)": lrjax.sgdr(0.1, 100, 1.5, min_value=0.005, decay=0.7),
    "cyclic triangular": lrjax.cyclic(0.01, 0.1, 100),
    "cyclic triangular2": lrjax.cyclic(0.01, 0.1, 100, mode="triangular2"),
    "cyclic exp_range(0.998)": lrjax.cyclic(0.01, 0.1, 100, mode="exp_range", gamma=0.998),
    "cyclic up 150 / down 50": lrjax.cyclic(0.01, 0.1, 150, 50),
    "cyclic_momentum(0.85, 0.95, 100)": lrjax.cyclic_momentum(0.85, 0.95, 100),
    "one_cycle(0.1, 1000)": lrjax.one_cycle(0.1, NUM_STEPS),
    "one_cycle(three_phase, linear)": lrjax.one_cycle(0.1, NUM_STEPS, anneal="linear", three_phase=True),
    "one_cycle_momentum(1000)": lrjax.one_cycle_momentum(NUM_STEPS),
    "noam(512, 200)": lrjax.noam(512, 200),
    "inverse_sqrt(0.1, 100)": lrjax.inverse_sqrt(0.1, 100),
    "wsd(0.1, 1000, warmup 50) 1-sqrt": lrjax.wsd(0.1, NUM_STEPS, warmup_steps=50),
    "wsd(..., decay='linear', 30%)": lrjax.wsd(0.1, NUM_STEPS, warmup_steps=50, decay="linear",
                                               decay_fraction=0.3),
    "wsd(..., decay='cosine', min 0.01)": lrjax.wsd(0.1, NUM_STEPS, warmup_steps=50,
                                                    decay="cosine", min_value=0.01),
    "wsd_cooldown(inverse_sqrt, 700, 300)": lrjax.wsd_cooldown(lrjax.inverse_sqrt(0.1, 100), 700, 300),
    "warmup(cosine, 200) linear": lrjax.warmup(lrjax.cosine_annealing(0.1, 800), 200),
    "warmup(cosine, 200, 1e-4, exponential)": lrjax.warmup(
        lrjax.cosine_annealing(0.1, 800), 200, 1e-4, "exponential"
    ),
    "warmup(cosine, 200, 0.01, constant)": lrjax.warmup(
        lrjax.cosine_annealing(0.1, 800), 200, 0.01, "constant"
    ),
}


def draw_gallery(path: Path, columns: int = 4) -> Path:
    """Draws every schedule of GALLERY into one grid of small plots saved at ``path``."""
    plt = _require_matplotlib()
    rows = math.ceil(len(GALLERY) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    for ax, (title, schedule) in zip(axes.flat, GALLERY.items()):
        lrjax.plot_schedule(schedule, NUM_STEPS, ax=ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(GALLERY) :]:
        ax.set_visible(False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, help="PNG path (default: a temp folder)")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="lrjax-")) / "schedule_gallery.png"
    path = draw_gallery(output)
    print(path)
    return path


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")  # the gallery only writes a file: no display needed
    main()
