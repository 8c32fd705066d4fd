"""A training child stops when the process that started it is gone.

A program that starts `python -m model train` and wants it to end with itself names its own process id in
LYRICS_PARENT_PID. Killed outright (SIGKILL, the OOM killer), that program gets no chance to stop its child.
An orphan dies at its next line of progress (the pipe it writes to has no reader), but between two lines (the
final evaluation, the song-quality report: minutes) it works on, holding the cores, and writes its bundle. So
the child:

  * on Linux, asks the kernel to SIGKILL it when its parent dies (prctl PR_SET_PDEATHSIG): at once;
  * everywhere, and for torchrun's workers (whose parent is torchrun, not that program), watches the process
    in a thread, and exits as soon as it is gone (or a zombie, or no longer its parent).

Ending at once loses nothing: nobody is left to conclude the run, and every file it writes is written
atomically (the last checkpoint stays whole, for a later `--resume`). Without LYRICS_PARENT_PID (a person at
a terminal) nothing is watched.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .events import ExitCode

log = logging.getLogger(__name__)

PARENT_ENV = "LYRICS_PARENT_PID"
POLL_S = 0.5  # how often the watching thread looks
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def watched_pid(environ: dict[str, str] | os._Environ[str] = os.environ) -> int | None:
    """The process this one must not outlive, from LYRICS_PARENT_PID; None if unset or not a pid."""
    raw = environ.get(PARENT_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 1 else None


def stop_with_parent(pid: int | None = None) -> threading.Thread | None:
    """Stop this process when `pid` (default: LYRICS_PARENT_PID) is gone; returns the watching thread."""
    pid = watched_pid() if pid is None else pid
    if pid is None:
        return None
    direct = os.getppid() == pid
    if direct and sys.platform.startswith("linux"):
        _ask_kernel(signal.SIGKILL)
    thread = threading.Thread(target=_watch, args=(pid, direct), name="lyrics-parent-watch", daemon=True)
    thread.start()
    return thread


def _ask_kernel(sig: signal.Signals) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # no libc to speak of: the thread still watches
        log.debug("prctl unavailable: %s", exc)


def alive(pid: int) -> bool:
    """Whether `pid` runs: it exists and is not a zombie (a killed process its own parent has not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): existing is all we can tell
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _watch(pid: int, direct: bool) -> None:
    # A direct child is re-parented the moment its parent dies, zombie or not: the cheapest and surest test.
    while (os.getppid() == pid) if direct else alive(pid):
        time.sleep(POLL_S)
    with contextlib.suppress(OSError):  # stderr may be a pipe nobody reads any more
        print(f"the process that started this one ({pid}) is gone: stopping", file=sys.stderr, flush=True)
    os._exit(ExitCode.CANCELLED)
