"""What every command line shares: Ctrl-C (SIGINT) and SIGTERM end it with one line and exit status 130.

The commands write outputs under temporary names and rename them only when complete, and clean their
temporaries up in ``finally`` blocks, so an interrupted run leaves nothing half-written under a final name.
Some converters catch every exception, KeyboardInterrupt included, while they trace a graph; the signal is
therefore also recorded, and long operations call ``check_interrupted`` between their phases.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable

INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a pipe closed early
_stopped = False


def _stop(_signum, _frame) -> None:
    global _stopped
    _stopped = True
    raise KeyboardInterrupt


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if a SIGINT/SIGTERM arrived, even one that library code swallowed."""
    if _stopped:
        raise KeyboardInterrupt


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """``main(argv)``, with Ctrl-C and SIGTERM ending the process in one line on stderr and exit status 130 (the
    process entry point: in that case it does not return)."""
    global _stopped
    _stopped = False
    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with SIGINT ignored
        handled.append(signal.SIGINT)
    previous = {s: signal.signal(s, _stop) for s in handled}
    try:
        status = main(argv)
        check_interrupted()
        return status
    except KeyboardInterrupt:
        print("interrupted: no partial output was left under a final name", file=sys.stderr)
        # Everything is cleaned up by now (the finally blocks ran). End here: a library's thread or exit hook
        # that sees the recorded signal during interpreter shutdown would otherwise turn 130 into death by
        # SIGINT (seen once under heavy load, exit status -2 after this line was printed).
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(INTERRUPTED)
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def parse_size(text: str) -> tuple[int, int]:
    """'720x1280' -> (720, 1280) as (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like HxW (e.g. 512x512), got {text!r}") from None
    if h < 8 or w < 8:
        raise ValueError(f"--size must be at least 8x8, got {text!r}")
    return h, w
