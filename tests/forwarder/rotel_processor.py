"""
Runs inside the rotel collector (its Python processor hook), not under pytest.

Sends what rotel decoded, one JSON object per span or log record, to the TCP port in
``CSE_TEST_SINK_PORT``: an independent view of what our OTLP exporters put on the wire.
"""

import json
import os
import socket


def _value(any_value):
    if any_value is None:
        return None
    value = any_value.value
    kind = type(value).__name__
    if kind == "ArrayValue":
        return [_value(v) for v in _items(value)]
    if kind == "KeyValueList":
        return {kv.key: _value(kv.value) for kv in _items(value)}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


def _items(container):
    """rotel's ArrayValue and KeyValueList index like lists but do not iterate."""
    out, i = [], 0
    while True:
        try:
            out.append(container[i])
        except IndexError:
            return out
        i += 1


def _attrs(items):
    return {kv.key: _value(kv.value) for kv in items}


def _hex(raw):
    return bytes(raw).hex() if raw else ""


def _send(kind, items):
    port = int(os.environ["CSE_TEST_SINK_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        body = "".join(json.dumps({"signal": kind, **i}) + "\n" for i in items)
        conn.sendall(body.encode())


def process_spans(resource_spans):
    resource = _attrs(resource_spans.resource.attributes)
    out = []
    for scope_spans in resource_spans.scope_spans:
        scope = scope_spans.scope
        for s in scope_spans.spans:
            out.append(
                {
                    "name": s.name,
                    "traceId": _hex(s.trace_id),
                    "spanId": _hex(s.span_id),
                    "parentSpanId": _hex(s.parent_span_id) or None,
                    "traceState": s.trace_state,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status": [s.status.code, s.status.message] if s.status else None,
                    "attributes": _attrs(s.attributes),
                    "events": [
                        [e.name, e.time_unix_nano, _attrs(e.attributes)]
                        for e in s.events
                    ],
                    "links": [
                        [
                            _hex(link.trace_id),
                            _hex(link.span_id),
                            _attrs(link.attributes),
                        ]
                        for link in s.links
                    ],
                    "resource": resource,
                    "scope": [scope.name, scope.version] if scope else None,
                }
            )
    _send("span", out)


def process_logs(resource_logs):
    resource = _attrs(resource_logs.resource.attributes)
    out = []
    for scope_logs in resource_logs.scope_logs:
        scope = scope_logs.scope
        for r in scope_logs.log_records:
            out.append(
                {
                    "body": _value(r.body),
                    "severityNumber": r.severity_number,
                    "severityText": r.severity_text,
                    "time": r.time_unix_nano,
                    "traceId": _hex(r.trace_id),
                    "spanId": _hex(r.span_id),
                    "attributes": _attrs(r.attributes),
                    "resource": resource,
                    "scope": scope.name if scope else None,
                }
            )
    _send("log", out)
