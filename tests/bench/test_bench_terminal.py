"""The harness's terminal: a real program on a pty, read through a terminal emulator, as the
dashboard scenarios read ``corral dash``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.dashboard import queue_row, shows_rows, shows_wait
from bench.terminal import PtyProgram
from engine.queue import Queue

pytest.importorskip("pyte")
pytestmark = pytest.mark.timeout(90)

REPO_ROOT = Path(__file__).resolve().parents[2]
ECHO = "import sys; print('hello', flush=True); print('got', sys.stdin.readline().strip())"


async def test_screen_shows_output_and_keys_reach_the_program() -> None:
    program = await PtyProgram.start([sys.executable, "-c", ECHO], cwd=REPO_ROOT, columns=40)
    async with program:
        await program.wait_for(lambda lines: lines[0].startswith("hello"), 30, "hello")
        assert program.rss_bytes() > 0
        assert program.cpu_seconds() >= 0
        program.send("abc\r")
        await program.wait_for(lambda lines: any("got abc" in line for line in lines), 30)
        await program.proc.wait()
    assert program.proc.returncode == 0
    assert len(program.lines()[0]) == 40


async def test_the_real_dashboard_shows_a_new_count_and_pages(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("noop", {"i": i}) for i in range(60)])
        argv = [sys.executable, "-m", "corral", "dash", "--redis", redis_url]
        program = await PtyProgram.start([*argv, "--queue", queue_name], cwd=REPO_ROOT)
        async with program:
            await program.wait_for(shows_wait(queue_name, 60), 60, "60 waiting")
            row = queue_row(program.lines(), queue_name)
            assert row is not None and row[:3] == [queue_name, "60", "0"]
            await queue.add("noop", {})
            await program.wait_for(shows_wait(queue_name, 61), 30, "61 waiting")
            program.send("\r")
            await program.wait_for(shows_rows(1, 61), 30, "the first page")
            program.send("n")
            await program.wait_for(shows_rows(51, 61), 30, "the second page")
        assert program.proc.returncode is not None


async def test_a_program_that_exits_first_is_reported_with_its_screen() -> None:
    argv = [sys.executable, "-c", "import sys; print('boom', flush=True); sys.exit(3)"]
    program = await PtyProgram.start(argv, cwd=REPO_ROOT, columns=40)
    async with program:
        with pytest.raises(EOFError, match=r"before it showed never \(exit status 3\)") as info:
            await program.wait_for(lambda lines: False, 30, "never")
    assert "boom" in str(info.value)
