"""The one registry and fan-out of this worker, built from the settings."""

from __future__ import annotations

from reflex_base.config import get_config

from presence_app import settings
from presence_app.fanout import Fanout
from presence_app.outage import OutageLog
from presence_app.registry import create_registry

SETTINGS = settings.load()
REGISTRY = create_registry(
    get_config().redis_url,
    prefix=SETTINGS.redis_prefix,
    worker_timeout=SETTINGS.worker_timeout,
)
OUTAGE = OutageLog()
FANOUT = Fanout(REGISTRY, SETTINGS.fanout_interval, OUTAGE)
