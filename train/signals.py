"""Stop signals for training, caught as early as possible (torch and DeepSpeed take seconds to
load, during which a signal's default action would kill the process without a checkpoint)."""
from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
_early: "StopFlag | None" = None


class StopFlag:
    """Set by a stop signal; acted on at the next step boundary, once all ranks agree."""

    def __init__(self):
        self.signum = None
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "a stop signal on another rank"


def early_stop_flag() -> StopFlag:
    """The process's one StopFlag, installed on first call (entry points call it before torch)."""
    global _early
    if _early is None:
        _early = StopFlag()
    return _early
