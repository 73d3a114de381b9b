"""Studies: sweeps of pretraining points, each exported and evaluated, gathered into tables.

config.py    the sweep's schema (SweepConfig)          points.py   points resolved into runs
runners/     where jobs run: local processes, Slurm    rows.py     one row per evaluated model
sweep.py     the engine and its command                report.py   results.csv/md, study.md, plots
compare.py   configurations, their noise, differences  scaling.py  scores against tokens seen
publish.py   a finished study -> results/<name>/       readme.py   README blocks made from the data
"""
import dnachunker  # noqa: F401  (first: it sets how OpenMP threads wait, before torch loads)
