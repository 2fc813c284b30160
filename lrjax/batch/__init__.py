"""Batch size and learning rate: Smith's SGD noise scale and the scaling rules (``scaling``),
McCandlish's gradient noise scale, measured once or during training (``gradient_noise``).
"""

from lrjax.batch.gradient_noise import (
    GradientNoiseScale,
    GradientNoiseMonitorState,
    gradient_noise_scale,
    gradient_noise_estimate,
    gradient_noise_scale_from_norms,
    gradient_noise_monitor,
)
from lrjax.batch.scaling import (
    BatchSizePlan,
    batch_size_for_noise_scale,
    batch_size_plan,
    batch_size_schedule,
    noise_scale,
    rescale_batch_size,
    scale_adam,
    scale_learning_rate,
)

__all__ = [
    "noise_scale",
    "batch_size_for_noise_scale",
    "rescale_batch_size",
    "scale_learning_rate",
    "scale_adam",
    "batch_size_schedule",
    "batch_size_plan",
    "BatchSizePlan",
    "gradient_noise_scale",
    "gradient_noise_scale_from_norms",
    "GradientNoiseScale",
    "gradient_noise_monitor",
    "gradient_noise_estimate",
    "GradientNoiseMonitorState",
]
