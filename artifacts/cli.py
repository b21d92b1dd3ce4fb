"""What every command line shares: Ctrl-C (SIGINT) and SIGTERM end it with one line and exit status 130.

The commands write outputs under temporary names and rename them only when complete, and clean their
temporaries up in ``finally`` blocks, so an interrupted run leaves nothing half-written under a final name.
"""
from __future__ import annotations

import signal
import sys
from typing import Callable

INTERRUPTED = 130


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """``main(argv)``, with SIGTERM handled like Ctrl-C: one line on stderr, exit status 130, no traceback."""
    def terminate(_signum, _frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted: no partial output was left under a final name", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
