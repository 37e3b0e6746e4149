"""``python -m eraserbook`` runs the book's command line (see :mod:`eraserbook.runner`)."""

import sys

from eraserbook.runner import main

sys.exit(main())
