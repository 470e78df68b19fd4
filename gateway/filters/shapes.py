"""What a filter's answer must look like before it may replace the payload.

A filter that answers 2xx with something else — not JSON, a list, a chat request
without messages — has failed, not passed: its answer is never silently forwarded
(Plano would send it on and let the model fail). Each check returns a short
problem description, or None when the answer is usable. The filter clients
already guarantee a JSON object.
"""

from __future__ import annotations


def _messages_problem(messages) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"'messages[{i}]' must be an object with a string 'role'"
    return None


def chat_request(obj: dict) -> str | None:
    """A chat-completions request, as the model listener checks one at the edge."""
    problem = _messages_problem(obj.get("messages"))
    if problem:
        return problem
    model = obj.get("model")
    if model is not None and not isinstance(model, str):
        return "'model' must be a string"
    stream = obj.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return "'stream' must be a boolean"
    return None


def agent_request(obj: dict) -> str | None:
    """An agent listener's ``{model, messages}``: only ``messages`` is read back."""
    return _messages_problem(obj.get("messages"))


def completion_text(obj: dict) -> str | None:
    """A ``chat.completion`` whose first choice carries the message text (an intermediate agent's answer)."""
    try:
        content = obj["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return "expected 'choices[0].message.content'"
    return None if isinstance(content, str) else "'choices[0].message.content' must be a string"


def chunk_text(obj: dict) -> str | None:
    """The window of a streamed answer: a ``chat.completion.chunk`` with ``choices[0].delta.content``."""
    try:
        content = obj["choices"][0]["delta"]["content"]
    except (KeyError, IndexError, TypeError):
        return "expected 'choices[0].delta.content'"
    return None if isinstance(content, str) else "'choices[0].delta.content' must be a string"
