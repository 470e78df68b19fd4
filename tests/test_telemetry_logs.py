"""Access-log lines, JSON application logs with request/trace ids, and the secret scrubber."""

from __future__ import annotations

import re
import io
import logging

import orjson
import pytest

from gateway.logs import RedactFilter, log_level, make_handler
from gateway.telemetry import Telemetry, context
from gateway.telemetry.access_log import FIELDS, AccessLog, destination
from gateway.telemetry.redact import redact_content, redact_secrets, register_secret

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OPENAI_KEY = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789"
ANTHROPIC_KEY = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz-0123456789"
WEBHOOK_SECRET = "hook-Secret-value-7f3a9c"  # no recognisable shape: only the registered literal catches it


def test_access_log_line_shape(tmp_path):
    path = tmp_path / "logs" / "access.log"
    tel = Telemetry(None, access_log=AccessLog(str(path)), environ={})
    ctx = tel.start_request("travel", "agent", "POST", "/v1/chat/completions",
                            [(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())], "req-42")
    ctx.agent_call("weather").finish(200)
    ctx.agent_call("flights").finish(200)
    ctx.finish(200, bytes_in=123, bytes_out=456, upstream="flights")
    ctx2 = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], "req-43")
    ctx2.llm_call("openai", "gpt-4o", "gpt-4o").finish(502, error="upstream down", error_class="connect")
    ctx2.finish(502, error="upstream down")
    tel.shutdown()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert list(first) == list(FIELDS)
    assert first["type"] == "access" and first["listener"] == "travel" and first["method"] == "POST"
    assert first["path"] == "/v1/chat/completions" and first["status"] == 200
    assert first["agents"] == ["weather", "flights"] and first["upstream"] == "flights"
    assert first["request_id"] == "req-42" and first["trace_id"] == TRACE
    assert (first["bytes_in"], first["bytes_out"]) == (123, 456)
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["model"] == "gpt-4o" and second["upstream"] == "openai" and second["status"] == 502
    # No incoming traceparent and tracing off: the request still gets a generated trace id (the one
    # sent to agents and providers), so its log line can be joined with theirs.
    assert second["error"] == "upstream down" and re.fullmatch(r"[0-9a-f]{32}", second["trace_id"])


def test_access_log_destination():
    assert destination({}) == "-"
    assert destination({"PLANO_ACCESS_LOG": "off"}) is None
    assert destination({"PLANO_ACCESS_LOG": "/var/log/plano/access.log"}) == "/var/log/plano/access.log"


def test_access_log_scrubs_client_controlled_fields(tmp_path):
    path = tmp_path / "a.log"
    log = AccessLog(str(path))
    log.write(0.0, "llm", "POST", f"/v1/x/api_key={OPENAI_KEY}", 400, 1.0, None, f"model-{OPENAI_KEY}", None,
              "r", "", 0, 0)
    log.close()
    text = path.read_text()
    assert OPENAI_KEY not in text and "[REDACTED]" in text


def capture_logger(monkeypatch, fmt: str = "json") -> tuple[logging.Logger, io.StringIO]:
    monkeypatch.setenv("LOG_FORMAT", fmt)
    stream = io.StringIO()
    logger = logging.getLogger(f"plano.test.{fmt}")
    logger.handlers[:] = [make_handler(stream)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def test_json_logs_carry_request_and_trace_ids(monkeypatch):
    logger, stream = capture_logger(monkeypatch)
    context.bind("req-7", TRACE)
    try:
        logger.warning("upstream %s failed", "openai")
    finally:
        context.current_request.set(None)
    logger.info("outside any request")
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "upstream openai failed" and first["level"] == "warning"
    assert first["request_id"] == "req-7" and first["trace_id"] == TRACE and first["logger"] == "plano.test.json"
    assert "request_id" not in second


def test_text_logs_stay_human(monkeypatch):
    logger, stream = capture_logger(monkeypatch, "text")
    logger.error("plain message")
    line = stream.getvalue().strip()
    assert line.startswith("[") and "[ERROR] plano.test.text: plain message" in line


def test_secrets_never_reach_a_log_line(monkeypatch):
    register_secret(WEBHOOK_SECRET)
    logger, stream = capture_logger(monkeypatch)
    logger.warning("calling with headers %s", {"authorization": f"Bearer {OPENAI_KEY}", "x-api-key": ANTHROPIC_KEY})
    logger.warning("Authorization: Basic dXNlcjpwYXNzd29yZA==")
    logger.warning("webhook signed with %s", WEBHOOK_SECRET)
    logger.warning('config {"api_key": "%s", "password": "hunter22"}', "plain-looking-value")
    try:
        raise ValueError(f"bad key {OPENAI_KEY}")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, WEBHOOK_SECRET, "dXNlcjpwYXNzd29yZA==", "hunter22",
                   "plain-looking-value"):
        assert secret not in text, secret
    assert text.count("[REDACTED]") >= 6
    assert "ValueError" in text  # the traceback is kept, only the secret is cut


def test_query_string_credentials():
    assert redact_secrets("GET /v1beta/models?key=AIzaSyNOTAREALKEY&alt=sse") == "GET /v1beta/models?key=[REDACTED]&alt=sse"


def test_redaction_keeps_ids_readable():
    text = f"request_id=5f1c2a3b-1111-2222-3333-444455556666 trace_id={TRACE} model=gpt-4o tokens=12"
    assert redact_secrets(text) == text


def test_redact_content_pii():
    out = redact_content("mail ann.lee@example.co.uk, card 4242-4242-4242-4242, not a card 1234 5678 9012 3456",
                         limit=None)
    assert "[EMAIL]" in out and "[CARD]" in out
    assert "1234 5678 9012 3456" in out  # fails the Luhn check: left alone
    assert redact_content("x" * 500, limit=50) == "x" * 50 + "..."


def test_log_level_from_env():
    assert log_level({"LOG_LEVEL": "debug"}) == logging.DEBUG
    assert log_level({"LOG_LEVEL": "warn"}) == logging.WARNING
    assert log_level({"LOG_LEVEL": "nonsense"}) == logging.INFO
    assert log_level({}) == logging.INFO


def test_redact_filter_is_idempotent():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (OPENAI_KEY,), None)
    f = RedactFilter()
    assert f.filter(record) and f.filter(record)
    assert record.getMessage() == "key [REDACTED]"


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "cookie", "x-katanemo-auth-token"])
def test_secret_headers_are_never_span_attributes(header):
    from gateway.telemetry.redact import is_secret_name

    assert is_secret_name(header)
    assert not is_secret_name("x-katanemo-tenant-id")
