"""``silta serve`` as operators run it: JSON log lines on stderr, and one set of metrics for all workers."""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import hetu


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(base_url: str, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "silta serve exited"
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("silta serve did not come up")


def searches_counted(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            wanted = {"method": "POST", "route": "/v1/clients/search", "status_class": "2xx"}
            if sample.name == "silta_http_requests_total" and sample.labels == wanted:
                return sample.value
    return 0.0


def test_serve_writes_json_lines_and_its_workers_share_their_metrics(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SILTA_", "PROMETHEUS_"))}
    env["SILTA_DATA_DIR"] = str(tmp_path)
    port, stderr = free_port(), tmp_path / "stderr.log"
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "app.cli"]
    code = hetu(dt.date(2005, 3, 15), 321)
    with stderr.open("wb") as errors:
        serve = [*command, "serve", "--port", str(port), "--workers", "2"]
        server = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            wait_until_up(base_url, server)
            token = subprocess.run(
                [*command, "token", "--role", "coordinator", "--region", "05"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            headers = {"Authorization": f"Bearer {token}", "Connection": "close"}  # a new connection, any worker
            for _ in range(6):
                answer = httpx.post(f"{base_url}/v1/clients/search", json={"personal_id": code}, headers=headers)
                assert answer.status_code == 200, answer.text
            scrapes = [searches_counted(httpx.get(f"{base_url}/metrics", headers=headers).text) for _ in range(4)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert scrapes == [6.0] * 4  # whichever worker answers the scrape, it reports every worker's requests

    written = stderr.read_text()
    records = [json.loads(line) for line in written.splitlines()]  # every line is one JSON object
    assert {"uvicorn.error", "silta", "silta.access"} <= {record["logger"] for record in records}
    searches = [record for record in records if record.get("route") == "/v1/clients/search"]
    assert len(searches) == 6 and all(record["request_id"] and record["status"] == 200 for record in searches)
    assert code not in written
    assert not any(record["logger"] == "uvicorn.access" for record in records)


async def test_start_up_takes_what_it_built_out_of_the_collectors_full_passes(settings):
    """Full collections walked every start-up object (about 160,000): 100 ms stalls under load."""
    from app.main import create_app

    app = create_app(settings)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 10_000
