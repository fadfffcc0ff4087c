"""Exceptions that the stages turn into a one-line message and an exit code."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (for one-line errors)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class InputError(ValueError):
    """A problem with the user's input (params, data or model files): exit code 2."""


class ConfigError(InputError):
    """params.yaml is missing, unreadable, or has invalid values; the message names each key."""


class TaskDataError(InputError):
    """A task file is missing, truncated, or does not match its manifest."""


class ArtifactError(InputError):
    """A model or search result file is missing, unreadable or inconsistent."""


class DivergenceError(RuntimeError):
    """A loss or a weight became NaN or infinite: exit code 1 in a training run."""


class OutputError(RuntimeError):
    """An output could not be written (disk full, file-size limit, permissions): exit code 1."""


class WorkerError(RuntimeError):
    """A job failed, was lost or handed back something refused in a worker process: exit code 1."""
