"""Whether message-validation scans: auto finds a clamd that answers, else OFF, never silently."""

from __future__ import annotations

from prometheus_client import REGISTRY

from streams.validation.scan_switch import DEBIAN_SOCKET, announce, candidates, decide
from streams.validation.settings import ClamdSettings

CONF = "tcp:127.0.0.1:3310"


def test_auto_scans_with_the_first_clamd_that_answers() -> None:
    state = decide("auto", {CONF: None, DEBIAN_SOCKET: "ClamAV 1.4.3/27000"}, CONF)
    assert state.on and state.address == DEBIAN_SOCKET and "ClamAV 1.4.3" in state.why
    assert decide("auto", {CONF: "ClamAV 1.4.3", DEBIAN_SOCKET: "ClamAV 1.0"}, CONF).address == CONF


def test_auto_without_an_answer_is_off_and_says_how_to_fix_it() -> None:
    state = decide("auto", {CONF: None, DEBIAN_SOCKET: None}, CONF)
    assert not state.on
    assert state.headline.startswith("virus scanning OFF")
    assert CONF in state.why and DEBIAN_SOCKET in state.why and "MAILGATE_VALIDATION__CLAMD__ADDRESS" in state.why


def test_true_scans_even_while_clamd_is_away_and_false_is_off_with_the_key() -> None:
    held = decide(True, {CONF: None}, CONF)
    assert held.on and "held" in held.why
    off = decide(False, {}, CONF)
    assert not off.on and "MAILGATE_VALIDATION__VIRUS_SCAN" in off.why


def test_debian_socket_is_asked_besides_a_configured_address() -> None:
    assert candidates(ClamdSettings(address=CONF)) == [CONF, DEBIAN_SOCKET]
    assert candidates(ClamdSettings()) == ["unix:/run/clamav/clamd.ctl"]  # /var/run is /run on Debian


def test_the_metric_says_off_with_the_reason_and_forgets_the_old_state() -> None:
    announce(decide("auto", {CONF: "ClamAV 1.4.3"}, CONF))
    off = decide("auto", {CONF: None}, CONF)
    announce(off)
    assert REGISTRY.get_sample_value("mailgate_virus_scanning", {"state": "OFF", "reason": off.why}) == 0
    assert not [s for m in REGISTRY.collect() if m.name == "mailgate_virus_scanning"
                for s in m.samples if s.labels["state"] == "ON"]
