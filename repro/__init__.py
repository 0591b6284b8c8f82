"""Reproduction suite for architecture hyperparameter optimization (widths, resolution, depth)."""

__version__ = "0.1.0"
