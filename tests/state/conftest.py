"""Drive PresenceState through Reflex's own event processor, one token per tab."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import reflex as rx
from reflex_base.event import Event
from reflex_base.event.processor import BaseStateEventProcessor

from presence_app import service
from presence_app.fanout import Fanout
from presence_app.presence_app import app
from presence_app.registry.memory import MemoryRegistry
from presence_app.state import PresenceState


class RecordingNamespace:
    """Stands in for the socket namespace: keeps every update per token."""

    def __init__(self) -> None:
        self.updates: dict[str, list[dict[str, Any]]] = {}

    async def emit_update(self, update, token: str) -> None:
        self.updates.setdefault(token, []).append(update.delta)


class Tabs:
    """Browser tabs as the backend sees them: a token each, events in order."""

    def __init__(self, processor, namespace: RecordingNamespace) -> None:
        self.processor = processor
        self.namespace = namespace
        self.names: dict[str, str] = {}

    def token(self, tab: str) -> str:
        return self.names.setdefault(tab, f"{tab}-{uuid.uuid4().hex[:12]}")

    async def send(self, tab: str, handler: str, **payload: Any) -> None:
        token = self.token(tab)
        future = await self.processor.enqueue(
            token,
            Event(
                name=f"{PresenceState.get_full_name()}.{handler}",
                payload=payload,
                router_data={
                    "pathname": "/",
                    "query": {},
                    "asPath": "/",
                    "token": token,
                },
            ),
        )
        await future.wait_all()

    async def join(self, tab: str, name: str) -> None:
        await self.send(tab, "join", form_data={"username": name})

    async def state(self, tab: str) -> PresenceState:
        token = rx.BaseStateToken(ident=self.token(tab), cls=PresenceState)
        root = await app.state_manager.get_state(token)
        return await root.get_state(PresenceState)

    def deltas(self, tab: str) -> list[dict[str, Any]]:
        """The PresenceState part of every update the tab received, in order."""
        name = PresenceState.get_full_name()
        updates = self.namespace.updates[self.token(tab)]
        return [update[name] for update in updates if name in update]

    def view(self, tab: str) -> dict[str, Any]:
        """What the tab shows: every update it received, applied in order."""
        shown: dict[str, Any] = {}
        for delta in self.deltas(tab):
            shown.update(delta)
        return shown


@pytest.fixture
def registry(monkeypatch) -> MemoryRegistry:
    """A fresh registry and fan-out for each test."""
    fresh = MemoryRegistry(service.REGISTRY.clock)
    monkeypatch.setattr(service, "REGISTRY", fresh)
    monkeypatch.setattr(service, "FANOUT", Fanout(fresh, min_interval=0.05))
    return fresh


@pytest.fixture
async def tabs(registry):
    namespace = RecordingNamespace()
    processor = BaseStateEventProcessor(graceful_shutdown_timeout=5)
    processor.configure(state_manager=app.state_manager, event_namespace=namespace)
    async with processor:
        yield Tabs(processor, namespace)
