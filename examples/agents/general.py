"""general_agent: the default agent of the demo for greetings, small talk and help.

Plano routes here whatever no specialist claims, so its main job is to be polite
and to say what the other demo agents can do.  Replies are scripted, so they are
the same every time.
"""

from __future__ import annotations

import re

from examples.agents.common import Agent, Chat, main, stable_int, today

HELP = (
    "This plano demo has four agents:\n"
    "- weather_agent: current weather and forecasts, e.g. 'What's the weather in Paris this weekend?'\n"
    "- flight_agent: flight schedules, e.g. 'Flights from NYC to Paris tomorrow'\n"
    "- currency_agent: exchange rates and conversions, e.g. 'Convert 100 EUR to USD'\n"
    "- general_agent (me): greetings, small talk and this help.\n"
    "Plano picks the right agent for each question, and several in a row for a question like "
    "'Flights from London to Tokyo on Friday, and the weather there?'"
)
JOKES = [
    "Why did the weather report go to therapy? It had too many unresolved fronts.",
    "I would tell you a UDP joke, but you might not get it.",
    "Why do airplanes never get lost? They always follow their flight plan... mostly.",
]
FACTS = {
    r"\bwhat('?s| is) plano\b|\babout plano\b": (
        "Plano is a gateway for multi-agent apps: it receives your chat request, decides which agent(s) "
        "should answer, calls them in order (passing earlier answers along), and proxies their LLM calls "
        "to the model providers you configure."),
    r"\b(what('?s| is| are) an? agents?|what do agents do)\b": (
        "Here an agent is a small HTTP service that speaks the OpenAI chat completions API and knows one "
        "domain well, like weather or flights. Plano routes each question to the agents that fit it."),
    r"\bhow (does|do) (the )?rout": (
        "Plano compares your question with each agent's description and picks the best match; a question "
        "that spans domains goes to several agents in sequence, and anything else comes to me, the default."),
}
SCRIPT = [  # (pattern, reply) checked in order
    (r"^\s*(hi|hello|hey|hiya|howdy|greetings|good (morning|afternoon|evening)|yo)\b",
     "Hello! I'm the general assistant of the plano demo. Ask me for help to see what the demo can do, "
     "or ask about the weather, flights or currency exchange."),
    (r"\bhow are you\b|\bhow'?s it going\b",
     "I'm doing well, thanks for asking! I run offline, so I never have a bad network day."),
    (r"\b(thanks|thank you|thx|cheers|much appreciated)\b",
     "You're welcome! Let me know if there's anything else I can help with."),
    (r"\b(bye|goodbye|see you|farewell)\b", "Goodbye, and safe travels!"),
    (r"\b(who|what) are you\b|\byour name\b",
     "I'm general_agent, the default agent of the plano demo: I handle greetings, small talk and help."),
    (r"\b(help|what can you do|what can i ask|capabilit|features)\b", HELP),
]


class GeneralAgent(Agent):
    id = "general_agent"
    description = "the general assistant of the demo: greetings, thanks, small talk, help about what the demo can do"
    default_port = 10540

    def answer(self, chat: Chat) -> str:
        q = chat.question.lower()
        for pattern, reply in SCRIPT:
            if re.search(pattern, q):
                return reply
        for pattern, reply in FACTS.items():
            if re.search(pattern, q):
                return reply
        if re.search(r"\bjoke|funny|make me laugh\b", q):
            return JOKES[stable_int(q) % len(JOKES)]
        if re.search(r"\bwhat('?s| is) (the )?(date|day)\b|\bwhat day is it\b", q):
            day = today()
            return f"Today is {day.strftime('%A')}, {day.day} {day.strftime('%B %Y')}."
        return ("I'm the demo's general assistant and I answer from a short offline script, so I can't really "
                "help with that one.\n" + HELP)


agent = GeneralAgent()

if __name__ == "__main__":
    main(agent)
