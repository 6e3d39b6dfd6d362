"""The app: one page, and the tasks that keep presence fresh on this worker."""

from __future__ import annotations

import reflex as rx
from redis.exceptions import RedisError
from reflex.app import default_backend_exception_handler
from reflex.state import StateUpdate
from reflex_base.constants.state import FIELD_MARKER
from reflex_base.event import EventSpec

from presence_app import lifecycle, service
from presence_app.components import (
    count_line,
    explanation,
    join_form,
    logged_in_line,
    online_list,
    outage_notice,
)
from presence_app.diagnostics import stats_api
from presence_app.registry import Presence, RegistryUnavailableError
from presence_app.state import UNAVAILABLE, PresenceState, shown_presence


def index() -> rx.Component:
    return rx.container(
        rx.vstack(
            rx.heading("Presence Tracking", as_="h1", size="7"),
            rx.text(
                "Pick a name and join: everyone with this page open sees who is "
                "online right now, live in every tab."
            ),
            count_line(),
            outage_notice(),
            rx.cond(
                rx.State.is_hydrated,
                rx.cond(PresenceState.joined, logged_in_line(), join_form()),
            ),
            online_list(),
            explanation(),
            spacing="5",
        ),
        size="2",
        padding_y="2em",
    )


def report_backend_error(exception: Exception) -> EventSpec:
    """Tell the tab plainly when Redis is out of reach; Reflex's toast otherwise.

    With Redis, Reflex's own state lives there too, so an action fails inside
    Reflex before any handler of ours can run: this is where it surfaces.
    """
    if isinstance(exception, (RedisError, RegistryUnavailableError)):
        service.OUTAGE.failed(exception)
        return rx.toast.error(UNAVAILABLE, id="presence-unavailable")
    return default_backend_exception_handler(exception)


app = rx.App(backend_exception_handler=report_backend_error)
app.api_transformer = stats_api(app)
app.add_page(index, route="/", title="Presence Tracking", on_load=PresenceState.restore)


async def broadcast(presence: Presence) -> None:
    """One update, serialized once, to every socket of this worker."""
    fields = shown_presence(presence)
    delta = {
        PresenceState.get_full_name(): {k + FIELD_MARKER: v for k, v in fields.items()}
    }
    await app.sio.emit("event", StateUpdate(delta=delta), namespace="/_event")


@app.register_lifespan_task
async def fan_out() -> None:
    await service.FANOUT.run(broadcast)


lifecycle.install(app, PresenceState)
