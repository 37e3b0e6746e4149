"""eraserbook: the book machinery — profiles, jobs and stamps, execution, the build, figures.

    python -m eraserbook build --profile smoke

It runs the chapter notebooks (``notebooks/``) with papermill and builds the Jupyter Book. It
imports the library and the experiments; neither imports it, so a change here never marks a
chapter stale.
"""
