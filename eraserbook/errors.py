"""The one error of the book machinery: a set-up problem the user fixes (profiles, toc, parameters)."""


class RunnerError(Exception):
    """A problem with the book's set-up (profiles, toc, parameters), reported without a traceback."""
