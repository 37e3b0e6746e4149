"""eraserbook: the book machinery — ``python -m eraserbook build --profile smoke``.

It runs the chapter notebooks (``notebooks/``) with papermill and builds the Jupyter Book. It
imports the library and the experiments; neither imports it, so a change here never marks a
chapter stale. One module per job:

* :mod:`~eraserbook.profiles`    ``notebooks/profiles.yml``: how big each chapter's run is;
* :mod:`~eraserbook.layout`      where a profile's pages live, the toc, staging a profile's tree;
* :mod:`~eraserbook.jobs`        each notebook's parameters, the stamp of its inputs, up to date?;
* :mod:`~eraserbook.execute`     the papermill run of one notebook, its failure report;
* :mod:`~eraserbook.schedule`    several notebooks in turn or at once;
* :mod:`~eraserbook.environment` the environment each chapter ran in, and its page;
* :mod:`~eraserbook.build`       the Jupyter Book build and the swap-in of the new HTML;
* :mod:`~eraserbook.cli`         the command line;
* :mod:`~eraserbook.palette`, :mod:`~eraserbook.report`, :mod:`~eraserbook.chapters`: what the
  chapters share (colours, tables and figures, the recommendation chapters' code).
"""
