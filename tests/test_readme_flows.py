"""The README's flows example runs as written: flows.py adds a flow, and two ``corral worker``
processes (one per queue) run the children and then the parent."""

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


def flows_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (source,) = [b for b in blocks if b.startswith("# flows.py")]
    return str(source)


@pytest.mark.timeout(60)
def test_flows_example_runs_the_parent_after_its_children(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(flows_source())
    env = {**os.environ, "REDIS_URL": redis_url}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for pattern in ("corral:{reports}:*", "corral:{words}:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    added = subprocess.run(
        [sys.executable, "flows.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "reports:1 waiting-children"
    quiet = subprocess.DEVNULL
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "corral", "worker", "flows:process", "--queue", queue],
            cwd=tmp_path,
            env=env,
            stdout=quiet,
            stderr=quiet,
        )
        for queue in ("words", "reports")
    ]
    try:
        deadline = time.monotonic() + 30
        while client.zscore("corral:{reports}:completed", "1") is None:
            assert time.monotonic() < deadline, "the parent never completed"
            time.sleep(0.1)
        assert client.hget("corral:{reports}:job:1", "returnvalue") == "5"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
        client.close()
