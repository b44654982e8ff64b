"""Training: loss, metric, optimizers, schedules, checkpoints and the loop."""
