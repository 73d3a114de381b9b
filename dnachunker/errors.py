"""The project's one error for bad input (data files, sequences, records)."""


class InputError(ValueError):
    """Bad input data: the message names the file (and line) and the problem."""
