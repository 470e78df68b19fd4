"""Thirteenth session (issue 12): clause segmentation keeps numbers and short quoted phrases whole.

A turn was cut at the comma of a thousands separator ("my whole $2,100 deposit" -> "my whole $2"
| "100 deposit") and at an "and" inside a quoted phrase ("for 'wear and tear'" -> "... 'wear" |
"tear'"): each fragment then went to the encoder as a clause of its own, costing a forward pass
and offering the split gate a second "intent" that was never there.
"""

from __future__ import annotations

from gateway.routing.embedded_segment import split_pieces


def _texts(turn: str) -> list[str]:
    return [p.text for p in split_pieces(turn)]


def test_a_thousands_separator_is_part_of_the_number():
    assert _texts("Transfer 1,500 euros to savings and check my balance") == \
        ["transfer 1500 euros to savings", "check my balance"]
    assert _texts("My landlord kept my whole $2,100 deposit") == ["my landlord kept my whole $2100 deposit"]
    # a list of small numbers is no thousands separator: "1,2" keeps its comma
    assert _texts("seats 1,2 please") == ["seats 1,2 please"]


def test_no_clause_boundary_inside_a_short_quoted_phrase():
    pieces = split_pieces("My landlord kept my whole $2,100 deposit for 'wear and tear'. I moved out 6 weeks ago.")
    assert [p.text for p in pieces] == ["my landlord kept my whole $2100 deposit for 'wear and tear'",
                                        "i moved out 6 weeks ago"]
    assert pieces[1].background
    # sentence marks, commas and "and" inside the quote; the boundaries outside it still cut
    assert _texts('reply "Thanks, see you Monday. Bring snacks and maps!" to Anna and then book a table') == \
        ['reply "thanks, see you monday. bring snacks and maps!" to anna', "book a table"]
    assert _texts('translate "the invoice is attached and paid" into polish, then email it to Kasia') == \
        ['translate "the invoice is attached and paid" into polish', "email it to kasia"]


def test_possessives_and_unclosed_quotes_are_no_quoted_phrase():
    # "kids'" closes no quote that opened before it: the "and" between the two asks still cuts
    assert _texts("clean the kids' room and book a plumber") == ["clean the kids' room", "book a plumber"]
    assert _texts("it said 'error and then quit and restart the app") == \
        ["it said 'error", "quit", "restart the app"]
