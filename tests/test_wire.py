"""The wire layer's shared pieces: observers, usage read from each client API's stream, error envelopes."""

from __future__ import annotations

import json

from gateway.wire.anthropic import MESSAGES
from gateway.wire.errors import GatewayError
from gateway.wire.openai_chat import CHAT
from gateway.wire.relay import Observers, StreamUsage, observers
from gateway.wire.responses import RESPONSES
from gateway.wire.sse import named_event


class Recorder:
    def __init__(self):
        self.chunks, self.finished = [], []

    def chunk(self, data):
        self.chunks.append(data)

    def finish(self, status, **kw):
        self.finished.append((status, kw))


def test_observers_fan_out_and_collapse():
    a, b = Recorder(), Recorder()
    assert observers(None, a) is a and observers(None, None) is None
    both = observers(a, None, b)
    assert isinstance(both, Observers)
    both.chunk(b"x")
    both.finish(200, response_bytes=1)
    assert a.chunks == b.chunks == [b"x"] and a.finished == b.finished == [(200, {"response_bytes": 1})]


def test_stream_usage_from_anthropic_events():
    inner = Recorder()
    obs = StreamUsage(inner)
    obs.chunk(named_event("message_start", {"type": "message_start", "message": {
        "id": "m", "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}}}))
    obs.chunk(named_event("content_block_delta", {"type": "content_block_delta", "delta": {"text": "usage"}}))
    obs.chunk(named_event("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}}))
    obs.finish(200, response_bytes=9)
    status, kw = inner.finished[0]
    assert kw["usage"] == {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7, "total_tokens": 22}
    assert len(inner.chunks) == 3


def test_stream_usage_from_responses_completed():
    inner = Recorder()
    obs = StreamUsage(inner)
    usage = {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    obs.chunk(named_event("response.completed", {"type": "response.completed", "response": {"usage": usage}}))
    obs.finish(200)
    assert inner.finished[0][1]["usage"] == usage


def test_error_envelopes_per_api():
    err = GatewayError(404, "no such model", code="model_not_found", param="model")
    assert json.loads(CHAT.error_body(err)) == {"error": {"message": "no such model", "type": "invalid_request_error",
                                                          "code": "model_not_found", "param": "model"}}
    assert json.loads(RESPONSES.error_body(err))["error"]["code"] == "model_not_found"
    assert json.loads(MESSAGES.error_body(err, "rid-1")) == {
        "type": "error", "error": {"type": "not_found_error", "message": "no such model"}, "request_id": "rid-1"}
    assert MESSAGES.native_error({"type": "error", "error": {"type": "x", "message": "y"}})
    assert not CHAT.native_error({"type": "error", "error": {"type": "x", "message": "y"}})
    assert CHAT.native_error({"error": {"message": "m"}}) and not MESSAGES.native_error({"error": {"message": "m"}})
