"""plano-demo: an offline, deterministic OpenAI-compatible model for the demo.

The demo config points its default model provider here, so plano's model listener
(and agents running with ``PLANO_AGENT_USE_LLM=1``) work with no API key and no
network.  It is not a language model: it restates grounded facts when the prompt
carries them, and otherwise politely echoes the last user message.
"""

from __future__ import annotations

import re

from examples.agents.common import Agent, Chat, main, text_of

MODEL_ID = "plano-demo"
ECHO_WORDS = 40


def grounding(chat: Chat) -> str | None:
    """The FACTS block of a system prompt (as the demo agents write them), if any."""
    for m in chat.messages:
        if m["role"] in ("system", "developer"):
            found = re.search(r"\bFACTS:\s*\n(.+)", text_of(m.get("content")), re.S)
            if found and found[1].strip():
                return found[1].strip()
    return None


class LocalModel(Agent):
    id = MODEL_ID
    description = "the offline demo model of plano (deterministic, no API key needed)"
    default_port = 10500
    needs_question = False  # a model must also answer prompts without a user turn
    may_use_llm = False     # it is the LLM

    def answer(self, chat: Chat) -> str:
        facts = grounding(chat)
        if facts:
            return facts
        said = chat.question.split()
        if not said:
            return f"Hello from {MODEL_ID}, the local demo model of plano. Send a user message and I will reply."
        quote = " ".join(said[:ECHO_WORDS]) + (" …" if len(said) > ECHO_WORDS else "")
        return (f'You said: "{quote}". I am {MODEL_ID}, the local demo model of plano: I answer offline and '
                "deterministically, so I can only echo you. Configure a real model provider key for full answers.")


agent = LocalModel()

if __name__ == "__main__":
    main(agent)
