"""`python -m slurm.sweep`, kept for one release: the command is now `python -m studies.sweep`
(or `dnachunker sweep`)."""
import sys

from studies.sweep import main

if __name__ == "__main__":
    print("note: slurm.sweep moved to studies.sweep (dnachunker sweep); this alias goes in the next release", file=sys.stderr)
    sys.exit(main(prog="python -m slurm.sweep"))
