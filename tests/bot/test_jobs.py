"""bot.jobs on its own: small stand-in child scripts (not the model) exercise the reader, the exits and the signals."""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot import jobs
from bot.jobs import JobBusyError, JobEnded, JobManager, JobState, JobStatus, train_argv
from model.events import (
    EVENT_TYPES,
    CancelledEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    ExitCode,
    ResumeEvent,
    StartEvent,
    StepEvent,
    TimeLimitEvent,
    parse_event,
    to_json,
)
from tests.bot.helpers import gone, job_events
from tests.helpers import REPO


def child(script: str) -> list[str]:
    """argv for a Python child running `script` (dedented)."""
    return [sys.executable, "-c", textwrap.dedent(script)]


def start_event(epochs: int = 2, steps_per_epoch: int = 3, trigram_bpc: float = 7.5) -> StartEvent:
    return StartEvent(
        vocab=100,
        train_tokens=1000,
        heldout_tokens=100,
        heldout_chars=150,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        device="cpu",
        trigram_bpc=trigram_bpc,
        world_size=1,
    )


def epoch_event(epoch: int, epochs: int, bpc: float = 8.25) -> EpochEvent:
    return EpochEvent(
        epoch=epoch,
        train_loss=6.0,
        heldout_loss=5.5,
        bpc=bpc,
        lr=0.002,
        seconds=1.5,
        epochs=epochs,
        best_bpc=bpc,
        improved=True,
        elapsed=3.0,
    )


START = to_json(start_event())
EPOCH = to_json(epoch_event(1, 2))
DONE = to_json(
    DoneEvent(
        path="out.pt",
        bpc=6.0,
        static_bpc=6.5,
        net_bpc=8.25,
        trigram_bpc=7.5,
        heldout_chars=150,
        unk_chars=0,
        epochs=1,
        seconds=2.0,
    )
)


async def test_garbage_on_stdout_is_skipped_not_fatal() -> None:
    script = f"""
        import sys
        out = sys.stdout.buffer
        out.write(b"garbage\\n")
        out.write(b"[1, 2, 3]\\n")                     # JSON, but not an event
        out.write(b'{{"no": "event"}}\\n')
        out.write(b"\\xff\\xfe not utf-8\\n")
        out.write(b'{{"event": "epoch", "epoch": "one", "bpc": NaN}}\\n')  # an event with unusable fields
        out.write(b"x" * (3 << 20) + b"\\n")            # one line over the reader's limit
        out.write(b"{{truncated\\n")
        for line in [{START!r}, {EPOCH!r}, {DONE!r}]:
            out.write(line.encode() + b"\\n")
        out.flush()
    """
    manager = JobManager()
    job = await manager.start(child(script))
    status = await asyncio.wait_for(job.wait(), 30)
    assert status.state is JobState.FINISHED, status
    assert status.ignored_lines >= 6
    assert (status.epoch, status.epochs, status.bpc, status.trigram_bpc) == (1, 2, 8.25, 7.5)
    assert status.result is not None and status.result.bpc == 6.0
    assert status.history == [
        {
            "epoch": 1,
            "train_loss": 6.0,
            "heldout_loss": 5.5,
            "bpc": 8.25,
            "lr": 0.002,
            "seconds": 1.5,
            "epochs": 2,
            "best_bpc": 8.25,
            "elapsed": 3.0,
        }
    ]  # the garbled one left none
    await manager.close()


async def test_a_killed_child_fails_with_its_stderr_tail() -> None:
    script = f"""
        import os, signal, sys
        print({START!r}, flush=True)
        for i in range(30):
            print(f"stderr line {{i}}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    job = await JobManager().start(child(script))
    status = await asyncio.wait_for(job.wait(), 30)
    assert status.state is JobState.FAILED
    assert status.returncode == -signal.SIGKILL
    assert "SIGKILL" in status.error and "out of memory" in status.error
    assert status.stderr_tail == [f"stderr line {i}" for i in range(10, 30)]  # the last 20


async def test_an_error_event_is_the_failure_reason() -> None:
    script = f"""
        import sys
        print({to_json(ErrorEvent(message="the corpus is empty"))!r}, flush=True)
        print("error: the corpus is empty", file=sys.stderr)
        sys.exit(2)
    """
    status = await (await JobManager().start(child(script))).wait()
    assert (status.state, status.returncode, status.error) == (JobState.FAILED, 2, "the corpus is empty")
    assert status.stderr_tail == ["error: the corpus is empty"]


async def test_an_unstartable_program_fails_at_start(tmp_path: Path) -> None:
    manager = JobManager()
    with pytest.raises(OSError):
        await manager.start([str(tmp_path / "no-such-program")])
    assert manager.current is not None and manager.current.status.state is JobState.FAILED
    assert manager.running is None  # and so the next start is not refused


# A child that behaves like `python -m model train` on SIGTERM: stop at the next "batch", exit 3.
COOPERATIVE = f"""
    import signal, sys, time
    from model.events import CancelledEvent, ExitCode, StepEvent, to_json
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print({START!r}, flush=True)
    step = 0
    while not stop:
        step += 1
        print(to_json(StepEvent(epoch=1, step=step, steps=10**6, loss=5.0)), flush=True)
        time.sleep(0.02)
    print(to_json(CancelledEvent(message="cancelled in epoch 1")), flush=True)
    sys.exit(ExitCode.CANCELLED)
"""
CHILD_ENV = {"PYTHONPATH": str(REPO)}  # the stand-in speaks through model.events, as the real child does


async def test_cancel_stops_a_cooperative_child_with_sigterm() -> None:
    job = await JobManager().start(child(COOPERATIVE), env=CHILD_ENV)
    events = job_events(job)
    seen = [await anext(events) for _ in range(3)]
    assert [type(e) for e in seen] == [StartEvent, StepEvent, StepEvent]
    assert job.status.state is JobState.RUNNING and job.status.step >= 1
    status = await job.cancel(grace=10)
    assert (status.state, status.returncode) == (JobState.CANCELLED, ExitCode.CANCELLED)
    rest = [type(e) async for e in events]
    assert rest[-2:] == [CancelledEvent, JobEnded]


async def test_cancel_kills_a_child_that_ignores_sigterm() -> None:
    script = f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print({START!r}, flush=True)
        time.sleep(60)
    """
    job = await JobManager().start(child(script))
    await anext(job_events(job))  # started, and so ignoring SIGTERM
    begun = time.monotonic()
    status = await job.cancel(grace=0.5)
    assert time.monotonic() - begun < 5
    assert (status.state, status.returncode) == (JobState.CANCELLED, -signal.SIGKILL)
    assert gone(status.pid)


async def test_one_job_at_a_time_and_close_reaps_it() -> None:
    manager = JobManager()
    job = await manager.start(child(COOPERATIVE), env=CHILD_ENV)
    with pytest.raises(JobBusyError) as refused:
        await manager.start(child("print('second')"))
    assert refused.value.job is job
    await manager.close(grace=5)
    assert job.done and job.status.state is JobState.CANCELLED and gone(job.status.pid)
    with pytest.raises(jobs.JobError):
        await manager.start(child("pass"))


async def test_the_child_runs_at_a_lower_priority() -> None:
    job = await JobManager(nice=7).start(child("import time; time.sleep(30)"))
    try:
        assert os.getpriority(os.PRIO_PROCESS, job.status.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
        assert os.getpgid(job.status.pid) == job.status.pid  # its own process group, for killpg
    finally:
        await job.cancel(grace=5)


async def test_a_grandchild_holding_the_pipes_does_not_hang_the_job(monkeypatch) -> None:
    monkeypatch.setattr(jobs, "PIPE_DRAIN_SECONDS", 0.3)  # a tunable, to keep the test short
    script = """
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # inherits stdout and stderr
    """
    job = await JobManager().start(child(script))
    status = await asyncio.wait_for(job.wait(), 15)
    assert status.state is JobState.FAILED and "without writing a model" in status.error


# ---------------------------------------------------------------------------------------------
# the pure parts


def test_parse_event() -> None:
    assert parse_event(b'{"event": "time_limit", "epoch": 3}') == TimeLimitEvent(epoch=3)
    assert parse_event(DONE) == DoneEvent(
        path="out.pt",
        bpc=6.0,
        static_bpc=6.5,
        net_bpc=8.25,
        trigram_bpc=7.5,
        heldout_chars=150,
        unk_chars=0,
        epochs=1,
        seconds=2.0,
    )
    for line in (b"", b"garbage", b"[]", b'{"event": 3}', b"\xff", b"[" * 100_000, b'{"event": "done", "bpc": 1.5}'):
        assert parse_event(line) is None


def test_status_eta_and_fraction() -> None:
    status = JobStatus(state=JobState.RUNNING)
    status.apply(start_event(epochs=4, steps_per_epoch=10), now=100.0)
    assert status.eta(now=100.0) is None  # no pace yet
    status.apply(epoch_event(1, 4, bpc=7.0), now=110.0)
    status.apply(StepEvent(epoch=2, step=5, steps=10, loss=5.0), now=115.0)
    assert status.fraction_done() == pytest.approx(1.5 / 4)
    assert status.eta(now=115.0) == pytest.approx(15 * 2.5 / 1.5)


def test_resumed_status_counts_only_this_runs_epochs() -> None:
    status = JobStatus(state=JobState.RUNNING)
    status.apply(start_event(epochs=10, steps_per_epoch=4), now=0.0)
    status.apply(ResumeEvent(epoch=8, path="x.ckpt"), now=0.0)
    status.apply(epoch_event(9, 10), now=30.0)
    assert status.fraction_done() == pytest.approx(0.5)
    assert status.eta(now=30.0) == pytest.approx(30.0)


def test_train_argv_single_process_and_torchrun() -> None:
    settings = {"corpus": Path("data/c.txt"), "out": Path("models/x.candidate.pt"), "device": "cpu", "threads": 1}
    argv = train_argv(
        settings, {"epochs": 5, "cell": "gru", "resume": True}, extra=("--hidden", "32", "--epochs", "99"), python="py"
    )
    assert argv[:4] == ["py", "-m", "model", "train"]
    assert argv[argv.index("--progress") + 1] == "jsonl" and argv[argv.index("--threads") + 1] == "1"
    assert argv[-5:] == ["--epochs", "5", "--cell", "gru", "--resume"]  # after `extra`, so they win
    torchrun = train_argv({"corpus": Path("c.txt"), "out": Path("o.pt")}, processes=4, python="py")
    assert torchrun[:6] == [
        "py",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=4",
        "--max_restarts=0",
    ]
    assert torchrun[6:10] == ["-m", "model", "train", "--corpus"]


# ---------------------------------------------------------------------------------------------
# the contract with model/train.py


def test_the_reader_knows_every_event_train_py_emits() -> None:
    """Every event class model/train.py constructs is one the reader parses: nothing it says is dropped."""
    tree = ast.parse((REPO / "model" / "train.py").read_text(encoding="utf-8"))
    emitted = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.endswith("Event")
    }
    known = {cls.__name__ for cls in EVENT_TYPES.values()}
    assert "TimeLimitEvent" in emitted and emitted <= known, emitted - known


async def test_the_real_training_child_reports_through_the_contract(tmp_path: Path) -> None:
    """`python -m model train` as the bot runs it: every stdout line parses into a typed event."""
    from tests.helpers import SAMPLE_CORPUS

    settings = {"corpus": SAMPLE_CORPUS, "out": tmp_path / "m.pt", "device": "cpu", "threads": 1}
    options = {
        "epochs": 3,
        "max_minutes": 1e-9,
        "hidden": 16,
        "embed": 8,
        "batch_size": 8,
        "seq_len": 16,
        "min_count": 2,
        "clip": 0.3,
    }
    job = await JobManager().start(train_argv(settings, options), env=CHILD_ENV)
    kinds = [type(event) async for event in job_events(job)]
    status = await job.wait()
    assert status.state is JobState.FINISHED, status.stderr_tail
    assert status.ignored_lines == 0  # nothing on stdout that is not an event
    assert status.time_limited and TimeLimitEvent in kinds and kinds[-2:] == [DoneEvent, JobEnded]
    assert status.result is not None and Path(status.result.path) == tmp_path / "m.pt"


ORPHANING_PARENT = """
import asyncio, sys
from bot.exts.training.cog import Training, child_secrets
from bot.jobs import JobManager, train_argv
from model.events import JudgingEvent

async def main():
    settings = {"corpus": sys.argv[1], "out": sys.argv[2], "device": "cpu", "threads": 1}
    options = {"epochs": 1, "hidden": 16, "embed": 8, "batch_size": 8, "seq_len": 16, "min_count": 2,
               "judge_songs": 300}
    job = await JobManager().start(train_argv(settings, options), env=Training._child_env(), unset=child_secrets())
    judging = asyncio.Event()
    job.add_listener(lambda event: isinstance(event, JudgingEvent) and judging.set())
    print(job.status.pid, flush=True)
    await judging.wait()
    print("judging", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_child_whose_bot_is_killed_outright_stops(tmp_path: Path) -> None:
    # The bot gets no chance to stop its child when SIGKILLed (or OOM-killed): the child must notice by itself.
    # An orphan dies at its next line of progress (a pipe without a reader), but writing 300 songs for the
    # quality report it prints nothing for half a minute, then writes its bundle again: it must stop at once,
    # and write nothing more. The parent here starts it as the Training cog does.
    from model.lifeline import alive
    from tests.helpers import SAMPLE_CORPUS

    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ORPHANING_PARENT,
        str(SAMPLE_CORPUS),
        str(tmp_path / "m.pt"),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    pid = None
    try:
        pid = int(await asyncio.wait_for(parent.stdout.readline(), 60))
        assert await asyncio.wait_for(parent.stdout.readline(), 90) == b"judging\n"
        parent.kill()
        await parent.wait()
        bundle = tmp_path / "m.pt"  # written once before the report, and again with it
        before = bundle.stat().st_mtime_ns if bundle.exists() else None
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not alive(pid), "the orphaned training child is still running"
        await asyncio.sleep(0.5)
        assert (bundle.stat().st_mtime_ns if bundle.exists() else None) == before  # nothing written after
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if pid is not None and alive(pid):
            os.killpg(pid, signal.SIGKILL)
