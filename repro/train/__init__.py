"""Training and evaluation (plain functions; the engine issue adds profiles, DDP and checkpoints)."""
