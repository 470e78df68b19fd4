"""The planner: a prompt → steps over a listener's agents (no DAG language).

A step is ``{index, tool (agent id), action, request (the sub-request it answers), deps (indices
of steps whose outputs it needs), note}``.

- **Embedded** (offline, default): the embedded router's clause segmentation and ordering
  (:func:`gateway.routing.embedded_segment.split_pieces`): each clause that maps clearly to an
  agent becomes a step (consecutive clauses for one agent merge), clauses the router cannot
  place join the step before them. Dependencies: a clause introduced by a sequencing marker
  ("then", "after that", "next", "once", "finally") or that refers back to earlier results
  ("both", "them", "the results", "using ...") starts a new stage and depends on every step of
  the stages before; "and" / "also" / "plus" keep it in the same stage (runs side by side).
  "but first ..." / "before that ..." runs the clause before the one it follows.
- **LLM** (``overrides.agent_orchestration_model`` configured, ``tasks.planner: auto | llm``): the
  orchestrator model is asked for ``{"steps": [{"agent", "request", "depends_on"}]}`` through the
  LLM call unit (:class:`gateway.llm.call.LLMCaller`, failover included); the answer is validated
  (known agents, earlier dependencies only, no empty requests) and a broken one gets one repair
  request quoting the problem; after that the embedded planner decides.
- **Execution memory** (:mod:`.memory`) is applied to either plan: a step whose agent has a
  recovery that worked ``min_successes`` times gets it first, with the reason as the step's note.
"""

from __future__ import annotations

import logging
import re

import orjson

log = logging.getLogger("plano.tasks")

_SEQ = re.compile(r"\b(?:then|after|afterwards|next|once|finally|lastly|subsequently)\b")
_REFERS = re.compile(r"\b(?:both|them|those|these|the results?|the above|the answers?|the outputs?|using|"
                     r"based on|with (?:that|it|this|the (?:data|info|information|results?)))\b")
_STOP = frozenset("a an the my our your their his her its of for to in on at by with and or please me us i we "
                  "you can could would will should is are be it this that from into about all any some "
                  "what which who when where how do does".split())


def action_of(request: str) -> str:
    """A short slug for the trace: the sub-request's first content words (``fetch_invoice``)."""
    words = [w for w in re.findall(r"[a-z0-9]+", request.lower()) if w not in _STOP]
    return "_".join(words[:2]) or "answer"


def step(index: int, tool: str, request: str, deps=(), **extra) -> dict:
    out = {"index": index, "tool": tool, "action": action_of(request), "request": request.strip(),
           "deps": sorted(set(deps)), "status": "pending", "attempt": 0, "parent": None}
    out.update(extra)
    return out


def _alike(a: str, b: str) -> bool:
    """Two descriptions of the same capability (a primary and its backup): either may serve."""
    wa = {w for w in re.findall(r"[a-z]+", a.lower()) if w not in _STOP}
    wb = {w for w in re.findall(r"[a-z]+", b.lower()) if w not in _STOP}
    return bool(wa and wb) and len(wa & wb) >= 0.5 * min(len(wa), len(wb))


class _Undecided(Exception):
    """A words-only plan met a clause the words do not place (the encoder must be asked)."""


class PlanError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Planner:
    """Plans over one listener's agents (built once per listener per worker)."""

    def __init__(self, selector, *, mode: str = "auto") -> None:
        self.selector = selector
        self.ids = [s.id for s in selector.specs]
        self.default = selector.default_agent
        self.router = selector.embedded  # None with a single agent
        self.llm = selector.llm if mode in ("auto", "llm") else None

    # -- agents for a text ----------------------------------------------------------------------

    def pick(self, text: str, exclude=(), *, words_only: bool = False) -> str | None:
        """The agent whose description fits ``text`` clearly best (None: nobody clearly), not in
        ``exclude``. Unlike chat routing, the default agent competes like any other: a task step
        is only ever given to an agent because its description fits.

        ``words_only``: raise :class:`_Undecided` where the words decide nothing and the sentence
        encoder would be asked (the caller then plans again off the event loop)."""
        if self.router is None:
            return None
        # words first (~0.3 ms); the sentence encoder (milliseconds of numpy) only when they decide nothing
        found = self._pick(text, exclude, self.router._scores(text, semantic=False))
        if found is not None or (self.router.sentences is None and self.router.semantic is None):
            return found
        if words_only and self.router.sentences is not None:
            raise _Undecided
        return self._pick(text, exclude, self.router._scores(text))

    def _pick(self, text: str, exclude, scores) -> str | None:
        from gateway.routing.embedded import MARGIN

        order = [i for i in sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
                 if self.router.ids[i] not in exclude]
        if not order or scores[order[0]] < self.router.min_score:
            return None
        best = order[0]
        if len(order) > 1 and scores[best] < MARGIN * max(scores[order[1]], 0.0):
            runner = order[1]
            agents = self.router.agents
            if not _alike(agents[best].description, agents[runner].description):
                return None  # two different agents fit about as well: nobody clearly
            best = min(best, runner)  # a primary and its backup: the one declared first
        return self.router.ids[best]

    def candidates(self, text: str, exclude=()) -> list[str]:
        """Agents that could serve ``text``, best first: some evidence of their own, and at least half
        the best agent's. A weather agent whose description shares only a city with "find flights
        from NYC to Paris" has a little (sentence-encoder) evidence, but it is no replacement for
        the flight agent."""
        if self.router is None:
            return []
        scores = self.router._scores(text)
        floor = max(0.5 * self.router.min_score, 0.5 * max(scores))
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
        return [self.router.ids[i] for i in order if scores[i] >= floor and self.router.ids[i] not in exclude]

    # -- plans ----------------------------------------------------------------------------------

    async def plan(self, prompt: str, sub_agent: str | None, headers: dict, ctx=None) -> tuple[list[dict], str]:
        """(steps, planner name)."""
        if sub_agent:
            return [step(0, sub_agent, prompt)], "sub_agent"
        if len(self.ids) == 1:
            return [step(0, self.ids[0], prompt)], "single"
        if self.llm is not None:
            try:
                return await self._llm_plan(prompt, headers, ctx), "llm"
            except PlanError as exc:
                log.warning("LLM planner failed (%s); the embedded planner plans", exc.message)
        if self.router is not None and self.router.sentences is not None:
            # The sentence encoder is milliseconds of numpy per clause: off the event loop. Most
            # prompts are placed by their words alone (~0.3 ms a clause), so they are planned on
            # the loop; a thread hop per task cost more than the plan itself under load.
            try:
                return self.embedded(prompt, words_only=True), "embedded"
            except _Undecided:
                import asyncio

                return await asyncio.to_thread(self.embedded, prompt), "embedded"
        return self.embedded(prompt), "embedded"

    def embedded(self, prompt: str, *, words_only: bool = False) -> list[dict]:
        from gateway.routing.embedded_blocks import split_blocks
        from gateway.routing.embedded_segment import split_pieces

        pieces = split_pieces(split_blocks(prompt).ask) if self.router is not None else []
        steps: list[dict] = []
        stage_start = 0  # first step of the current stage
        background: list[str] = []
        for piece in pieces:
            if piece.background:
                background.append(piece.text)
                continue
            agent = self.pick(piece.text, words_only=words_only)
            if agent is None:
                if steps:
                    steps[-1]["request"] += ", " + piece.text
                    continue
                if words_only and self.router is not None and self.router.sentences is not None:
                    raise _Undecided  # routing the whole prompt may use the encoder
                agent = self._whole(prompt)
            sequenced = bool(_SEQ.search(piece.joiner)) or bool(steps and _REFERS.search(piece.text))
            if steps and steps[-1]["tool"] == agent and not sequenced and not piece.goes_first:
                steps[-1]["request"] += ", " + piece.text
                continue
            if piece.goes_first and steps:
                # "..., but first X": X runs before the step it follows, which then needs it
                prev = steps[-1]
                new = step(prev["index"], agent, piece.text, prev["deps"])
                prev["index"] += 1
                prev["deps"] = sorted({*prev["deps"], new["index"]})
                steps.insert(len(steps) - 1, new)
                continue
            if sequenced and steps:
                stage_start = len(steps)
            deps = range(stage_start) if stage_start else ()
            steps.append(step(len(steps), agent, piece.text, deps))
        if not steps:
            if words_only and self.router is not None and self.router.sentences is not None:
                raise _Undecided
            steps = [step(0, self._whole(prompt), prompt)]
        if background:
            for s in steps:
                s["request"] = f"{s['request']} (context: {'; '.join(background)})"
        for s in steps:
            s["action"] = action_of(s["request"])
        return steps

    def _whole(self, prompt: str) -> str:
        if self.router is None:
            return self.default
        decision = self.router.route([{"role": "user", "content": prompt}])
        return decision.agents[0] if decision.agents else self.default

    # -- reformulating a refused request ---------------------------------------------------------

    @staticmethod
    def reformulate(request: str, error: str, prompt: str) -> str:
        """A refused sub-request put another way, offline: self-contained (the task it is part of,
        when the sub-request is only a piece of it) and carrying the agent's own refusal, so an
        agent that said what it lacks ("which city?", "too many questions at once") gets it
        answered or can answer the part it can."""
        reason = re.sub(r"^Agent '[^']*' failed with HTTP \d+: ", "", error).strip()[:300]
        parts = [f"Request: {request.strip()}"]
        if prompt.strip() and prompt.strip() != request.strip():
            parts.append(f"It is part of this task: {prompt.strip()[:2000]}")
        parts.append(f"Your previous answer refused it: {reason}")
        parts.append("Answer the request as well as you can with this information; if part of it is "
                     "impossible, answer the rest and say what is missing.")
        return "\n".join(parts)

    async def reformulate_llm(self, request: str, error: str, agent: str, prompt: str, headers: dict,
                              ctx=None) -> str:
        """The orchestration model rewrites a refused sub-request for ``agent`` (plain text back)."""
        spec = next((a for a in self.selector.specs if a.id == agent), None)
        ask = ("An agent refused a request. Rewrite the request so that this agent can answer it: keep "
               "its intent, make it concrete and self-contained, and address the agent's complaint. "
               "Answer with the rewritten request only.\n\n"
               f"Agent: {agent}: {(spec.description if spec else '').strip()}\n"
               f"Whole task: {prompt[:2000]}\nRequest: {request}\nThe agent's error: {error[:500]}")
        text = (await self._ask([{"role": "user", "content": ask}], headers, ctx)).strip().strip('"').strip()
        if not text:
            raise PlanError("planner_invalid", "the model returned an empty request")
        return text[:4000]

    # -- LLM ------------------------------------------------------------------------------------

    async def _llm_plan(self, prompt: str, headers: dict, ctx) -> list[dict]:
        agents = "\n".join(f"- {s.id}: {s.description.strip()}" for s in self.selector.specs)
        ask = (
            "You plan workflows over these agents:\n" + agents + "\n\nSplit the task below into steps. Each step "
            "is one agent call with the sub-request that agent must answer; a step that needs another step's "
            "output lists that step's index (0-based, earlier steps only) in depends_on; independent steps have "
            'no dependency. Answer with JSON only: {"steps": [{"agent": "<id>", "request": "<text>", '
            '"depends_on": [<int>...]}]}\n\nTask: ' + prompt)
        messages = [{"role": "user", "content": ask}]
        content = await self._ask(messages, headers, ctx)
        try:
            return self._validate(content)
        except PlanError as first:
            messages += [{"role": "assistant", "content": content},
                         {"role": "user", "content": f"That plan is invalid: {first.message}. Answer with the "
                                                     "corrected JSON only."}]
            return self._validate(await self._ask(messages, headers, ctx))

    async def _ask(self, messages: list[dict], headers: dict, ctx) -> str:
        from gateway.upstream import UpstreamError

        llm = self.llm
        target = llm.target
        call = ctx.llm_call(target.provider, target.name, target.model_id) if ctx is not None else None
        base = {"content-type": "application/json", "x-request-id": headers.get("x-request-id", "")}
        if call is not None:
            call.inject(base)

        def build(t):
            out = dict(base)
            out.update(t.auth_headers)
            out.update(t.extra_headers)
            return out, orjson.dumps({"model": t.model_id, "messages": messages, "temperature": 0.01})

        try:
            async with llm.caller.open(target, llm.fallbacks, build, timeout=llm.timeout) as resp:
                data = await resp.read()
                status = resp.status
        except UpstreamError as exc:
            if call is not None:
                call.finish(None, error=str(exc)[:300], error_class="other")
            raise PlanError("planner_unavailable", str(exc)) from None
        if status >= 400:
            if call is not None:
                call.finish(status, error=f"planner model answered HTTP {status}")
            raise PlanError("planner_unavailable", f"planner model answered HTTP {status}")
        try:
            completion = orjson.loads(data)
            content = completion["choices"][0]["message"]["content"] or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise PlanError("planner_invalid", "planner model answered without a message") from None
        if call is not None:
            call.finish(status, completion=completion, response_bytes=len(data))
        return content

    def _validate(self, content: str) -> list[dict]:
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`")
            text = text[text.find("{"):]
        start, end = text.find("{"), text.rfind("}")
        try:
            data = orjson.loads(text[start:end + 1]) if start >= 0 else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
            raise PlanError("planner_invalid", 'expected {"steps": [...]} with at least one step')
        out = []
        for i, raw in enumerate(data["steps"]):
            if not isinstance(raw, dict):
                raise PlanError("planner_invalid", f"step {i} is not an object")
            agent, request = raw.get("agent"), raw.get("request")
            if agent not in self.ids:
                raise PlanError("planner_invalid", f"step {i}: unknown agent {agent!r} (known: {', '.join(self.ids)})")
            if not isinstance(request, str) or not request.strip():
                raise PlanError("planner_invalid", f"step {i}: request must be a non-empty string")
            deps = raw.get("depends_on") or []
            if not isinstance(deps, list) or any(not isinstance(d, int) or d < 0 or d >= i for d in deps):
                raise PlanError("planner_invalid", f"step {i}: depends_on must list earlier step indices")
            out.append(step(i, agent, request, deps))
        return out
