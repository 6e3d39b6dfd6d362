"""Every presence tunable, read from the environment once, with its default.

The bounds the product promises, as another tab sees them:

- a tab closed without Leave is gone within ``CLOSE_BOUND`` (5 s): the page
  says goodbye on its way out, so the close is seen at once, then the grace
  runs out, then the next sweep and the next fan-out follow;
- a connection that breaks (no goodbye) gets the longer network grace, because
  Reflex's client retries with a growing backoff (0.2, 0.6, 1.2, 2.0, 3.0,
  4.2 s after the drop), so a drop just under 3 s is back only after 4.2 s;
- a tab lost silently (no close frame ever arrives) is gone within
  ``PRESENCE_SILENT_LOSS`` (30 s): Reflex's server-driven socket ping notices
  it after at most interval + timeout, then the network grace, sweep, fan-out;
- with several workers, a worker that died has its tabs' entries removed by
  the others once it has been silent for the worker timeout, within the same
  silent-loss bound; a live worker slow to reach Redis for less than that keeps
  its tabs.

Settings that cannot keep those bounds are refused at start.
"""

from __future__ import annotations

import dataclasses
import os

from reflex_base.environment import environment

from presence_app.registry import WORKER_TIMEOUT

CLOSE_BOUND = 5.0
# Time left for a socket close to reach the backend and for the fan-out
# to reach the browsers; measured well below this on two cores.
TRANSIT_ALLOWANCE = 1.0

# Reflex's engine.io ping: it defaults to 25 s + 120 s, far beyond the silent
# loss bound, so the app lowers it unless the operator set it.
os.environ.setdefault("REFLEX_SOCKET_INTERVAL", "10")
os.environ.setdefault("REFLEX_SOCKET_TIMEOUT", "10")


class SettingsError(ValueError):
    """A combination of settings that breaks a promised bound."""


@dataclasses.dataclass(frozen=True)
class Settings:
    grace: float = 3.0
    network_grace: float = 5.5
    sweep_interval: float = 0.5
    silent_loss: float = 30.0
    fanout_interval: float = 0.1
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    worker_timeout: float = WORKER_TIMEOUT
    redis_prefix: str = "presence:"

    def check(self) -> Settings:
        """Return self, or raise naming the bound these settings break."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and value <= 0:
                raise SettingsError(f"{field.name} must be positive")
        close = self.grace + self.sweep_interval + self.fanout_interval
        if close + TRANSIT_ALLOWANCE > CLOSE_BOUND:
            raise SettingsError(
                f"PRESENCE_GRACE + PRESENCE_SWEEP_INTERVAL + PRESENCE_FANOUT_INTERVAL"
                f" = {close:g} s leaves no time to keep the {CLOSE_BOUND:g} s bound"
                " for a closed tab; lower the grace or the sweep interval"
            )
        if self.network_grace < self.grace:
            raise SettingsError(
                "PRESENCE_NETWORK_GRACE must be at least PRESENCE_GRACE: a broken"
                " connection deserves as long to come back as a closed page"
            )
        broken = self.network_grace + self.sweep_interval + self.fanout_interval
        silent = self.ping_interval + self.ping_timeout + broken
        if silent + TRANSIT_ALLOWANCE > self.silent_loss:
            raise SettingsError(
                f"REFLEX_SOCKET_INTERVAL + REFLEX_SOCKET_TIMEOUT + network grace +"
                f" sweep + fan-out = {silent:g} s breaks PRESENCE_SILENT_LOSS ="
                f" {self.silent_loss:g} s; lower the ping settings"
            )
        if self.worker_timeout < 4 * self.sweep_interval:
            raise SettingsError(
                "PRESENCE_WORKER_TIMEOUT must be at least four sweep intervals: a"
                " live worker touches the registry once per sweep"
            )
        dead = max(self.worker_timeout, self.grace) + self.sweep_interval
        if dead + self.fanout_interval + TRANSIT_ALLOWANCE > self.silent_loss:
            raise SettingsError(
                f"PRESENCE_WORKER_TIMEOUT = {self.worker_timeout:g} s leaves a dead"
                f" worker's tabs online past PRESENCE_SILENT_LOSS ="
                f" {self.silent_loss:g} s; lower it"
            )
        return self


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None


def load() -> Settings:
    """Read the settings from the environment and check them."""
    defaults = Settings()
    return Settings(
        grace=_seconds("PRESENCE_GRACE", defaults.grace),
        network_grace=_seconds("PRESENCE_NETWORK_GRACE", defaults.network_grace),
        sweep_interval=_seconds("PRESENCE_SWEEP_INTERVAL", defaults.sweep_interval),
        silent_loss=_seconds("PRESENCE_SILENT_LOSS", defaults.silent_loss),
        fanout_interval=_seconds("PRESENCE_FANOUT_INTERVAL", defaults.fanout_interval),
        ping_interval=environment.REFLEX_SOCKET_INTERVAL.get().total_seconds(),
        ping_timeout=environment.REFLEX_SOCKET_TIMEOUT.get().total_seconds(),
        worker_timeout=_seconds("PRESENCE_WORKER_TIMEOUT", defaults.worker_timeout),
        redis_prefix=os.environ.get("PRESENCE_REDIS_PREFIX", defaults.redis_prefix),
    ).check()
