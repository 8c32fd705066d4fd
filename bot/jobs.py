"""One training job at a time, as a child process that reports JSON lines on stdout. Knows nothing of Discord.

    manager = JobManager()
    job = await manager.start(train_argv(TrainArgs(corpus=..., out=...)))   # JobBusyError if one runs
    async for event in job.events():      # or job.add_listener(callback)
        print(job.status.state, job.status.epoch, job.status.eta())
    await job.cancel(grace=10)            # SIGTERM; SIGKILL if it is still there after `grace` seconds
    status = await job.wait()             # FINISHED, FAILED or CANCELLED, with the last lines of stderr
    await manager.close()                 # on shutdown: stop the running job and reap it

Why a child process: training is CPU-heavy and long, and a crash (out of memory, a torch abort) must not
take the bot down. It is started with asyncio.create_subprocess_exec (never a fork of the running bot),
in its own session (so signals reach it and any torchrun workers as a group, and a Ctrl-C in the bot's
terminal does not), at a lower CPU priority so that /lyrics stays responsive on shared cores.

The child is `python -m model train --progress jsonl` (see model/__main__.py): one JSON object per line,
`{"event": "start" | "step" | "epoch" | "checkpoint" | "resume" | "early_stop" | "done" | "error" |
"cancelled", ...}`; exit 0 done, 2 error, 3 cancelled. Anything else on stdout is ignored, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20  # how much of the child's stderr a failure report shows
LINE_LIMIT = 1 << 20  # longest stdout line read; a longer one (garbage) is skipped, not fatal
NICE_INCREMENT = 10  # training yields the CPU to the bot (generation, heartbeats) when both want it
EXIT_ERROR, EXIT_CANCELLED = 2, 3
POLL_SECONDS = 0.5  # how often to look whether the child has exited while its pipes are still open
PIPE_DRAIN_SECONDS = 5.0  # how long its pipes may stay open after it exited  # model/__main__.py's exit statuses


class JobError(Exception):
    """Base class of the job manager's errors."""


class JobBusyError(JobError):
    """A job is already running; only one at a time (they would share the same cores and files)."""

    def __init__(self, job: TrainingJob) -> None:
        super().__init__("a training job is already running")
        self.job = job


class JobState(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class JobStatus:
    """What the job has reported so far, updated from its JSON lines. Times are time.monotonic()."""

    state: JobState = JobState.IDLE
    pid: int | None = None
    started_at: float | None = None  # when the process started
    training_since: float | None = None  # the "start" event: corpus read, first batch next
    ended_at: float | None = None
    epoch: int = 0  # epochs finished
    epochs: int = 0  # epochs asked for (early stopping may end sooner)
    step: int = 0  # batches done in the epoch under way
    steps: int = 0  # batches per epoch
    first_epoch: int = 0  # epochs already done when this run began (a resumed run), for the ETA
    train_loss: float | None = None
    heldout_loss: float | None = None
    bpc: float | None = None  # held-out bits per character of the network, last epoch
    best_bpc: float | None = None
    trigram_bpc: float | None = None  # the character-trigram bar the model must beat
    history: list[dict[str, float]] = field(default_factory=list)  # one record per epoch event
    checkpoint: str | None = None  # the last checkpoint written
    resumed_from: int | None = None
    early_stopped: bool = False
    result: dict[str, Any] | None = None  # the "done" event: path, bpc, net_bpc, trigram_bpc, ...
    error: str | None = None  # why it failed, in a sentence
    returncode: int | None = None
    cancel_requested: bool = False
    stderr_tail: list[str] = field(default_factory=list)
    ignored_lines: int = 0  # stdout lines that were not JSON events

    @property
    def active(self) -> bool:
        return self.state is JobState.RUNNING

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the process started (until it ended)."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at or (now if now is not None else time.monotonic())) - self.started_at

    def fraction_done(self) -> float:
        """How much of the asked-for epochs this run has done, from 0 to 1 (steps count within an epoch)."""
        todo = self.epochs - self.first_epoch
        if todo <= 0:
            return 0.0
        within = self.step / self.steps if self.steps and self.step else 0.0
        done = self.epoch - self.first_epoch + (within if self.epoch < self.epochs else 0.0)
        return min(1.0, max(0.0, done / todo))

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until the last epoch ends at the pace so far; None before there is a pace to go by.

        An upper bound: early stopping may end the run sooner.
        """
        if self.state is not JobState.RUNNING or self.training_since is None:
            return None
        done = self.fraction_done()
        if done <= 0:
            return None
        spent = (now if now is not None else time.monotonic()) - self.training_since
        return spent * (1 - done) / done

    def apply(self, event: dict[str, Any], now: float) -> None:
        """Fold one progress event into the status. Unknown events and missing fields are ignored."""
        kind = event.get("event")
        if kind == "start":
            self.training_since = now
            self.epochs = _int(event, "epochs", self.epochs)
            self.steps = _int(event, "steps_per_epoch", self.steps)
            self.trigram_bpc = _float(event, "trigram_bpc", self.trigram_bpc)
        elif kind == "resume":
            self.resumed_from = self.epoch = self.first_epoch = _int(event, "epoch", 0)
        elif kind == "step":
            self.step = _int(event, "step", self.step)
            self.steps = _int(event, "steps", self.steps)
        elif kind == "epoch":
            self.epoch = _int(event, "epoch", self.epoch)
            self.epochs = _int(event, "epochs", self.epochs)
            self.step = 0
            self.train_loss = _float(event, "train_loss", self.train_loss)
            self.heldout_loss = _float(event, "heldout_loss", self.heldout_loss)
            self.bpc = _float(event, "bpc", self.bpc)
            self.best_bpc = _float(event, "best_bpc", self.best_bpc)
            if isinstance(event.get("epoch"), int):  # the loss curve is drawn from these: numbers only
                self.history.append({key: float(value) for key, value in event.items()
                                     if _float(event, key, None) is not None})
        elif kind == "checkpoint":
            self.checkpoint = str(event.get("path", "")) or self.checkpoint
        elif kind == "early_stop":
            self.early_stopped = True
        elif kind == "done":
            self.result = {key: value for key, value in event.items() if key != "event"}
        elif kind == "error":
            self.error = str(event.get("message", "")) or self.error


def _int(event: dict[str, Any], key: str, default: int) -> int:
    value = event.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(event: dict[str, Any], key: str, default: float | None) -> float | None:
    value = event.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def parse_event(line: bytes | str) -> dict[str, Any] | None:
    """The progress event on one stdout line, or None if the line is not one (garbage, a stray print)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if isinstance(value, dict) and isinstance(value.get("event"), str):
        return value
    return None


# ---------------------------------------------------------------------------------------------
# the command line


@dataclass(frozen=True)
class TrainArgs:
    """What one training run is asked to do; `train_argv` turns it into the child's command line."""

    corpus: Path
    out: Path
    epochs: int | None = None  # None: the model's default
    cell: str | None = None
    resume: bool = False
    device: str = "auto"
    threads: int = 1  # torch threads per process: leave the other core to the bot
    processes: int = 1  # >1: launch with torchrun, one process per share of the (global) batch
    extra: tuple[str, ...] = ()  # more `python -m model train` flags (e.g. "--hidden 256"), from settings
    python: str = sys.executable


def train_argv(args: TrainArgs) -> list[str]:
    """The child's argv: `python -m model train ...`, or under torchrun when `processes` > 1."""
    flags = ["--corpus", str(args.corpus), "--out", str(args.out), "--progress", "jsonl",
             "--device", args.device, "--threads", str(args.threads), *args.extra]
    # After `extra`, so the command's own options win over the configured defaults (argparse keeps the last).
    if args.epochs is not None:
        flags += ["--epochs", str(args.epochs)]
    if args.cell is not None:
        flags += ["--cell", args.cell]
    if args.resume:
        flags.append("--resume")
    if args.processes > 1:
        # --standalone: a local rendezvous, nothing to configure; --max_restarts=0: a crash is reported, not
        # retried from scratch (the bot's resume:true is the retry, from the last checkpoint).
        launcher = [args.python, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={args.processes}", "--max_restarts=0"]
        return [*launcher, "-m", "model", "train", *flags]
    return [args.python, "-m", "model", "train", *flags]


# ---------------------------------------------------------------------------------------------
# one job


Listener = Callable[[dict[str, Any]], None]


class TrainingJob:
    """A running (or finished) child process and what it reported. Create through JobManager.start."""

    def __init__(self, argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None, nice: int = NICE_INCREMENT,
                 stderr_lines: int = STDERR_TAIL_LINES) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.nice = nice
        self.status = JobStatus()
        self.process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=stderr_lines)
        self._listeners: list[Listener] = []
        self._done = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    # ---- starting

    async def start(self) -> None:
        """Spawn the child. Raises OSError if it cannot be started (then the job is FAILED)."""
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}  # each line as soon as it is printed
        self.status.started_at = time.monotonic()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, cwd=self.cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT, start_new_session=True)
        except OSError as exc:
            self._end(JobState.FAILED, error=f"could not start {self.argv[0]}: {exc}")
            raise
        self.status.pid = self.process.pid
        self.status.state = JobState.RUNNING
        self._lower_priority()
        log.info("training job started (pid %d): %s", self.process.pid, " ".join(self.argv))
        self._supervisor = asyncio.create_task(self._supervise(), name=f"training-job-{self.process.pid}")

    def _lower_priority(self) -> None:
        """Nice the child right after spawning (no preexec_fn: it is unsafe with threads, and the bot has
        some). Threads torch starts later inherit it; a moment at normal priority during imports is harmless."""
        if not self.nice or self.process is None:
            return
        try:
            current = os.getpriority(os.PRIO_PROCESS, self.process.pid)
            os.setpriority(os.PRIO_PROCESS, self.process.pid, min(19, current + self.nice))
        except (OSError, AttributeError) as exc:  # gone already, or a platform without setpriority
            log.warning("could not lower the training job's priority: %s", exc)

    # ---- following

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(event)` for every later progress event (after the status has absorbed it)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every later progress event, until the job ends (a final {"event": "exit"} marks the end)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.add_listener(queue.put_nowait)
        try:
            if self._done.is_set():
                return
            while True:
                event = await queue.get()
                yield event
                if event.get("event") == "exit":
                    return
        finally:
            self.remove_listener(queue.put_nowait)

    def _emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the reader (and so hang the child on a full pipe)
                log.exception("a training job listener failed on %s", event.get("event"))

    async def _supervise(self) -> None:
        """Read both pipes to the end, reap the child, settle the final state."""
        assert self.process is not None and self.process.stdout and self.process.stderr
        readers = asyncio.gather(self._read_stdout(self.process.stdout), self._read_stderr(self.process.stderr))
        try:
            returncode = await self._until_exit(readers)
        except asyncio.CancelledError:  # the event loop is going away; leave nothing running behind us
            self._signal_group(signal.SIGKILL)
            readers.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a bug here must still settle the job, never hang wait()
            log.exception("following the training job failed")
            self._signal_group(signal.SIGKILL)
            readers.cancel()
            self._end(JobState.FAILED, error=f"the bot could not follow the job ({type(exc).__name__}: {exc})",
                      returncode=self.process.returncode)
            return
        self._settle(returncode)

    async def _until_exit(self, readers: asyncio.Future[Any]) -> int:
        """Wait until the child has exited and its pipes are read to the end; return its exit status.

        Usually the pipes close when the child exits. But processes it started (torchrun's workers) hold
        them too: if the child is gone and they are not, kill the group rather than wait on them forever.
        """
        assert self.process is not None
        while not readers.done() and self.process.returncode is None:
            await asyncio.wait({readers}, timeout=POLL_SECONDS)
        if not readers.done():
            await asyncio.wait({readers}, timeout=PIPE_DRAIN_SECONDS)
        if not readers.done():
            log.warning("the training process exited but its pipes are still open; killing its process group")
            self._signal_group(signal.SIGKILL, even_if_exited=True)
            await asyncio.wait({readers}, timeout=PIPE_DRAIN_SECONDS)
        if not readers.done():
            readers.cancel()
            assert self.process.returncode is not None
            return self.process.returncode  # wait() would block on the open pipes (Python 3.11)
        readers.result()  # raises a reader's unexpected exception
        return await self.process.wait()

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT: asyncio has dropped it; go on with the next
                self.status.ignored_lines += 1
                continue
            if not line:
                return
            event = parse_event(line)
            if event is None:
                self.status.ignored_lines += 1
                if line.strip():
                    log.debug("training job: ignored stdout line %r", line[:200])
                continue
            self.status.apply(event, time.monotonic())
            if event["event"] != "step":
                log.info("training job: %s", _summary(event))
            self._emit(event)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                self._stderr.append("(a very long line)")
                continue
            if not line:
                return
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                self._stderr.append(text)
                self.status.stderr_tail = list(self._stderr)

    def _settle(self, returncode: int) -> None:
        """The final state from what the child said and how it exited."""
        status = self.status
        if status.result is not None and returncode == 0:
            self._end(JobState.FINISHED, returncode=returncode)
        elif status.cancel_requested or returncode == EXIT_CANCELLED:
            self._end(JobState.CANCELLED, returncode=returncode)
        else:
            self._end(JobState.FAILED, returncode=returncode, error=status.error or describe_exit(returncode))

    def _end(self, state: JobState, *, error: str | None = None, returncode: int | None = None) -> None:
        status = self.status
        status.state, status.ended_at = state, time.monotonic()
        status.returncode = returncode if returncode is not None else status.returncode
        if error and not status.error:
            status.error = error
        status.stderr_tail = list(self._stderr)
        log.log(logging.WARNING if state is JobState.FAILED else logging.INFO,
                "training job %s (exit %s)%s", state, status.returncode, f": {status.error}" if status.error else "")
        self._done.set()
        self._emit({"event": "exit", "state": str(state), "returncode": status.returncode})

    # ---- stopping

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> JobStatus:
        """Wait until the job has ended and its process is reaped; return its final status."""
        await self._done.wait()
        return self.status

    async def cancel(self, grace: float) -> JobStatus:
        """SIGTERM (the model stops at the next batch, keeping its last checkpoint), then SIGKILL after `grace`."""
        if self.done:
            return self.status
        self.status.cancel_requested = True
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._done.wait()), grace)
        except TimeoutError:
            log.warning("training job did not stop within %.0fs of SIGTERM; killing it", grace)
            self._signal_group(signal.SIGKILL)
            await self._done.wait()
        return self.status

    def _signal_group(self, sig: signal.Signals, *, even_if_exited: bool = False) -> None:
        """Signal the child's whole process group: under torchrun the workers are in it too."""
        if self.process is None or (self.process.returncode is not None and not even_if_exited):
            return
        try:
            os.killpg(self.process.pid, sig)  # start_new_session made the child a group leader
        except ProcessLookupError:
            pass
        except PermissionError:  # the child left its group (it should not); signal what we can
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)


def describe_exit(returncode: int) -> str:
    """A sentence for an exit status without an error event: a crash, a signal, an out-of-memory kill."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -returncode == signal.SIGKILL else ""
        return f"the training process was killed by {name}{hint}"
    if returncode == 0:
        return "the training process exited without writing a model"
    return f"the training process exited with status {returncode}"


def _summary(event: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in event.items())[:300]


# ---------------------------------------------------------------------------------------------
# the manager


class JobManager:
    """At most one training job at a time; stops it on close()."""

    def __init__(self, *, cwd: str | os.PathLike[str] | None = None, nice: int = NICE_INCREMENT) -> None:
        self.cwd = cwd
        self.nice = nice
        self.current: TrainingJob | None = None  # the running job, or the last one to have run
        self._closed = False

    @property
    def running(self) -> TrainingJob | None:
        job = self.current
        return job if job is not None and not job.done else None

    async def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> TrainingJob:
        """Start a job. Raises JobBusyError if one is running, JobError after close(), OSError if it
        cannot be spawned."""
        if self._closed:
            raise JobError("the bot is shutting down")
        if (running := self.running) is not None:
            raise JobBusyError(running)
        job = TrainingJob(argv, cwd=self.cwd, env=env, nice=self.nice)
        self.current = job  # before awaiting: a second start arriving meanwhile sees this one
        await job.start()
        return job

    async def close(self, grace: float = 3.0) -> None:
        """Stop the running job (SIGTERM, `grace` seconds, SIGKILL) and reap it. Idempotent."""
        self._closed = True
        job = self.running
        if job is None:
            return
        log.info("stopping the training job (pid %s) for shutdown", job.status.pid)
        await job.cancel(grace)
