"""A mock Amazon Bedrock runtime on 127.0.0.1 speaking Converse / ConverseStream's real wire format.

Shapes from the Bedrock API reference (Converse, ConverseStream) and the AWS event stream
encoding:

- ``POST /model/{modelId}/converse`` → ``{"output": {"message": {"role": "assistant", "content":
  [{text} | {toolUse} | {reasoningContent}]}}, "stopReason", "usage": {inputTokens, outputTokens,
  totalTokens, cacheReadInputTokens, cacheWriteInputTokens}, "metrics": {latencyMs}}``;
- ``POST /model/{modelId}/converse-stream`` → ``application/vnd.amazon.eventstream``: binary
  messages (prelude, string headers ``:event-type`` / ``:content-type`` / ``:message-type``,
  JSON payload with AWS's ``p`` padding field, CRC32s) — ``messageStart``, per block
  ``contentBlockStart`` (tool use) / ``contentBlockDelta`` / ``contentBlockStop``,
  ``messageStop``, ``metadata``; exceptions as ``:message-type: exception`` frames. The frames
  are built here by hand (:func:`frame`), independently of the gateway's decoder;
- errors as ``{"message": …}`` with ``x-amzn-ErrorType: <Name>:http://internal.amazon.com/coral/…``;
- authentication: every request must carry either ``Authorization: Bearer <api key>`` (a key in
  ``api_keys``) or a SigV4 signature that this mock VERIFIES with its own implementation
  (:func:`verify_sigv4`, written separately from gateway/llm/auth/sigv4.py from the AWS
  documentation; botocore's ``SigV4Auth`` is used instead when it is importable), for the
  credentials in ``credentials`` (access key → (secret, session token or None)), service
  ``bedrock``, region ``region``, a timestamp within 5 minutes. Failures answer 403
  ``InvalidSignatureException`` / ``UnrecognizedClientException`` as AWS does;
- request checks Converse makes: only known top-level fields, roles ``user``/``assistant``
  strictly alternating and starting with ``user``, each content block exactly one known
  member, no blank text, ``toolResult``/``toolUse`` only with a ``toolConfig``, image
  ``bytes`` must be base64.

Scripted with :class:`~tests.support.mock_openai_wire.Turn`; kinds beyond the shared ones:
``bad_crc`` (a frame with a corrupted CRC), ``exception`` (a throttlingException frame
mid-stream), ``truncated`` (the body ends inside a frame), ``no_stop`` (ends before messageStop).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import struct
import zlib
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.support.mock_openai_wire import MockServer, Turn, pieces

_TOP = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
        "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig"}
_BLOCKS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "reasoningContent",
           "cachePoint", "citationsContent"}
_INFERENCE = {"maxTokens", "temperature", "topP", "stopSequences"}


# ------------------------------------------------------------------ event stream encoding (by hand)


def _crc(data: bytes) -> int:
    return binascii.crc32(data) & 0xFFFFFFFF


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with string (type 7) headers."""
    hbytes = b""
    for name, value in headers:
        raw_name, raw_value = name.encode(), value.encode()
        hbytes += struct.pack("B", len(raw_name)) + raw_name + struct.pack(">BH", 7, len(raw_value)) + raw_value
    total = 4 + 4 + 4 + len(hbytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hbytes))
    prelude += struct.pack(">I", _crc(prelude))
    message = prelude + hbytes + payload
    return message + struct.pack(">I", _crc(message))


def event(kind: str, payload: dict) -> bytes:
    body = json.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: 4 + len(kind) % 20]}).encode()
    return frame([(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], body)


def exception(kind: str, message: str) -> bytes:
    return frame([(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
                 json.dumps({"message": message}).encode())


# ------------------------------------------------------------------ SigV4 verification (separately written)


def _uri_encode(text: str, keep_slash: bool) -> str:
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in "-_.~") or (keep_slash and ch == "/"):
            out.append(ch)
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


def _derive(secret: str, day: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify_sigv4(method: str, raw_path: str, raw_query: str, headers: dict[str, str], body: bytes,
                 credentials: dict[str, tuple[str, str | None]], region: str, service: str,
                 now: dt.datetime | None = None) -> str | None:
    """None if the request is correctly signed, else AWS's reason. ``headers`` lower-cased."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "UnrecognizedClientException:Missing Authentication Token"
    fields = {}
    for item in auth[len("AWS4-HMAC-SHA256 "):].split(","):
        name, _, value = item.strip().partition("=")
        fields[name] = value
    try:
        access, day, cred_region, cred_service, terminal = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        given = fields["Signature"]
    except (KeyError, ValueError):
        return "IncompleteSignatureException:Authorization header requires Credential, SignedHeaders, Signature"
    if access not in credentials:
        return "UnrecognizedClientException:The security token included in the request is invalid."
    secret, token = credentials[access]
    if (cred_region, cred_service, terminal) != (region, service, "aws4_request"):
        return f"InvalidSignatureException:Credential should be scoped to a valid region/service ({cred_region}/{cred_service})"
    stamp = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "IncompleteSignatureException:X-Amz-Date is missing or malformed"
    now = now or dt.datetime.now(dt.timezone.utc)
    if abs((now - when).total_seconds()) > 300 or stamp[:8] != day:
        return "InvalidSignatureException:Signature expired or date does not match the credential scope"
    if token is not None:
        if headers.get("x-amz-security-token") != token or "x-amz-security-token" not in signed:
            return "UnrecognizedClientException:The security token included in the request is invalid."
    for required in ("host", "x-amz-date"):
        if required not in signed:
            return f"InvalidSignatureException:'{required}' must be a signed header"
    if signed != sorted(signed) or any(h not in headers for h in signed):
        return "InvalidSignatureException:SignedHeaders are not sorted or name headers the request lacks"
    # Canonical request: the wire path encoded once more (non-S3 services), sorted encoded query.
    path = _uri_encode(raw_path or "/", keep_slash=True)
    params = []
    for item in filter(None, raw_query.split("&")):
        k, _, v = item.partition("=")
        params.append((_uri_encode(unquote(k), False), _uri_encode(unquote(v), False)))
    query = "&".join(f"{k}={v}" for k, v in sorted(params))
    header_lines = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed)
    canonical = f"{method}\n{path}\n{query}\n{header_lines}\n{';'.join(signed)}\n{hashlib.sha256(body).hexdigest()}"
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = hmac.new(_derive(secret, day, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        return ("InvalidSignatureException:The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.")
    return None


def _verify_with_botocore(method, url, headers, body, credentials, region, service) -> str | None:
    """The same check with botocore's SigV4Auth (recomputing the signature at the request's own time)."""
    from unittest import mock

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers.get("authorization", "")
    try:
        access = auth.split("Credential=", 1)[1].split("/", 1)[0]
        signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    except IndexError:
        return "UnrecognizedClientException:Missing Authentication Token"
    if access not in credentials:
        return "UnrecognizedClientException:The security token included in the request is invalid."
    secret, token = credentials[access]
    when = dt.datetime.strptime(headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
    req = AWSRequest(method=method, url=url, data=body, headers={h: headers[h] for h in signed
                                                                 if h not in ("x-amz-date", "authorization",
                                                                              "x-amz-security-token")})
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        botocore.auth.SigV4Auth(Credentials(access, secret, token), service, region).add_auth(req)
    if req.headers["Authorization"] != auth:
        return ("InvalidSignatureException:The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.")
    return None


# ------------------------------------------------------------------ request checks


def validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "SerializationException:Malformed request body"
    for key in body:
        if key not in _TOP:
            return f"ValidationException:Malformed input request: extraneous key [{key}] is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "ValidationException:A conversation must start with a user message."
    has_tools = isinstance(body.get("toolConfig"), dict) and body["toolConfig"].get("tools")
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"ValidationException:messages.{i}.role: must be one of user, assistant"
        if i == 0 and role != "user":
            return "ValidationException:A conversation must start with a user message. Try again with a conversation that starts with a user message."
        if i > 0 and messages[i - 1]["role"] == role:
            return "ValidationException:A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"ValidationException:messages.{i}.content: must not be empty"
        for j, block in enumerate(content):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCKS:
                return f"ValidationException:messages.{i}.content.{j}: must have exactly one known member"
            kind, value = next(iter(block.items()))
            if kind == "text" and (not isinstance(value, str) or not value.strip()):
                return "ValidationException:The text field in the ContentBlock object is blank. Add text to the text field, and try again."
            if kind in ("toolUse", "toolResult") and not has_tools:
                return "ValidationException:The toolConfig field must be defined when using toolUse and toolResult content blocks."
            if kind == "toolUse" and not (isinstance(value.get("input"), dict) and value.get("toolUseId") and value.get("name")):
                return f"ValidationException:messages.{i}.content.{j}.toolUse is malformed"
            if kind == "toolResult" and not (value.get("toolUseId") and isinstance(value.get("content"), list)):
                return f"ValidationException:messages.{i}.content.{j}.toolResult is malformed"
            if kind == "image":
                try:
                    base64.b64decode(value["source"]["bytes"], validate=True)
                except (KeyError, TypeError, binascii.Error):
                    return f"ValidationException:messages.{i}.content.{j}.image.source.bytes must be base64"
                if value.get("format") not in ("png", "jpeg", "gif", "webp"):
                    return f"ValidationException:messages.{i}.content.{j}.image.format is invalid"
    for key in body.get("inferenceConfig") or {}:
        if key not in _INFERENCE:
            return f"ValidationException:Malformed input request: extraneous key [{key}] is not permitted"
    for block in body.get("system") or []:
        if not isinstance(block, dict) or not isinstance(block.get("text"), str) or not block["text"].strip():
            return "ValidationException:system: text must not be blank"
    config = body.get("toolConfig")
    if config is not None:
        for tool in config.get("tools") or []:
            spec = tool.get("toolSpec") or {}
            if not spec.get("name") or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
                return "ValidationException:toolConfig.tools: toolSpec needs name and inputSchema.json"
        choice = config.get("toolChoice")
        if choice is not None and (len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool")):
            return "ValidationException:toolConfig.toolChoice is invalid"
    return None


def last_user_text(body: Any) -> str:
    for message in reversed((body or {}).get("messages") or []):
        if message.get("role") != "user":
            continue
        texts = [b["text"] for b in message["content"] if "text" in b]
        if texts:
            return " ".join(texts)
        results = [b["toolResult"] for b in message["content"] if "toolResult" in b]
        if results:
            return json.dumps(results[-1]["content"])
    return ""


class MockBedrock(MockServer):
    name = "mock-bedrock"

    def __init__(self, *, credentials: dict[str, tuple[str, str | None]] | None = None, api_keys=(),
                 region: str = "us-east-1") -> None:
        super().__init__()
        self.credentials = credentials or {}
        self.api_keys = set(api_keys)
        self.region = region
        self.verified: list[str] = []  # "sigv4" / "bearer" per accepted request
        self.raw_paths: list[str] = []  # request paths exactly as they came over the wire
        self.use_botocore = False
        try:  # botocore's own signer, where it is installed, is the independent check
            import botocore.auth  # noqa: F401

            self.use_botocore = True
        except ImportError:
            pass

    def reset(self) -> None:
        super().reset()
        self.verified.clear()
        self.raw_paths.clear()

    def _error(self, status: int, name_message: str) -> web.Response:
        name, _, message = name_message.partition(":")
        return web.json_response({"message": message}, status=status,
                                 headers={"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                                          "x-amzn-RequestId": "mock-request-id"})

    def _authenticate(self, request: web.Request, raw: bytes) -> str | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if auth[7:] in self.api_keys:
                self.verified.append("bearer")
                return None
            return "UnrecognizedClientException:Invalid API Key format: Must start with pre-defined prefix"
        path, _, query = request.raw_path.partition("?")
        if self.use_botocore:
            url = f"http://{headers.get('host')}{request.raw_path}"
            problem = _verify_with_botocore(request.method, url, headers, raw, self.credentials, self.region, "bedrock")
        else:
            problem = verify_sigv4(request.method, path, query, headers, raw, self.credentials, self.region, "bedrock")
        if problem is None:
            self.verified.append("sigv4")
        return problem

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        raw = await request.read()  # aiohttp keeps the body: the same bytes MockServer parsed
        self.raw_paths.append(request.raw_path)
        problem = self._authenticate(request, raw)
        if problem is not None:
            return self._error(403, problem)
        parts = request.raw_path.partition("?")[0].split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream"):
            return self._error(404, "UnknownOperationException:")
        operation = parts[3]
        problem = validate(body)
        if problem is not None:
            return self._error(400, problem)
        turn = self.next_turn()
        if turn.status >= 400:
            if isinstance(turn.error, str) and turn.error.startswith("<"):
                return web.Response(text=turn.error, status=turn.status, content_type="text/html")
            return self._error(turn.status, turn.error or "ThrottlingException:Too many requests, please wait before trying again.")
        if turn.kind == "garbage" and operation == "converse":
            return web.Response(body=b"<html>\x00 not json", status=200, content_type="application/json")
        thinking = isinstance((body.get("additionalModelRequestFields") or {}).get("thinking"), dict)
        reasoning = turn.reasoning if thinking else None
        text = turn.text if turn.text is not None else ("" if turn.tool_calls else f"echo: {last_user_text(body)}")
        inp, out, cached = turn.usage
        usage = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out + cached,
                 "cacheReadInputTokens": cached, "cacheWriteInputTokens": 0}
        stop = "tool_use" if turn.tool_calls else ("max_tokens" if turn.kind == "max_tokens" else "end_turn")
        content: list[dict] = []
        if reasoning:
            content.append({"reasoningContent": {"reasoningText": {"text": reasoning, "signature": turn.signature}}})
        if text:
            content.append({"text": text})
        for i, (name, args) in enumerate(turn.tool_calls):
            content.append({"toolUse": {"toolUseId": f"tooluse_mock{i}", "name": name, "input": args}})
        if operation == "converse":
            return web.json_response({"output": {"message": {"role": "assistant", "content": content}},
                                      "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 42}},
                                     headers={"x-amzn-RequestId": "mock-request-id"})
        frames = [event("messageStart", {"role": "assistant"})]
        for index, block in enumerate(content):
            if "reasoningContent" in block:
                for piece in pieces(reasoning):
                    frames.append(event("contentBlockDelta", {"contentBlockIndex": index,
                                                              "delta": {"reasoningContent": {"text": piece}}}))
                frames.append(event("contentBlockDelta", {"contentBlockIndex": index,
                                                          "delta": {"reasoningContent": {"signature": turn.signature}}}))
            elif "text" in block:
                for piece in pieces(block["text"]):
                    frames.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}))
            else:
                use = block["toolUse"]
                frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": {
                    "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
                for piece in pieces(json.dumps(use["input"])):
                    frames.append(event("contentBlockDelta", {"contentBlockIndex": index,
                                                              "delta": {"toolUse": {"input": piece}}}))
            frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        if turn.kind != "no_stop":
            frames.append(event("messageStop", {"stopReason": stop}))
        frames.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
        if turn.kind == "bad_crc":
            bad = bytearray(frames[2])
            bad[-1] ^= 0xFF
            frames[2] = bytes(bad)
        elif turn.kind == "exception":
            frames = frames[:2] + [exception("throttlingException", "Too many tokens, please wait before trying again.")]
        elif turn.kind == "truncated":
            frames = frames[:2] + [frames[2][:-5]]
        elif turn.kind == "garbage":
            frames = [b"\x00\x00\x00\x05garbage that is no event stream at all"]
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/vnd.amazon.eventstream",
                                                       "x-amzn-RequestId": "mock-request-id"})
        await resp.prepare(request)
        for i, data in enumerate(frames):
            if turn.kind == "broken_sse" and i == len(frames) // 2:
                request.transport.abort()
                return resp
            # Split frames across writes, as TCP does: a decoder must reassemble them.
            await resp.write(data[:7])
            await resp.write(data[7:])
        await resp.write_eof()
        return resp


__all__ = ["MockBedrock", "Turn", "event", "exception", "frame", "verify_sigv4", "validate"]
