"""The small server kit every demo agent shares.

All demo agents are the same OpenAI-compatible service: plano POSTs a chat
completions body, the agent works out the latest user question (and what other
agents already answered), and replies as one JSON ``chat.completion`` or as SSE
``chat.completion.chunk`` events.  Only the answer differs, so an agent module
only writes :meth:`Agent.answer` and calls :func:`main`.

With ``PLANO_AGENT_USE_LLM=1`` the deterministic answer becomes the grounding
facts of a prompt sent to plano's model proxy; any LLM failure falls back to the
deterministic answer, so the demo never breaks for lack of a provider.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

log = logging.getLogger("examples.agents")

DEFAULT_LLM_URL = "http://127.0.0.1:12000/v1"
MAX_BODY = 1 << 20  # a chat request to a demo agent has no business being larger
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
FORWARDED_HEADERS = ("traceparent", "tracestate", "x-request-id")


# --------------------------------------------------------------------------- errors

class BadRequest(Exception):
    """Invalid client input, answered as an OpenAI-shaped 400."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def error_response(status: int, message: str, *, kind: str = "invalid_request_error",
                   code: str | None = None, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": code, "param": param}}
    return JSONResponse(body, status_code=status)


# --------------------------------------------------------------------------- request

def text_of(content: Any) -> str:
    """Message content as plain text: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


@dataclass
class Chat:
    """What an agent needs from a chat completions request."""

    messages: list[dict]
    model: str
    stream: bool
    question: str                                       # latest user message
    earlier: list[str] = field(default_factory=list)    # texts before it, oldest first
    handoffs: dict[str, str] = field(default_factory=dict)  # agent id -> its answer
    headers: dict[str, str] = field(default_factory=dict)   # trace headers to forward


def parse_chat(raw: bytes, headers: dict[str, str], *, needs_question: bool = True) -> Chat:
    """Validate a chat completions body; raise :class:`BadRequest` on anything malformed."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_body")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"messages[{i}] must be an object with a valid 'role'.", param=f"messages[{i}]")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(f"messages[{i}].content must be a string or an array of parts.",
                             param=f"messages[{i}].content")
        if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
            raise BadRequest(f"messages[{i}].content parts must be objects.", param=f"messages[{i}].content")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", param="stream")
    model = body.get("model") or ""
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string.", param="model")

    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None and needs_question:
        raise BadRequest("'messages' must contain a user message.", param="messages", code="no_user_message")
    question = text_of(messages[last_user].get("content")).strip() if last_user is not None else ""
    before = messages[:last_user] if last_user is not None else messages
    earlier = [t for m in before if m["role"] in ("user", "assistant") and (t := text_of(m.get("content")))]
    handoffs = {m["name"]: text_of(m.get("content")) for m in messages
                if m["role"] == "assistant" and isinstance(m.get("name"), str) and m["name"]}
    forwarded = {k: headers[k] for k in FORWARDED_HEADERS if headers.get(k)}
    return Chat(messages, model, stream, question, earlier, handoffs, forwarded)


# --------------------------------------------------------------------------- text helpers

def stable_int(*parts: object) -> int:
    """A hash that is the same in every process (unlike ``hash()``): drives the demo data."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def today() -> date:
    """Today, or ``PLANO_DEMO_DATE`` (ISO) so demos and tests can pin the calendar."""
    pinned = os.environ.get("PLANO_DEMO_DATE")
    return date.fromisoformat(pinned) if pinned else date.today()


def find_names(text: str, names: dict[str, str]) -> list[tuple[int, int, str]]:
    """Whole-word mentions of ``names`` (alias -> key) as (start, end, key), in text order.

    An alias with an upper-case letter (``LA``, ``JFK``) must match case-sensitively, so
    that ordinary words ("la", "sea") are not mistaken for places or codes.
    """
    hits = []
    for alias, key in names.items():
        flags = 0 if alias != alias.lower() else re.IGNORECASE
        for m in re.finditer(rf"(?<!\w){re.escape(alias)}(?!\w)", text, flags):
            hits.append((m.start(), m.end(), key))
    hits.sort(key=lambda h: (h[0], h[0] - h[1]))  # earliest first, then longest
    out, end = [], -1
    for start, stop, key in hits:
        if start >= end:
            out.append((start, stop, key))
            end = stop
    return out


WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july",
          "august", "september", "october", "november", "december"]
_MONTH_RE = "|".join(m[:3] + rf"(?:{m[3:]})?" for m in MONTHS)


def find_date(text: str, base: date) -> date | None:
    """The single day a question names: today, tomorrow, a weekday, an ISO or 'July 4' date."""
    t = text.lower()
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", t):
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass
    m = (re.search(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b", t)
         or re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_RE})\b", t))
    if m:
        month_word, day = (m[1], m[2]) if m[1][0].isalpha() else (m[2], m[1])
        month = next(i for i, name in enumerate(MONTHS, 1) if name.startswith(month_word[:3]))
        try:
            found = date(base.year, month, int(day))
            return found if found >= base else date(base.year + 1, month, int(day))
        except ValueError:
            pass
    if re.search(r"\bday after tomorrow\b", t):
        return base + timedelta(days=2)
    if re.search(r"\btomorrow\b", t):
        return base + timedelta(days=1)
    if re.search(r"\b(today|tonight)\b", t):
        return base
    for i, name in enumerate(WEEKDAYS):
        if re.search(rf"\b{name}\b", t):
            ahead = (i - base.weekday()) % 7
            if ahead == 0 and re.search(rf"\bnext {name}\b", t):
                ahead = 7
            return base + timedelta(days=ahead)
    return None


def count_tokens(text: str) -> int:
    """A rough token count for ``usage`` (words and punctuation)."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def words(text: str) -> list[str]:
    """Split into word-sized stream deltas whose concatenation is the text."""
    return re.findall(r"\s*\S+", text) or [text]


# --------------------------------------------------------------------------- agent

class Agent:
    """An agent is an id, a one-line description, a default port and an answer."""

    id = "agent"
    description = "a demo agent"
    default_port = 10000
    needs_question = True   # reject requests without a user message
    may_use_llm = True      # the local demo model never calls another model

    def answer(self, chat: Chat) -> str:
        raise NotImplementedError


def llm_enabled() -> bool:
    return os.environ.get("PLANO_AGENT_USE_LLM") == "1"


_client = None


def llm_client():
    """One async OpenAI client per process, pointed at plano's model proxy."""
    global _client
    if _client is None:
        from openai import AsyncOpenAI

        _client = AsyncOpenAI(
            base_url=os.environ.get("PLANO_LLM_URL", DEFAULT_LLM_URL),
            api_key=os.environ.get("PLANO_LLM_API_KEY") or "plano-demo",  # plano holds the real key
            max_retries=0,
            timeout=float(os.environ.get("PLANO_LLM_TIMEOUT", "30")),
        )
    return _client


def llm_messages(agent: Agent, chat: Chat, facts: str) -> list[dict]:
    """The prompt: our local data as grounding facts, then the conversation so far."""
    system = (
        f"You are {agent.id}, {agent.description}. Answer the user's latest question using only "
        "the FACTS below, which come from this service's own data; keep every number as given. "
        "Be concise and ignore parts of the question outside your domain.\n\nFACTS:\n" + facts
    )
    convo = []
    for m in chat.messages:
        text = text_of(m.get("content"))
        if m["role"] in ("user", "assistant") and text:
            msg = {"role": m["role"], "content": text}
            if m["role"] == "assistant" and isinstance(m.get("name"), str):
                msg["name"] = re.sub(r"[^\w-]", "_", m["name"])[:64]
            convo.append(msg)
    return [{"role": "system", "content": system}, *convo]


async def llm_deltas(agent: Agent, chat: Chat, facts: str) -> AsyncIterator[str]:
    """Stream the model proxy's answer, forwarding the trace headers plano sent us."""
    stream = await llm_client().chat.completions.create(
        model=os.environ.get("PLANO_AGENT_MODEL", ""),  # empty: plano's default provider
        messages=llm_messages(agent, chat, facts),
        stream=True,
        extra_headers=chat.headers,
    )
    try:
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    yield choice.delta.content
    finally:
        await stream.close()


# --------------------------------------------------------------------------- responses

class Reply:
    """Builds the JSON body or SSE chunks of one completion."""

    def __init__(self, agent: Agent, chat: Chat) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = chat.model or agent.id
        self.prompt_tokens = sum(count_tokens(text_of(m.get("content"))) for m in chat.messages)

    def usage(self, text: str) -> dict:
        done = count_tokens(text)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": done,
                "total_tokens": self.prompt_tokens + done}

    def completion(self, text: str) -> dict:
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": self.usage(text),
        }

    def chunk(self, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if usage is not None:
            body["usage"] = usage
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


async def answer_text(agent: Agent, chat: Chat, fallback: str) -> str:
    """The whole answer for a JSON reply: the LLM's if enabled and healthy, else ours."""
    if agent.may_use_llm and llm_enabled():
        try:
            text = "".join([d async for d in llm_deltas(agent, chat, fallback)])
            if text.strip():
                return text
        except Exception as exc:  # any LLM trouble: the demo still answers
            log.warning("%s: LLM call failed (%s); answering from local data", agent.id, exc)
    return fallback


async def answer_events(agent: Agent, chat: Chat, fallback: str, reply: Reply) -> AsyncIterator[bytes]:
    """SSE: a role delta, word deltas, a stop chunk with usage, then [DONE]."""
    yield reply.chunk({"role": "assistant", "content": ""})
    sent: list[str] = []
    if agent.may_use_llm and llm_enabled():
        try:
            async for delta in llm_deltas(agent, chat, fallback):
                sent.append(delta)
                yield reply.chunk({"content": delta})
        except Exception as exc:
            log.warning("%s: LLM stream failed (%s)", agent.id, exc)
    if not "".join(sent).strip():  # nothing (useful) came from the LLM: stream our own answer
        sent = words(fallback)
        for piece in sent:
            yield reply.chunk({"content": piece})
    yield reply.chunk({}, "stop", reply.usage("".join(sent)))
    yield b"data: [DONE]\n\n"


# --------------------------------------------------------------------------- app

def build_app(agent: Agent) -> Starlette:
    async def chat_completions(request: Request) -> Response:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > MAX_BODY:
            return error_response(413, "The request body is too large.", code="body_too_large")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return error_response(413, "The request body is too large.", code="body_too_large")
        try:
            chat = parse_chat(raw, dict(request.headers), needs_question=agent.needs_question)
        except BadRequest as exc:
            return error_response(400, exc.message, code=exc.code, param=exc.param)
        fallback = agent.answer(chat)
        reply = Reply(agent, chat)
        echo = {"x-request-id": chat.headers["x-request-id"]} if "x-request-id" in chat.headers else {}
        if chat.stream:
            return StreamingResponse(answer_events(agent, chat, fallback, reply), media_type="text/event-stream",
                                     headers={"cache-control": "no-cache", **echo})
        return JSONResponse(reply.completion(await answer_text(agent, chat, fallback)), headers=echo)

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": agent.id, "object": "model", "created": 0, "owned_by": "plano-examples"}]})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "agent": agent.id})

    async def http_error(_: Request, exc: HTTPException) -> Response:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind=kind)

    async def crash(_: Request, exc: Exception) -> Response:
        log.exception("%s: unhandled error", agent.id, exc_info=exc)
        return error_response(500, "The agent failed to answer.", kind="server_error", code="internal_error")

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: crash})


def main(agent: Agent, argv: list[str] | None = None) -> None:
    """``python -m examples.agents.<name> [--host H] [--port N]``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    parser = argparse.ArgumentParser(prog=f"python -m {spec.name}" if spec else None,
                                     description=f"{agent.id}: {agent.description}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=agent.default_port)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    llm = "on" if agent.may_use_llm and llm_enabled() else "off"
    print(f"{agent.id} serving on http://{args.host}:{args.port} (llm {llm})", file=sys.stderr, flush=True)
    uvicorn.run(build_app(agent), host=args.host, port=args.port, log_level=args.log_level, access_log=False)
