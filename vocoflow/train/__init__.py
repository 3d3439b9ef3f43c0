"""Training: the Accelerate trainer, objectives, and the toy demo."""
