"""Jobs: the manager (queue, cancel, recovery), the runner (one job on one backend), router, store, VRAM learning."""
