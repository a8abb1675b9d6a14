"""deploy/: the alert rules and the dashboard name only metrics we export."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cse_bridge.client import EventsClient
from cse_bridge.forwarder import Forwarder
from cse_bridge.forwarder.metrics import ForwarderCollector
from cse_bridge.gateway import GatewayThread

from .forwarder.test_metrics import GateSink
from .helpers import API_KEY, wait_until

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\bcse_[a-z_]+[a-z]\b")


class DroppingSink(GateSink):
    """Reports one drop, as a sink that lost an event does."""

    def drops(self) -> Mapping[str, int]:
        return {"send_failed": 1}


def exported_names(gateway: GatewayThread) -> set[str]:
    """Every sample name a busy gateway and a forwarder that delivered expose."""
    token = gateway.issue_token("sb-deploy")
    sink = DroppingSink()
    forwarder = Forwarder(
        [sink],
        tokens={"sb-deploy": token},
        api_key=API_KEY,
        gateway_url=gateway.http_url,
        host=gateway.pubsub_host,
        port=gateway.pubsub_port,
    )
    registry = CollectorRegistry()
    registry.register(ForwarderCollector(forwarder))
    with (
        forwarder,
        EventsClient(gateway_url=gateway.http_url, access_token=token) as client,
    ):
        client.store_event("custom", {})
        wait_until(lambda: sink.events, "one event forwarded")
        forwarder_page = generate_latest(registry).decode()
    gateway_page = gateway.gateway.metrics.render().decode()
    families = [
        family
        for page in (gateway_page, forwarder_page)
        for family in text_string_to_metric_families(page)
    ]
    # Sample names (x_total, x_bucket) and family names (a histogram's own name).
    return {s.name for f in families for s in f.samples} | {f.name for f in families}


def test_rules_and_dashboard_use_exported_metrics(gateway: GatewayThread) -> None:
    """A renamed metric fails here, not silently in someone's Grafana."""
    rules = (DEPLOY / "prometheus" / "cse-bridge-alerts.yml").read_text()
    dashboard = json.loads(
        (DEPLOY / "grafana" / "cse-bridge-dashboard.json").read_text()
    )
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    expressions += [
        variable["definition"]
        for variable in dashboard["templating"]["list"]
        if "definition" in variable
    ]
    referenced = set(METRIC.findall(rules)) | set(
        METRIC.findall("\n".join(expressions))
    )
    assert len(referenced) > 20
    assert [] == sorted(referenced - exported_names(gateway))
