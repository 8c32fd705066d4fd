"""bot.jobs on its own: small stand-in child scripts (not the model) exercise the reader, the exits and the signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot import jobs
from bot.jobs import JobBusyError, JobManager, JobState, JobStatus, TrainArgs, parse_event, train_argv


def child(script: str) -> list[str]:
    """argv for a Python child running `script` (dedented)."""
    return [sys.executable, "-c", textwrap.dedent(script)]


def event_line(kind: str, **fields) -> str:
    return json.dumps({"event": kind, **fields})


START = event_line("start", epochs=2, steps_per_epoch=3, trigram_bpc=7.5)
EPOCH = event_line("epoch", epoch=1, epochs=2, train_loss=6.0, heldout_loss=5.5, bpc=8.25, best_bpc=8.25)
DONE = event_line("done", path="out.pt", bpc=6.0, net_bpc=8.25, trigram_bpc=7.5)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


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
    assert status.result is not None and status.result["bpc"] == 6.0
    assert status.history == [{"epoch": 1, "epochs": 2, "train_loss": 6.0, "heldout_loss": 5.5, "bpc": 8.25,
                               "best_bpc": 8.25}]  # the garbled epoch event left no record
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
        print({event_line("error", message="the corpus is empty")!r}, flush=True)
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
    import json, signal, sys, time
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print({START!r}, flush=True)
    step = 0
    while not stop:
        step += 1
        print(json.dumps({{"event": "step", "epoch": 1, "step": step, "steps": 10**6, "loss": 5.0}}), flush=True)
        time.sleep(0.02)
    print(json.dumps({{"event": "cancelled", "message": "cancelled in epoch 1"}}), flush=True)
    sys.exit(3)
"""


async def test_cancel_stops_a_cooperative_child_with_sigterm() -> None:
    job = await JobManager().start(child(COOPERATIVE))
    events = job.events()
    seen = [await anext(events) for _ in range(3)]
    assert [e["event"] for e in seen] == ["start", "step", "step"]
    assert job.status.state is JobState.RUNNING and job.status.step >= 1
    status = await job.cancel(grace=10)
    assert (status.state, status.returncode) == (JobState.CANCELLED, 3)
    rest = [e["event"] async for e in events]
    assert rest[-2:] == ["cancelled", "exit"]


async def test_cancel_kills_a_child_that_ignores_sigterm() -> None:
    script = f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print({START!r}, flush=True)
        time.sleep(60)
    """
    job = await JobManager().start(child(script))
    await anext(job.events())  # started, and so ignoring SIGTERM
    begun = time.monotonic()
    status = await job.cancel(grace=0.5)
    assert time.monotonic() - begun < 5
    assert (status.state, status.returncode) == (JobState.CANCELLED, -signal.SIGKILL)
    assert gone(status.pid)


async def test_one_job_at_a_time_and_close_reaps_it() -> None:
    manager = JobManager()
    job = await manager.start(child(COOPERATIVE))
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
    assert parse_event(b'{"event": "done", "bpc": 1.5}') == {"event": "done", "bpc": 1.5}
    for line in (b"", b"garbage", b"[]", b'{"event": 3}', b"\xff", b"[" * 100_000):
        assert parse_event(line) is None


def test_status_eta_and_fraction() -> None:
    status = JobStatus(state=JobState.RUNNING)
    status.apply({"event": "start", "epochs": 4, "steps_per_epoch": 10}, now=100.0)
    assert status.eta(now=100.0) is None  # no pace yet
    status.apply({"event": "epoch", "epoch": 1, "epochs": 4, "bpc": 7.0}, now=110.0)
    status.apply({"event": "step", "step": 5, "steps": 10}, now=115.0)
    assert status.fraction_done() == pytest.approx(1.5 / 4)
    assert status.eta(now=115.0) == pytest.approx(15 * 2.5 / 1.5)


def test_resumed_status_counts_only_this_runs_epochs() -> None:
    status = JobStatus(state=JobState.RUNNING)
    status.apply({"event": "start", "epochs": 10, "steps_per_epoch": 4}, now=0.0)
    status.apply({"event": "resume", "epoch": 8}, now=0.0)
    status.apply({"event": "epoch", "epoch": 9, "epochs": 10}, now=30.0)
    assert status.fraction_done() == pytest.approx(0.5)
    assert status.eta(now=30.0) == pytest.approx(30.0)


def test_train_argv_single_process_and_torchrun() -> None:
    args = TrainArgs(corpus=Path("data/c.txt"), out=Path("models/x.candidate.pt"), epochs=5, cell="gru",
                     resume=True, device="cpu", threads=1, extra=("--hidden", "32", "--epochs", "99"),
                     python="py")
    argv = train_argv(args)
    assert argv[:4] == ["py", "-m", "model", "train"]
    assert argv[argv.index("--progress") + 1] == "jsonl" and argv[argv.index("--threads") + 1] == "1"
    assert argv[-5:] == ["--epochs", "5", "--cell", "gru", "--resume"]  # after `extra`, so they win
    torchrun = train_argv(TrainArgs(corpus=Path("c.txt"), out=Path("o.pt"), processes=4, python="py"))
    assert torchrun[:6] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
                            "--max_restarts=0"]
    assert torchrun[6:10] == ["-m", "model", "train", "--corpus"]
