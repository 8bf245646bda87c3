"""Engines every method shares: models, tasks, prompts, scoring, training, patching, projection, runs, metrics."""
