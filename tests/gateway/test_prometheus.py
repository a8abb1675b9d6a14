"""
End to end: a real Prometheus server scrapes a gateway and loads our alert rules.

Needs Debian's ``prometheus`` package (the ``prometheus`` binary on PATH): a missing
binary fails the test with the command that installs it, it is never skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cse_bridge.gateway import GatewayThread

from ..helpers import wait_until
from .redis_fixtures import free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
NO_PROMETHEUS = (
    "this test runs a real Prometheus server: install it with "
    "`apt-get install --no-install-recommends prometheus` (Debian/Ubuntu; .ci/run "
    "does so) or put a prometheus binary on PATH"
)


class Prometheus:
    """A Prometheus server on loopback scraping *targets* every 0.25 s."""

    def __init__(self, directory: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(NO_PROMETHEUS)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        rules = directory / "cse-bridge-alerts.yml"
        shutil.copy(RULES / "cse-bridge-alerts.yml", rules)
        listed = ", ".join(f"'{target}'" for target in targets)
        config.write_text(
            "global:\n"
            "  scrape_interval: 250ms\n"
            "  scrape_timeout: 200ms\n"
            "  evaluation_interval: 250ms\n"
            f"rule_files: ['{rules}']\n"
            "scrape_configs:\n"
            "  - job_name: cse-gateway\n"
            f"    static_configs: [{{targets: [{listed}]}}]\n"
        )
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def query(self, promql: str) -> list[dict]:
        """The result vector of an instant query (empty while Prometheus starts)."""
        try:
            answer = requests.get(
                f"{self.url}/api/v1/query", params={"query": promql}, timeout=5
            )
        except requests.ConnectionError:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            return []
        if answer.status_code == 503:  # starting: not ready yet
            return []
        answer.raise_for_status()
        result: list[dict] = answer.json()["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The one value *promql* yields now, or None."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        """Terminate it and wait."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator:
    """Start a Prometheus scraping the given targets; stopped after the test."""
    started: list[Prometheus] = []

    def start(*targets: str) -> Prometheus:
        server = Prometheus(tmp_path, list(targets))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_real_prometheus_sees_ten_posts(gateway: GatewayThread, prometheus_for) -> None:
    """Prometheus scrapes the gateway, reads +10 stored events, loads the rules."""
    target = gateway.http_url.removeprefix("http://")
    prometheus = prometheus_for(target)
    wait_until(
        lambda: prometheus.value('up{job="cse-gateway"}') == 1,
        "Prometheus scraping the gateway",
        timeout=30,
    )
    token = gateway.issue_token("sb-prom")
    with requests.Session() as http:
        for i in range(10):
            answer = http.post(
                f"{gateway.http_url}/events",
                json={"type": "custom", "data": {"i": i}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert 200 == answer.status_code
    wait_until(
        lambda: (
            prometheus.value('cse_gateway_events_stored_total{job="cse-gateway"}') == 10
        ),
        "Prometheus reading 10 stored events",
        timeout=30,
    )
    posts = prometheus.value(
        'sum(cse_gateway_http_requests_total{route="/events",method="POST",'
        'status="200"})'
    )
    assert 10 == posts
    rules = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()
    groups = {group["name"]: group for group in rules["data"]["groups"]}
    assert {"cse-bridge-gateway", "cse-bridge-forwarder"} == set(groups)
    unhealthy = [
        rule["name"]
        for group in groups.values()
        for rule in group["rules"]
        if rule.get("health") not in ("ok", "unknown")
    ]
    assert [] == unhealthy
