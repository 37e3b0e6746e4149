"""``python -m eraserbook`` runs the book's command line (see :mod:`eraserbook.cli`)."""

import sys

from eraserbook.cli import main

sys.exit(main())
