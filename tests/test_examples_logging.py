"""The logging examples under examples/ run as written and ship what they log."""

from __future__ import annotations

from .helpers import run_example


def arrived(stdout: str) -> list[str]:
    """The lines the example printed about events that arrived."""
    return [line for line in stdout.splitlines() if line.startswith("[")]


class TestLoggingHandlerExample:
    """examples/logging_handler.py."""

    def test_records_arrive_with_extras_and_exception(self) -> None:
        """Three records arrive with their extras, resource and exception type."""
        result = run_example("logging_handler.py")
        resource = "{'service.name': 'example'}"
        expected = [
            "[log.info] example.orders: order 42 placed "
            f"{{'order_id': 42, 'total': 9.5}} {resource}",
            "[log.warning] example.orders: stock low for widget "
            f"{{'left': 3}} {resource}",
            f"[log.error] example.orders: lookup failed {{}} {resource} KeyError",
        ]
        assert expected == arrived(result.stdout)
        assert "KeyError: 'missing'" in result.stderr  # the console handler still works


class TestStructlogExample:
    """examples/structlog_setup.py."""

    def test_events_arrive_and_console_renders(self) -> None:
        """Both structlog events arrive, context vars included; the console renders."""
        result = run_example("structlog_setup.py")
        resource = "{'service.name': 'example'}"
        expected = [
            "[log.info] example.jobs: job started "
            f"{{'job': 'resize', 'size': 3, 'request_id': 'r-1'}} {resource}",
            "[log.warning] example.jobs: job slow "
            f"{{'job': 'resize', 'seconds': 12.5, 'request_id': 'r-1'}} {resource}",
        ]
        assert expected == arrived(result.stdout)
        assert "job started" in result.stdout.splitlines()[0]


class TestDictConfigExample:
    """examples/dictconfig.py."""

    def test_dictconfig_as_written(self) -> None:
        """The dictConfig setup ships, also after being applied a second time."""
        result = run_example("dictconfig.py")
        resource = "{'deployment.environment': 'dev', 'service.name': 'example'}"
        expected = [
            "[log.info] example.config: configured from a dict "
            f"{{'source': 'dictConfig'}} {resource}",
            "[log.error] example.config: still shipping after reconfiguration "
            f"{{}} {resource}",
        ]
        assert expected == arrived(result.stdout)
