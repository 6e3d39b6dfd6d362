"""The app: one page, and the tasks that keep presence fresh on this worker."""

from __future__ import annotations

import reflex as rx
from reflex.state import StateUpdate
from reflex_base.constants.state import FIELD_MARKER

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
from presence_app.registry import Presence
from presence_app.state import PresenceState, listed_users


def index() -> rx.Component:
    return rx.container(
        rx.vstack(
            rx.heading("Presence Tracking", as_="h1", size="7"),
            rx.text("See who has this page open right now, live in every tab."),
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


app = rx.App()
app.api_transformer = stats_api(app)
app.add_page(index, route="/", title="Presence Tracking", on_load=PresenceState.restore)


async def broadcast(presence: Presence) -> None:
    """One update, serialized once, to every socket of this worker."""
    users = listed_users(presence)
    fields = {
        "online_count": presence.count,
        "online_users": users,
        "more_users": presence.count - len(users),
    }
    delta = {
        PresenceState.get_full_name(): {k + FIELD_MARKER: v for k, v in fields.items()}
    }
    await app.sio.emit("event", StateUpdate(delta=delta), namespace="/_event")


@app.register_lifespan_task
async def fan_out() -> None:
    await service.FANOUT.run(broadcast)


lifecycle.install(app, PresenceState)
