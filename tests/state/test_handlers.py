"""PresenceState's handlers, run by Reflex's event processor as a tab runs them."""

from __future__ import annotations

import asyncio

from presence_app import service
from presence_app.registry import OnlineUser


async def test_join_shows_the_tab_its_name_and_new_count_in_one_update(tabs):
    await tabs.join("a", "  Ann  ")

    delta = next(d for d in tabs.deltas("a") if d.get("joined_rx_state_"))
    assert delta["joined_rx_state_"] is True
    assert delta["username_rx_state_"] == "Ann"
    assert delta["online_count_rx_state_"] == 1
    assert delta["online_users_rx_state_"] == [{"name": "Ann", "tabs": ""}]


async def test_a_bad_name_gives_a_message_and_changes_nothing(tabs):
    for bad in ["", "   ", "x" * 33, "a\x07b"]:
        await tabs.join("a", bad)

        state = await tabs.state("a")
        assert state.name_error != ""
        assert not state.joined
        assert (await service.REGISTRY.presence()).count == 0


async def test_a_scripted_join_without_a_text_name_is_refused_with_a_message(tabs):
    for payload in [{"form_data": {"username": {"a": 1}}}, {"form_data": None}, {}]:
        await tabs.send("a", "join", **payload)

        state = await tabs.state("a")
        assert state.name_error != ""
        assert not state.joined
        assert (await service.REGISTRY.presence()).count == 0


async def test_a_good_name_after_a_bad_one_clears_the_message(tabs):
    await tabs.join("a", "")
    await tabs.join("a", "ann")

    state = await tabs.state("a")
    assert state.name_error == ""
    assert state.joined


async def test_two_tabs_with_one_name_count_once(tabs):
    await tabs.join("a", "ann")
    await tabs.join("b", "ANN")

    assert (await service.REGISTRY.presence()).users == (OnlineUser("ann", 2),)
    assert tabs.view("b")["online_users_rx_state_"] == [
        {"name": "ann", "tabs": "2 tabs"}
    ]


async def test_leave_removes_only_the_calling_tab(tabs):
    await tabs.join("a", "ann")
    await tabs.join("b", "bob")

    await tabs.send("a", "leave")

    a, b = await tabs.state("a"), await tabs.state("b")
    assert (a.joined, a.username) == (False, "")
    assert (b.joined, b.username) == (True, "bob")
    assert tabs.view("a")["online_count_rx_state_"] == 1


async def test_one_tab_leaving_keeps_the_user_online_through_another(tabs):
    await tabs.join("a", "ann")
    await tabs.join("b", "ann")

    await tabs.send("a", "leave")

    assert (await tabs.state("b")).joined
    assert (await service.REGISTRY.presence()).users == (OnlineUser("ann", 1),)


async def test_leaving_twice_is_a_noop(tabs):
    await tabs.join("a", "ann")

    await tabs.send("a", "leave")
    await tabs.send("a", "leave")

    assert (await service.REGISTRY.presence()).count == 0
    assert tabs.view("a")["online_count_rx_state_"] == 0


async def test_joining_again_under_another_name_is_a_rename(tabs):
    await tabs.join("a", "ann")
    await tabs.join("a", "bob")

    assert (await service.REGISTRY.presence()).users == (OnlineUser("bob", 1),)
    assert (await tabs.state("a")).username == "bob"


async def test_another_tab_sees_the_latest_count_when_its_next_event_runs(tabs):
    await tabs.join("a", "ann")
    await tabs.join("b", "bob")

    await tabs.send("a", "restore")

    assert tabs.view("a")["online_count_rx_state_"] == 2


async def test_a_joined_tab_joins_again_after_a_backend_restart(tabs, registry):
    await tabs.join("a", "ann")
    identity = (await tabs.state("a")).identity
    await registry.leave(tabs.token("a"))  # what a restart loses
    state = await tabs.state("a")
    state.joined, state.username = False, ""

    await tabs.send("a", "restore")

    assert identity == f"{tabs.token('a')} ann"
    assert (await tabs.state("a")).joined
    assert (await service.REGISTRY.presence()).users == (OnlineUser("ann", 1),)


async def test_an_identity_of_another_token_is_carried_over_on_a_reconnect(tabs):
    await tabs.join("a", "ann")
    old_identity = (await tabs.state("a")).identity
    # Reflex gave the reconnecting page a new token; its session storage
    # still holds the old identity.
    await tabs.send("a2", "restore")
    copy = await tabs.state("a2")
    copy.identity = old_identity

    await tabs.send("a2", "restore")

    state = await tabs.state("a2")
    assert (state.joined, state.username) == (True, "ann")
    assert state.identity.startswith(tabs.token("a2"))
    assert (await service.REGISTRY.presence()).users == (OnlineUser("ann", 1),)
    assert await service.REGISTRY.entry(tabs.token("a")) is None


async def test_a_tampered_identity_is_dropped_not_joined(tabs):
    await tabs.send("a", "restore")
    state = await tabs.state("a")
    state.identity = f"{tabs.token('a')} \x07"

    await tabs.send("a", "restore")

    state = await tabs.state("a")
    assert (state.joined, state.identity) == (False, "")
    assert (await service.REGISTRY.presence()).count == 0


async def test_the_background_fan_out_sends_one_update_per_burst(tabs):
    sent = []

    async def broadcast(presence):
        sent.append(presence.count)

    runner = asyncio.create_task(service.FANOUT.run(broadcast))
    try:
        for i in range(100):
            await tabs.join(f"t{i}", f"user{i}")
        for _ in range(100):
            if sent and sent[-1] == 100:
                break
            await asyncio.sleep(0.01)
    finally:
        runner.cancel()

    assert sent[-1] == 100
    assert len(sent) < 100


async def test_an_unreachable_registry_gives_a_notice_and_changes_nothing(
    tabs, monkeypatch
):
    from presence_app.registry import RegistryUnavailableError

    async def unreachable(*args):
        raise RegistryUnavailableError("connection refused")

    await tabs.send("a", "restore")
    monkeypatch.setattr(service.REGISTRY, "join", unreachable)

    await tabs.join("a", "ann")

    state = await tabs.state("a")
    assert (state.joined, state.username) == (False, "")
    assert "unavailable" in state.notice


async def _a_fresh_page_holding_the_identity_of(tabs, original: str, copy: str):
    await tabs.join(original, "ann")
    await tabs.send(copy, "restore")
    state = await tabs.state(copy)
    state.identity = (await tabs.state(original)).identity
    state.mark_page_load(True)


async def test_a_duplicated_tab_starts_not_joined(tabs, monkeypatch):
    async def original_is_alive(tab):
        return True

    monkeypatch.setattr("presence_app.lifecycle.tab_is_connected", original_is_alive)
    monkeypatch.setattr("presence_app.state.COPY_WAIT", 0.2)
    await _a_fresh_page_holding_the_identity_of(tabs, "a", "copy")

    await tabs.send("copy", "restore")

    copy, original = await tabs.state("copy"), await tabs.state("a")
    assert (copy.joined, copy.identity) == (False, "")
    assert original.joined
    assert (await service.REGISTRY.presence()).users == (OnlineUser("ann", 1),)


async def test_a_reload_that_raced_its_old_socket_carries_over(tabs, monkeypatch):
    async def old_socket_is_gone(tab):
        return False

    monkeypatch.setattr("presence_app.lifecycle.tab_is_connected", old_socket_is_gone)
    await _a_fresh_page_holding_the_identity_of(tabs, "a", "reloaded")

    await tabs.send("reloaded", "restore")

    state = await tabs.state("reloaded")
    assert (state.joined, state.username) == (True, "ann")
    assert (await service.REGISTRY.presence()).users == (OnlineUser("ann", 1),)
