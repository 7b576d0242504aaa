"""Grids of SFT runs: specs, cell plans, the runner and its run folders, executors, the result store."""
