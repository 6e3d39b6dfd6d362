"""The page's parts: the count line, the join form, the logged-in line, the list."""

from __future__ import annotations

import reflex as rx

from presence_app.state import PresenceState


def count_line() -> rx.Component:
    # Until the socket has hydrated the page, the prerendered defaults would
    # claim "0 users online": say that the count is on its way instead.
    return rx.box(
        rx.text(
            rx.cond(
                rx.State.is_hydrated,
                rx.fragment(
                    PresenceState.online_count.to_string(),
                    rx.cond(
                        PresenceState.online_count == 1, " user online", " users online"
                    ),
                ),
                "Connecting…",
            ),
            id="online-count",
            size="5",
            weight="medium",
        ),
        aria_live="polite",
        role="status",
    )


def outage_notice() -> rx.Component:
    return rx.cond(
        PresenceState.notice != "",
        rx.callout(
            PresenceState.notice, id="notice", color_scheme="orange", role="alert"
        ),
    )


def join_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.el.label("Username", html_for="username-input"),
            rx.hstack(
                rx.input(
                    id="username-input",
                    name="username",
                    placeholder="Pick a name…",
                    auto_complete="off",
                ),
                rx.button("Join", id="join-button", type="submit"),
            ),
            rx.cond(
                PresenceState.name_error != "",
                rx.text(PresenceState.name_error, id="name-error", color_scheme="red"),
            ),
            spacing="2",
        ),
        on_submit=PresenceState.join,
        reset_on_submit=False,
    )


def logged_in_line() -> rx.Component:
    return rx.hstack(
        rx.text("Logged in as ", rx.text.strong(PresenceState.username)),
        rx.button("Leave", id="leave-button", on_click=PresenceState.leave),
        align="center",
        spacing="3",
    )


def user_item(user: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.el.li(
        rx.text.span(user["name"]),
        rx.cond(user["tabs"] != "", rx.text.span(" · ", user["tabs"])),
    )


def online_list() -> rx.Component:
    return rx.vstack(
        rx.heading("Who's online", as_="h2", size="4"),
        rx.cond(
            PresenceState.online_count == 0,
            rx.text("Nobody is online right now.", id="nobody-online"),
        ),
        rx.list.unordered(
            rx.foreach(PresenceState.online_users, user_item), id="online-list"
        ),
        rx.cond(
            PresenceState.more_users > 0,
            rx.text(
                "and ", PresenceState.more_users.to_string(), " more", id="more-users"
            ),
        ),
        spacing="2",
    )


def explanation() -> rx.Component:
    return rx.vstack(
        rx.heading("How it works", as_="h2", size="4"),
        rx.text(
            "Each browser tab is one connection. Joining adds the tab under the name "
            "you typed; names that differ only in case or spacing are one user, "
            "counted once however many tabs they have. Every change is sent to every "
            "open tab at once. A tab that closes or loses its connection leaves by "
            "itself after a short grace period, so a reload does not make you flicker."
        ),
        rx.heading("Limitations", as_="h2", size="4", margin_top="0.5em"),
        rx.list.unordered(
            rx.el.li(
                "Anyone can pick any name: there are no accounts, so two people who "
                "choose the same name are shown as one user."
            ),
            rx.el.li(
                "Names that only look alike (a Cyrillic letter in place of a Latin "
                "one) count as different users."
            ),
            rx.el.li(
                "A browser that crashes or loses its network silently stays listed "
                "for up to 30 seconds."
            ),
            rx.el.li(
                "A closed tab stays listed for up to 5 seconds, so that a reload "
                "never makes you disappear and come back."
            ),
            rx.el.li(
                "With one backend process presence lives in its memory; several "
                "processes share it through Redis, and if Redis loses its data every "
                "tab reconnects once and joins again."
            ),
            spacing="1",
        ),
        spacing="2",
    )
