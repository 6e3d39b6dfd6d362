"""Settings: defaults keep the promised bounds; a breaking combination is refused."""

from __future__ import annotations

import pytest

from presence_app import settings


def test_the_defaults_keep_every_bound():
    loaded = settings.load()

    assert loaded.grace == 3.0
    assert loaded.silent_loss == 30.0


def test_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRESENCE_GRACE", "2")
    monkeypatch.setenv("PRESENCE_SWEEP_INTERVAL", "0.25")

    loaded = settings.load()

    assert (loaded.grace, loaded.sweep_interval) == (2.0, 0.25)


REFUSED = [
    pytest.param("PRESENCE_GRACE", "10", "closed tab", id="grace-breaks-close-bound"),
    pytest.param(
        "REFLEX_SOCKET_TIMEOUT", "60", "PRESENCE_SILENT_LOSS", id="ping-too-slow"
    ),
    pytest.param("PRESENCE_GRACE", "soon", "PRESENCE_GRACE", id="not-a-number"),
    pytest.param("PRESENCE_SWEEP_INTERVAL", "0", "sweep_interval", id="zero-interval"),
    pytest.param(
        "PRESENCE_NETWORK_GRACE",
        "1",
        "PRESENCE_NETWORK_GRACE",
        id="network-grace-below-grace",
    ),
    pytest.param(
        "PRESENCE_WORKER_TIMEOUT",
        "40",
        "PRESENCE_WORKER_TIMEOUT",
        id="worker-timeout-breaks-silent-loss-bound",
    ),
    pytest.param(
        "PRESENCE_WORKER_TIMEOUT",
        "1",
        "four sweep intervals",
        id="worker-timeout-within-a-few-sweeps",
    ),
]


@pytest.mark.parametrize(("variable", "value", "message"), REFUSED)
def test_a_setting_that_breaks_a_bound_is_refused_naming_it(
    monkeypatch, variable, value, message
):
    monkeypatch.setenv(variable, value)

    with pytest.raises(settings.SettingsError, match=message):
        settings.load()
