"""How far apart the relay's rounds are (notifications/relay.py, round_gap): one row a round
(a quiet system) keeps them ROUND_SECONDS apart, more rows space them out up to
ROUND_MAX_SECONDS so that the next round's single sends share a task, and a full round, with a
backlog behind it, is followed as soon as before."""

from notifications import queue, relay


def test_a_quiet_system_keeps_the_shortest_gap():
    assert relay.round_gap(0) == relay.round_gap(1) == relay.ROUND_SECONDS


def test_the_gap_grows_with_the_rows_of_the_last_round_up_to_its_cap():
    gaps = [relay.round_gap(rows) for rows in range(1, 20)]

    assert gaps == sorted(gaps)
    assert relay.round_gap(2) == 2 * relay.ROUND_SECONDS
    assert max(gaps) == relay.ROUND_MAX_SECONDS


def test_a_full_round_is_followed_at_once_so_a_backlog_drains_as_fast_as_before():
    assert relay.round_gap(queue.RELAY_ROWS) == relay.ROUND_SECONDS
    assert relay.round_gap(queue.RELAY_ROWS - 1) == relay.ROUND_MAX_SECONDS
