"""User-facing errors: one line, raised before any work is done."""


class CaulkConfigError(ValueError):
    """Bad user input (config, file, name). Reported as one line; no record is written."""
