"""The README's quick start runs as written: its tasks.py adds jobs and a worker runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (tasks,) = [b for b in blocks if b.startswith("# tasks.py")]
    return str(tasks)


@pytest.mark.timeout(60)
def test_quick_start_adds_jobs_and_a_worker_runs_them(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(quick_start_source())
    env = {**os.environ, "REDIS_URL": redis_url}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for key in client.scan_iter(match="corral:{emails}:*", count=1000):
        client.delete(key)
    added = subprocess.run(
        [sys.executable, "tasks.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    for count in ("'wait': 1", "'prioritized': 2", "'delayed': 1"):
        assert count in added.stdout
    worker = subprocess.Popen(
        [sys.executable, "-m", "corral", "worker", "tasks:send_email", "--queue", "emails",
         "--concurrency", "50"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while int(client.zcard("corral:{emails}:completed")) < 4:
            assert time.monotonic() < deadline, "the quick start's jobs did not complete"
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        client.close()
