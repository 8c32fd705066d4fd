"""One training job at a time, as a child process that reports JSON lines on stdout. Knows nothing of Discord.

    manager = JobManager()
    job = await manager.start(train_argv({"corpus": ..., "out": ...}))   # JobBusyError if one runs
    job.add_listener(callback)            # callback(event) for every typed event (model.events), then JobEnded
    print(job.status.state, job.status.epoch, job.status.eta())
    await job.cancel(grace=10)            # SIGTERM; SIGKILL if it is still there after `grace` seconds
    status = await job.wait()             # FINISHED, FAILED or CANCELLED, with the last lines of stderr
    await manager.close()                 # on shutdown: stop the running job and reap it

Why a child process: training is CPU-heavy and long, and a crash (out of memory, a torch abort) must not
take the bot down. It is started with asyncio.create_subprocess_exec (never a fork of the running bot),
in its own session (so signals reach it and any torchrun workers as a group, and a Ctrl-C in the bot's
terminal does not), at a lower CPU priority so that /lyrics stays responsive on shared cores.

The child is `python -m model train --progress jsonl`, and model/events.py is the contract with it: one
JSON object per line, parsed back into the event classes it was written from, and the exit codes
(model.events.ExitCode). Its options are TrainConfig fields, spelled as flags by model.config.to_argv.
A stdout line that is not an event is ignored, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from model import config
from model.events import (
    CancelledEvent,
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    ExitCode,
    ResumeEvent,
    StartEvent,
    StepEvent,
    TimeLimitEvent,
    parse_event,
)

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20  # how much of the child's stderr a failure report shows
LINE_LIMIT = 1 << 20  # longest stdout line read; a longer one (garbage) is skipped, not fatal
NICE_INCREMENT = 10  # training yields the CPU to the bot (generation, heartbeats) when both want it
POLL_SECONDS = 0.5  # how often to look whether the child has exited while its pipes are still open
PIPE_DRAIN_SECONDS = 5.0  # how long its pipes may stay open after it exited


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
    history: list[dict[str, float]] = field(default_factory=list)  # the numbers of each epoch event
    checkpoint: str | None = None  # the last checkpoint written
    resumed_from: int | None = None
    early_stopped: bool = False
    time_limited: bool = False  # --max-minutes ran out
    result: DoneEvent | None = None  # the bundle is written
    error: str | None = None  # why it failed, in a sentence
    returncode: int | None = None
    cancel_requested: bool = False
    stderr_tail: list[str] = field(default_factory=list)
    ignored_lines: int = 0  # stdout lines that were not JSON events

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

    def apply(self, event: Event, now: float) -> None:
        """Fold one progress event into the status."""
        match event:
            case StartEvent():
                self.training_since = now
                self.epochs, self.steps = event.epochs, event.steps_per_epoch
                self.trigram_bpc = _finite(event.trigram_bpc, self.trigram_bpc)
            case ResumeEvent():
                self.resumed_from = self.epoch = self.first_epoch = event.epoch
            case StepEvent():
                self.step, self.steps = event.step, event.steps
            case EpochEvent():
                self.epoch, self.epochs, self.step = event.epoch, event.epochs, 0
                self.train_loss = _finite(event.train_loss, self.train_loss)
                self.heldout_loss = _finite(event.heldout_loss, self.heldout_loss)
                self.bpc = _finite(event.bpc, self.bpc)
                self.best_bpc = _finite(event.best_bpc, self.best_bpc)
                # The loss curve is drawn from these: finite numbers only.
                self.history.append(
                    {
                        key: float(value)
                        for key, value in asdict(event).items()
                        if not isinstance(value, bool) and _finite(value, None) is not None
                    }
                )
            case CheckpointEvent():
                self.checkpoint = event.path or self.checkpoint
            case EarlyStopEvent():
                self.early_stopped = True
            case TimeLimitEvent():
                self.time_limited = True
            case DoneEvent():
                self.result = event
            case ErrorEvent():
                self.error = event.message or self.error
            case CancelledEvent():
                pass  # the exit status says so too; _settle decides


def _finite(value: Any, default: float | None) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


@dataclass(frozen=True)
class JobEnded:
    """The last thing a job's listeners hear: the process is gone and its final state settled."""

    state: JobState
    returncode: int | None


# ---------------------------------------------------------------------------------------------
# the command line


def train_argv(
    settings: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    *,
    extra: Sequence[str] = (),
    processes: int = 1,
    python: str = sys.executable,
) -> list[str]:
    """The child's argv: `python -m model train ...`, or under torchrun when `processes` > 1.

    `settings` and `options` are TrainConfig fields (model.config.to_argv spells them). The deployment's
    `settings` and `extra` flags (LYRICS_TRAIN_ARGS) come first and the command's `options` last, so what
    an admin chose for this run wins over the configured defaults (argparse keeps the last).
    """
    flags = [*config.to_argv(settings), "--progress", "jsonl", *extra, *config.to_argv(options or {})]
    if processes > 1:
        # --standalone: a local rendezvous, nothing to configure; --max_restarts=0: a crash is reported, not
        # retried from scratch (the bot's resume:true is the retry, from the last checkpoint).
        launcher = [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "--max_restarts=0",
        ]
        return [*launcher, "-m", "model", "train", *flags]
    return [python, "-m", "model", "train", *flags]


# ---------------------------------------------------------------------------------------------
# one job


Listener = Callable[[Event | JobEnded], None]


class TrainingJob:
    """A running (or finished) child process and what it reported. Create through JobManager.start."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        unset: Sequence[str] = (),
        nice: int = NICE_INCREMENT,
        stderr_lines: int = STDERR_TAIL_LINES,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.unset = tuple(unset)
        self.nice = nice
        self.status = JobStatus()
        self.process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=stderr_lines)
        self._listeners: list[Listener] = []
        self._done = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    # ---- starting

    async def start(self) -> None:
        """Spawn the child. Raises OSError if it cannot be started (then the job is FAILED).

        It inherits this process' environment with `env` added and the variables named in `unset` removed
        (secrets it has no use for: a child that crashes or is inspected must not leak them).
        """
        inherited = {key: value for key, value in os.environ.items() if key not in self.unset}
        env = {**inherited, **(self.env or {}), "PYTHONUNBUFFERED": "1"}  # each line as soon as it is printed
        self.status.started_at = time.monotonic()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
                start_new_session=True,
            )
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

    def _emit(self, event: Event | JobEnded) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the reader (and so hang the child on a full pipe)
                log.exception("a training job listener failed on %s", type(event).__name__)

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
        except Exception as exc:  # a bug here must still settle the job, never hang wait()
            log.exception("following the training job failed")
            self._signal_group(signal.SIGKILL)
            readers.cancel()
            self._end(
                JobState.FAILED,
                error=f"the bot could not follow the job ({type(exc).__name__}: {exc})",
                returncode=self.process.returncode,
            )
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
            if not isinstance(event, StepEvent):
                log.info("training job: %s %s", event.kind, _summary(event))
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
        elif status.cancel_requested or returncode == ExitCode.CANCELLED:
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
        log.log(
            logging.WARNING if state is JobState.FAILED else logging.INFO,
            "training job %s (exit %s)%s",
            state,
            status.returncode,
            f": {status.error}" if status.error else "",
        )
        self._done.set()
        self._emit(JobEnded(state, status.returncode))

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


def _summary(event: Event) -> str:
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in asdict(event).items()
    )[:300]


# ---------------------------------------------------------------------------------------------
# the manager


class JobManager:
    """At most one training job at a time; stops it on close()."""

    def __init__(self, *, nice: int = NICE_INCREMENT) -> None:
        self.nice = nice
        self.current: TrainingJob | None = None  # the running job, or the last one to have run
        self._closed = False

    @property
    def running(self) -> TrainingJob | None:
        job = self.current
        return job if job is not None and not job.done else None

    async def start(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, unset: Sequence[str] = ()
    ) -> TrainingJob:
        """Start a job (see TrainingJob.start for `env` and `unset`). Raises JobBusyError if one is running,
        JobError after close(), OSError if it cannot be spawned."""
        if self._closed:
            raise JobError("the bot is shutting down")
        if (running := self.running) is not None:
            raise JobBusyError(running)
        job = TrainingJob(argv, env=env, unset=unset, nice=self.nice)
        self.current = job  # before awaiting: a second start arriving meanwhile sees this one
        await job.start()
        return job

    def kill(self) -> None:
        """SIGKILL the running job's process group now, without waiting: for a process about to exit at once."""
        if (job := self.running) is not None:
            log.warning("killing the training job (pid %s): the bot is exiting at once", job.status.pid)
            job._signal_group(signal.SIGKILL)

    async def close(self, grace: float = 3.0) -> None:
        """Stop the running job (SIGTERM, `grace` seconds, SIGKILL) and reap it. Idempotent."""
        self._closed = True
        job = self.running
        if job is None:
            return
        log.info("stopping the training job (pid %s) for shutdown", job.status.pid)
        await job.cancel(grace)
