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


def test_a_grace_too_long_for_the_close_bound_is_refused(monkeypatch):
    monkeypatch.setenv("PRESENCE_GRACE", "10")

    with pytest.raises(settings.SettingsError, match="closed tab"):
        settings.load()


def test_a_ping_too_slow_for_the_silent_loss_bound_is_refused(monkeypatch):
    monkeypatch.setenv("REFLEX_SOCKET_TIMEOUT", "60")

    with pytest.raises(settings.SettingsError, match="PRESENCE_SILENT_LOSS"):
        settings.load()


def test_a_value_that_is_not_a_number_is_refused(monkeypatch):
    monkeypatch.setenv("PRESENCE_GRACE", "soon")

    with pytest.raises(settings.SettingsError, match="PRESENCE_GRACE"):
        settings.load()


def test_a_zero_interval_is_refused(monkeypatch):
    monkeypatch.setenv("PRESENCE_SWEEP_INTERVAL", "0")

    with pytest.raises(settings.SettingsError, match="sweep_interval"):
        settings.load()


def test_a_network_grace_shorter_than_the_grace_is_refused(monkeypatch):
    monkeypatch.setenv("PRESENCE_NETWORK_GRACE", "1")

    with pytest.raises(settings.SettingsError, match="PRESENCE_NETWORK_GRACE"):
        settings.load()


def test_a_worker_timeout_too_long_for_the_silent_loss_bound_is_refused(monkeypatch):
    monkeypatch.setenv("PRESENCE_WORKER_TIMEOUT", "40")

    with pytest.raises(settings.SettingsError, match="PRESENCE_WORKER_TIMEOUT"):
        settings.load()


def test_a_worker_timeout_within_a_few_sweeps_is_refused(monkeypatch):
    monkeypatch.setenv("PRESENCE_WORKER_TIMEOUT", "1")

    with pytest.raises(settings.SettingsError, match="four sweep intervals"):
        settings.load()
