"""``python -m eraserlib``: the command line (see :mod:`eraserlib.cli`)."""

import sys

from eraserlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
