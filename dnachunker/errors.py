"""The project's one error for bad input (data files, sequences, records), and how commands
report errors that stop them."""


class InputError(ValueError):
    """Bad input data: the message names the file (and line) and the problem."""


def describe(e: BaseException) -> str:
    """`<file>: <problem>` for an error a command reports and exits 2 on: an OSError (a full disk,
    a read-only directory, a missing file) by its file name and reason, anything else by its text."""
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}" + (" (the disk is full: nothing complete was written)"
                                         if e.errno == 28 else "")
    return str(e)
