"""`python -m slurm.publish`, kept for one release: the command is now `python -m studies.publish`
(or `dnachunker publish`)."""
import sys

from studies.publish import main

if __name__ == "__main__":
    print("note: slurm.publish moved to studies.publish (dnachunker publish); this alias goes in the next release", file=sys.stderr)
    sys.exit(main(prog="python -m slurm.publish"))
