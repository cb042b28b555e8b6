"""The drills' own bookkeeping (bench/drill_support.py): if the tally or the sink miscounts, a
drill can pass while messages are lost. No database: these run without the product."""

import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage

import pytest

from bench.drill_support import SinkLog, tally
from bench.processes import free_port, port_open, wait_for


def record(xid: str, rcpt: str, t: float = 0.0) -> dict:
    return {"t": t, "xid": xid, "mid": f"<{xid}-{t}@drill.test>", "rcpt": [rcpt]}


def test_tally_separates_delivered_duplicated_dead_and_lost():
    accepted = {"a@drill.test", "b@drill.test", "c@drill.test", "d@drill.test"}
    records = [
        record("m-a", "a@drill.test", 1),
        record("m-a", "a@drill.test", 2),  # resent after a crash
        record("m-b", "b@drill.test", 3),
        record("m-x", "x@drill.test", 4),  # never accepted
    ]
    result = tally(accepted, records, failed_addresses={"c@drill.test"})
    assert result["delivered"] == 2
    assert result["duplicates"] == 1
    assert result["extra_copies"] == 1
    assert result["dead_lettered"] == 1
    assert result["lost"] == 1
    assert result["lost_sample"] == ["d@drill.test"]
    assert result["stray"] == 1
    assert result["addresses_with_several_messages"] == 0


def test_tally_counts_a_delivered_message_once_even_if_it_later_failed():
    result = tally({"a@drill.test"}, [record("m-a", "a@drill.test")], failed_addresses={"a@drill.test"})
    assert (result["delivered"], result["dead_lettered"], result["lost"]) == (1, 0, 0)


def test_tally_flags_two_message_ids_for_one_address():
    records = [record("m-1", "a@drill.test"), record("m-2", "a@drill.test")]
    result = tally({"a@drill.test"}, records, failed_addresses=set())
    assert result["addresses_with_several_messages"] == 1
    assert result["duplicates"] == 0


def _start_sink(port: int, out) -> subprocess.Popen:
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.drill_support", "sink", "--port", str(port), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not wait_for(lambda: port_open(port), 20):
        sink.kill()
        pytest.fail("the sink did not start")
    return sink


def _send(port: int, xid: str, to: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "drill@alertflow.test", to, "drill"
    message["Message-ID"] = f"<{xid}-{time.time()}@alertflow.test>"
    message["X-AlertFlow-Message-Id"] = xid
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


def test_sink_keeps_every_copy_across_a_restart_on_the_same_port(tmp_path):
    port, out = free_port(), tmp_path / "sink.jsonl"
    sink = _start_sink(port, out)
    try:
        _send(port, "m-1", "a@drill.test")
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
        assert not port_open(port)
        sink = _start_sink(port, out)
        _send(port, "m-1", "a@drill.test")
    finally:
        sink.kill()
        sink.wait(10)
    records = SinkLog(out).read()
    assert [(r["xid"], r["rcpt"]) for r in records] == [("m-1", ["a@drill.test"])] * 2
    assert records[0]["mid"] != records[1]["mid"]
    assert tally({"a@drill.test"}, records, set())["duplicates"] == 1
