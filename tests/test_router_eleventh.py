"""Router behaviour added in the eleventh session (issue 12): each test fails without its change."""

from __future__ import annotations

import pytest

from gateway.routing.embedded_segment import explicit_order


@pytest.mark.parametrize("text", [
    "book a room near the congress centre in Vienna, and once that's done tell me how to get there",
    "renew the TLS cert on the api box and once it is renewed email Sam the new expiry date",
    "reserve a car for Friday and when it's booked add the pickup to my calendar",
])
def test_a_clause_that_opens_on_the_earlier_one_being_done_states_an_order(text):
    assert explicit_order(text)


@pytest.mark.parametrize("text", [
    "book a room near the congress centre in Vienna and tell me how to get there",
    "reserve a car for Friday and add the pickup to my calendar",
    "once the invoice is paid I'm happy",  # one clause: nothing to order
])
def test_asks_joined_without_such_a_clause_state_no_order(text):
    assert not explicit_order(text)
