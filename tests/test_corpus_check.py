"""The routing corpus (training/corpus/) passes its own checker, and the checker catches what it
is for: broken structure and text shared with the held-out routing sets."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "training", "corpus", "check.py")


def _load():
    spec = importlib.util.spec_from_file_location("corpus_check", CHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _suite(name: str) -> dict:
    agents = []
    for i in range(8):
        agents.append({
            "id": f"agent_{i}", "default": i == 7,
            "description": f"Handles kind {i} of thing.",
            "requests": [f"request {k} for agent number {i} please" for k in range(12)],
            "followups": [{"prev_user": "earlier question here", "prev_assistant": "an answer",
                           "user": f"and the other one {i} {k}?"} for k in range(3)],
        })
    return {
        "suite": name, "sector": "testing",
        "agents": agents,
        "negatives": [f"general question number {k} about things" for k in range(15)],
        "switches": [{"prev_agent": "agent_0", "prev_user": "x", "prev_assistant": "y",
                      "user": f"now something else entirely {k}", "expected": "agent_1"} for k in range(4)],
        "multi": [{"user": f"do one thing and then another {k}", "expected": ["agent_0", "agent_2"],
                   "ordered": False} for k in range(8)],
        "side_details": [{"user": f"side detail request variant {k}", "expected": "agent_3"} for k in range(5)],
    }


def test_the_shipped_corpus_passes_its_checker(capsys):
    assert _load().main([]) == 0, capsys.readouterr().out


def test_a_well_formed_suite_passes():
    mod = _load()
    errs, texts = mod.check_suite("/x/good_suite.yaml", _suite("good_suite"))
    assert errs == []
    assert len(texts) == 8 * 15 + 15 + 4 + 8 + 5


@pytest.mark.parametrize("break_it, expected", [
    (lambda s: s["agents"][7].update(default=False), "exactly one agent must have default"),
    (lambda s: s["agents"][2]["requests"].pop(), "agent_2: 11 requests"),
    (lambda s: s["multi"][0].update(expected=["agent_0", "nobody"]), "multi with bad expected"),
    (lambda s: s["multi"][1].update(expected=["agent_0", "agent_0"]), "multi with bad expected"),
    (lambda s: s["switches"][0].update(expected="agent_0"), "switch with unknown or unchanged"),
    (lambda s: s["side_details"][0].update(expected="ghost"), "side detail with unknown agent"),
    (lambda s: s.update(suite="other_name"), "must equal the file name"),
    (lambda s: s["agents"][0].update(id="Bad-Id"), "unique snake_case"),
    (lambda s: s["negatives"].pop(), "14 negatives"),
])
def test_each_structural_break_is_reported(break_it, expected):
    mod = _load()
    s = _suite("bad_suite")
    break_it(s)
    errs, _ = mod.check_suite("/x/bad_suite.yaml", s)
    assert any(expected in e for e in errs), errs


def test_text_from_a_held_out_set_is_reported(tmp_path, monkeypatch, capsys):
    """A corpus text that appears in a held-out routing set (here a stand-in set) is refused."""
    mod = _load()
    root = tmp_path / "repo"
    (root / "tests" / "data").mkdir(parents=True)
    (root / "training" / "corpus" / "suites").mkdir(parents=True)
    leaked = "please move my dentist visit to next tuesday morning"
    (root / "tests" / "data" / "routing_x.jsonl").write_text(json.dumps(
        {"messages": [{"role": "user", "content": leaked.upper() + "!"}], "expected": ["a"]}) + "\n")
    (root / "tests" / "data" / "routing_x_agents.yaml").write_text(yaml.safe_dump(
        {"agents": [{"id": "a", "description": "Books dentist visits for patients."}]}))
    s = _suite("leaky_suite")
    s["agents"][0]["requests"][0] = leaked
    s["agents"][1]["description"] = "Books  dentist visits for patients."
    path = root / "training" / "corpus" / "suites" / "leaky_suite.yaml"
    path.write_text(yaml.safe_dump(s))
    monkeypatch.setattr(mod, "ROOT", str(root))
    monkeypatch.setattr(mod, "HERE", str(root / "training" / "corpus"))
    assert mod.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "appears in a held-out routing set" in out
    assert "agent_1 has a held-out set's description" in out
