"""Executors run a grid's pending cells: `local` (this process or worker processes), `ray`, `slurm`.

Each calls `scaling.grid.runner.work_on_cell` for every cell, so they differ only in where it runs.
"""
