"""How far apart the relay's rounds are (notifications/relay.py, round_gap): one row a round
(a quiet system) keeps them ROUND_SECONDS apart, more rows space them out up to
ALERTFLOW_RELAY_ROUND_MAX_SECONDS so that the next round's single sends share a task, and a full
round, with a backlog behind it, is followed as soon as before."""

import pytest
from django.conf import settings as django_settings

from notifications import queue, relay

from .test_relay_failures import settings_in_a_fresh_process


def test_a_quiet_system_keeps_the_shortest_gap():
    assert relay.round_gap(0) == relay.round_gap(1) == relay.ROUND_SECONDS


def test_the_gap_grows_with_the_rows_of_the_last_round_up_to_its_cap():
    gaps = [relay.round_gap(rows) for rows in range(1, 20)]

    assert gaps == sorted(gaps)
    assert relay.round_gap(2) == 2 * relay.ROUND_SECONDS
    assert max(gaps) == django_settings.ALERTFLOW_RELAY_ROUND_MAX_SECONDS == 0.1


def test_a_full_round_is_followed_at_once_so_a_backlog_drains_as_fast_as_before():
    assert relay.round_gap(queue.RELAY_ROWS) == relay.ROUND_SECONDS
    assert relay.round_gap(queue.RELAY_ROWS - 1) == django_settings.ALERTFLOW_RELAY_ROUND_MAX_SECONDS


def test_the_cap_is_a_setting_and_its_lowest_keeps_every_round_25_ms_apart(settings):
    settings.ALERTFLOW_RELAY_ROUND_MAX_SECONDS = 0.025

    assert {relay.round_gap(rows) for rows in range(0, 20)} == {relay.ROUND_SECONDS}

    settings.ALERTFLOW_RELAY_ROUND_MAX_SECONDS = 0.5
    assert relay.round_gap(19) == 19 * relay.ROUND_SECONDS


@pytest.mark.parametrize("value", ["0", "0.01", "2", "inf", "nan", "soon"])
def test_a_cap_outside_25_ms_to_a_second_is_refused_at_start(value):
    result = settings_in_a_fresh_process(ALERTFLOW_RELAY_ROUND_MAX_SECONDS=value)

    assert result.returncode != 0
    assert "ALERTFLOW_RELAY_ROUND_MAX_SECONDS must be a number of seconds from 0.025 to 1" in result.stderr
