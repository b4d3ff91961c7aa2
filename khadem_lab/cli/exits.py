"""Exit codes of the ``khadem-lab`` command, and the error that carries one.

=====  =========================================================================================
code   meaning
=====  =========================================================================================
0      done: the command did what it was asked (a burst worker drained its queue, a worker
       stopped gracefully after SIGTERM or SIGINT)
1      failed: an unexpected error (``--verbose`` shows the traceback)
2      usage: bad arguments, a bad config file or key, an unknown or unsuitable driver
3      unavailable: the queue's storage cannot be reached or read (Redis down, a damaged file)
4      jobs module: the ``--jobs`` module cannot be imported, or registers no job class
5      not found: a job id that the queue does not hold
6      cut off: a worker stopped at once (a second signal, or the grace period ran out) while
       jobs were still running; they run again when their leases end
130    interrupted (Ctrl-C) outside ``work``
=====  =========================================================================================
"""

from __future__ import annotations

from ..errors import KhademLabError

OK = 0
FAILED = 1
USAGE = 2
UNAVAILABLE = 3
JOBS_MODULE = 4
NOT_FOUND = 5
CUT_OFF = 6
INTERRUPTED = 130


class CommandError(KhademLabError):
    """Raised when a command cannot do what it was asked; carries the exit code to end with."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code
