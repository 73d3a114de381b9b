"""python -m dnachunker_cli: the `dnachunker` command without the console script."""
import sys

from . import main

sys.exit(main())
