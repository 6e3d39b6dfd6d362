"""The registry contract, one behaviour per test, through the public interface only.

Each test runs against every registry kind (see ``conftest.REGISTRY_KINDS``).
Time comes from a ``FakeClock``; nothing sleeps.
"""

from __future__ import annotations

import asyncio

from presence_app.registry import OnlineUser, Registry

GRACE = 3.0


async def listing(registry: Registry) -> list[tuple[str, int]]:
    """The presence as plain (name, tabs) pairs, in list order."""
    presence = await registry.presence()
    assert presence.count == len(presence.users)
    return [(user.name, user.tabs) for user in presence.users]


async def sweep(registry: Registry, clock, live: set[str]) -> list[str]:
    """What the app's sweep does: mark live tabs seen, expire the rest past grace."""
    await registry.touch(live)
    return await registry.expire(clock() - GRACE)


# --- joining and counting ---------------------------------------------------------


async def test_a_new_registry_has_nobody_online(registry):
    presence = await registry.presence()
    assert presence.count == 0
    assert presence.users == ()


async def test_joining_puts_the_user_online(registry):
    assert await registry.join("tab1", "Ann") is True
    presence = await registry.presence()
    assert presence.users == (OnlineUser("Ann", 1),)
    assert presence.count == 1


async def test_two_tabs_with_the_same_name_count_once(registry):
    await registry.join("tab1", "ann")
    assert await registry.join("tab2", "ann") is True
    presence = await registry.presence()
    assert presence.count == 1
    assert presence.users == (OnlineUser("ann", 2),)


async def test_names_equal_after_casefold_are_the_same_user(registry):
    await registry.join("tab1", "Straße")
    await registry.join("tab2", "STRASSE")
    await registry.join("tab3", "strasse")
    assert await listing(registry) == [("Straße", 3)]


async def test_names_that_differ_after_casefold_are_different_users(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "anna")
    await registry.join("tab3", "ann ")
    assert (await registry.presence()).count == 3


async def test_when_one_of_two_tabs_leaves_the_user_stays_online(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "ann")
    assert await registry.leave("tab1") is True
    assert await listing(registry) == [("ann", 1)]


async def test_when_all_tabs_leave_the_user_goes_offline(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "ann")
    await registry.leave("tab1")
    await registry.leave("tab2")
    presence = await registry.presence()
    assert presence.count == 0
    assert presence.users == ()


async def test_joining_twice_is_idempotent(registry):
    await registry.join("tab1", "ann")
    before = await listing(registry)
    assert await registry.join("tab1", "ann") is False
    assert await listing(registry) == before == [("ann", 1)]


async def test_joining_again_under_a_case_variant_is_a_noop(registry):
    await registry.join("tab1", "Ann")
    await registry.join("tab2", "bob")
    assert await registry.join("tab1", "ANN") is False
    assert await listing(registry) == [("Ann", 1), ("bob", 1)]
    entry = await registry.entry("tab1")
    assert entry is not None
    assert entry.name == "Ann"


async def test_joining_again_marks_the_tab_seen(registry, clock):
    await registry.join("tab1", "ann")
    clock.advance(10)
    await registry.join("tab1", "ann")
    entry = await registry.entry("tab1")
    assert entry is not None
    assert entry.seen_at == clock()


async def test_joining_records_the_name_and_the_time_seen(registry, clock):
    clock.set(1234.5)
    await registry.join("tab1", "Ann")
    entry = await registry.entry("tab1")
    assert entry is not None
    assert (entry.tab, entry.name, entry.seen_at) == ("tab1", "Ann", 1234.5)


async def test_the_entry_of_a_tab_that_never_joined_is_none(registry):
    await registry.join("tab1", "ann")
    assert await registry.entry("tab2") is None


# --- renaming ---------------------------------------------------------------------


async def test_joining_under_another_name_renames_in_one_step(registry):
    await registry.join("tab1", "ann")
    assert await registry.join("tab1", "bob") is True
    presence = await registry.presence()
    names = [user.name for user in presence.users]
    assert names == ["bob"]
    assert "ann" not in names
    assert presence.count == 1
    entry = await registry.entry("tab1")
    assert entry is not None
    assert entry.name == "bob"


async def test_renaming_keeps_the_old_user_online_while_it_has_other_tabs(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "ann")
    await registry.join("tab1", "bob")
    assert await listing(registry) == [("ann", 1), ("bob", 1)]


async def test_renaming_into_an_online_user_adds_a_tab_to_it(registry):
    await registry.join("tab1", "Bob")
    await registry.join("tab2", "ann")
    assert await registry.join("tab2", "bob") is True
    assert await listing(registry) == [("Bob", 2)]


async def test_concurrent_readers_never_see_both_names_or_neither(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "cy")
    seen: list[tuple[int, list[tuple[str, int]]]] = []
    done = asyncio.Event()

    async def rename_back_and_forth() -> None:
        for i in range(100):
            await registry.join("tab1", "bob" if i % 2 == 0 else "ann")
            await asyncio.sleep(0)
        done.set()

    async def read() -> None:
        while not done.is_set():
            presence = await registry.presence()
            seen.append((presence.version, [(u.name, u.tabs) for u in presence.users]))
            await asyncio.sleep(0)

    await asyncio.gather(rename_back_and_forth(), read(), read())
    assert seen
    for _, users in seen:
        names = {name for name, _ in users}
        assert len(users) == 2
        assert "cy" in names
        assert len(names & {"ann", "bob"}) == 1
    by_version: dict[int, list[tuple[str, int]]] = {}
    for version, users in seen:
        assert by_version.setdefault(version, users) == users


# --- leaving ----------------------------------------------------------------------


async def test_leave_removes_only_the_calling_tab(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "ann")
    await registry.join("tab3", "bob")
    await registry.leave("tab2")
    assert await registry.entry("tab2") is None
    assert await registry.entry("tab1") is not None
    assert await registry.entry("tab3") is not None
    assert await listing(registry) == [("ann", 1), ("bob", 1)]


async def test_leaving_twice_is_a_noop(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "bob")
    assert await registry.leave("tab1") is True
    assert await registry.leave("tab1") is False
    assert await listing(registry) == [("bob", 1)]


async def test_leaving_a_tab_that_never_joined_is_a_noop(registry):
    await registry.join("tab1", "ann")
    assert await registry.leave("tab2") is False
    assert await listing(registry) == [("ann", 1)]


async def test_the_count_never_goes_negative(registry):
    for _ in range(3):
        assert await registry.leave("tab1") is False
    await registry.join("tab1", "ann")
    for _ in range(3):
        await registry.leave("tab1")
    presence = await registry.presence()
    assert presence.count == 0
    assert presence.users == ()


async def test_a_tab_can_join_again_after_leaving(registry):
    await registry.join("tab1", "ann")
    await registry.leave("tab1")
    assert await registry.join("tab1", "ann") is True
    assert await listing(registry) == [("ann", 1)]


# --- spelling -----------------------------------------------------------------------


async def test_a_user_keeps_the_first_spelling_while_online(registry):
    await registry.join("tab1", "Ann")
    await registry.join("tab2", "ann")
    assert await listing(registry) == [("Ann", 2)]
    await registry.leave("tab1")
    assert await listing(registry) == [("Ann", 1)]


async def test_a_user_who_went_offline_comes_back_with_the_new_spelling(registry):
    await registry.join("tab1", "Ann")
    await registry.join("tab2", "ann")
    await registry.leave("tab1")
    await registry.leave("tab2")
    await registry.join("tab3", "ann")
    assert await listing(registry) == [("ann", 1)]


async def test_a_user_renamed_away_comes_back_with_the_new_spelling(registry):
    await registry.join("tab1", "Ann")
    await registry.join("tab1", "bob")
    await registry.join("tab2", "ANN")
    assert await listing(registry) == [("bob", 1), ("ANN", 1)]


async def test_each_tab_keeps_its_own_spelling_in_its_entry(registry):
    await registry.join("tab1", "Ann")
    await registry.join("tab2", "ann")
    entry = await registry.entry("tab2")
    assert entry is not None
    assert entry.name == "ann"


# --- order --------------------------------------------------------------------------


async def test_users_are_listed_in_order_of_first_join(registry):
    await registry.join("tab1", "cy")
    await registry.join("tab2", "ann")
    await registry.join("tab3", "bob")
    await registry.join("tab4", "ann")
    assert await listing(registry) == [("cy", 1), ("ann", 2), ("bob", 1)]


async def test_a_user_whose_first_tab_left_moves_by_its_remaining_tabs(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "bob")
    await registry.join("tab3", "ann")
    await registry.join("tab4", "cy")
    assert [name for name, _ in await listing(registry)] == ["ann", "bob", "cy"]
    await registry.leave("tab1")
    assert await listing(registry) == [("bob", 1), ("ann", 1), ("cy", 1)]


async def test_a_user_whose_later_tab_left_keeps_its_place(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "bob")
    await registry.join("tab3", "ann")
    await registry.leave("tab3")
    assert await listing(registry) == [("ann", 1), ("bob", 1)]


async def test_a_renamed_tab_is_placed_by_the_time_of_the_rename(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "bob")
    await registry.join("tab1", "cy")
    assert await listing(registry) == [("bob", 1), ("cy", 1)]


async def test_a_repeated_join_does_not_move_the_user(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "bob")
    await registry.join("tab1", "Ann")
    await registry.join("tab1", "ann")
    assert await listing(registry) == [("ann", 1), ("bob", 1)]


async def test_a_user_coming_back_goes_to_the_end(registry):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "bob")
    await registry.leave("tab1")
    await registry.join("tab1", "ann")
    assert await listing(registry) == [("bob", 1), ("ann", 1)]


# --- transfer -----------------------------------------------------------------------


async def test_transfer_moves_the_entry_to_the_new_tab(registry, clock):
    await registry.join("old", "Ann")
    clock.advance(2)
    assert await registry.transfer("old", "new") is True
    assert await registry.entry("old") is None
    entry = await registry.entry("new")
    assert entry is not None
    assert (entry.tab, entry.name, entry.seen_at) == ("new", "Ann", clock())
    assert await listing(registry) == [("Ann", 1)]


async def test_transfer_keeps_the_user_spelling(registry):
    await registry.join("old", "Ann")
    await registry.join("tab2", "ann")
    await registry.transfer("old", "new")
    await registry.leave("tab2")
    assert await listing(registry) == [("Ann", 1)]


async def test_transfer_of_a_single_tab_user_keeps_the_spelling(registry):
    await registry.join("old", "Ann")
    await registry.transfer("old", "new")
    await registry.join("tab2", "ann")
    assert await listing(registry) == [("Ann", 2)]


async def test_transfer_keeps_the_place(registry):
    await registry.join("old", "ann")
    await registry.join("tab2", "bob")
    await registry.join("tab3", "ann")
    await registry.transfer("old", "new")
    assert await listing(registry) == [("ann", 2), ("bob", 1)]
    # ann is placed by the transferred tab, not by its later tab3.
    await registry.leave("tab3")
    assert await listing(registry) == [("ann", 1), ("bob", 1)]


async def test_transfer_of_a_tab_that_is_not_joined_is_a_noop(registry):
    await registry.join("tab1", "ann")
    assert await registry.transfer("gone", "new") is False
    assert await registry.entry("new") is None
    assert await listing(registry) == [("ann", 1)]


async def test_transferring_a_tab_onto_itself_keeps_it(registry):
    await registry.join("tab1", "ann")
    await registry.transfer("tab1", "tab1")
    entry = await registry.entry("tab1")
    assert entry is not None
    assert entry.name == "ann"
    assert await listing(registry) == [("ann", 1)]


async def test_the_old_tab_of_a_transfer_no_longer_counts(registry):
    await registry.join("old", "ann")
    await registry.transfer("old", "new")
    assert await registry.leave("old") is False
    assert await listing(registry) == [("ann", 1)]
    assert await registry.leave("new") is True
    assert await listing(registry) == []


# --- version ------------------------------------------------------------------------


async def test_the_version_increases_on_every_change(registry, clock):
    versions = [(await registry.presence()).version]

    async def changed() -> None:
        version = (await registry.presence()).version
        assert version > versions[-1]
        versions.append(version)

    await registry.join("tab1", "ann")
    await changed()
    await registry.join("tab2", "ann")
    await changed()
    await registry.join("tab3", "bob")
    await changed()
    await registry.join("tab2", "cy")  # rename
    await changed()
    await registry.leave("tab1")
    await changed()
    clock.advance(10)
    await registry.touch(["tab2"])
    await registry.expire(clock() - GRACE)  # removes tab3
    await changed()
    await registry.leave("tab2")
    await changed()


async def test_the_version_never_goes_back(registry):
    last = (await registry.presence()).version
    for call in (
        lambda: registry.join("tab1", "ann"),
        lambda: registry.join("tab1", "ann"),
        lambda: registry.leave("tab2"),
        lambda: registry.transfer("tab1", "tab2"),
        lambda: registry.transfer("tab1", "tab2"),
        lambda: registry.leave("tab2"),
        lambda: registry.leave("tab2"),
    ):
        await call()
        version = (await registry.presence()).version
        assert version >= last
        last = version


# --- touch and expire ---------------------------------------------------------------


async def test_touch_marks_joined_tabs_seen_now(registry, clock):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "bob")
    joined_at = clock()
    clock.advance(5)
    await registry.touch(["tab1"])
    entry1, entry2 = await registry.entry("tab1"), await registry.entry("tab2")
    assert entry1 is not None
    assert entry2 is not None
    assert entry1.seen_at == clock()
    assert entry2.seen_at == joined_at


async def test_touch_accepts_any_iterable(registry, clock):
    await registry.join("tab1", "ann")
    clock.advance(5)
    await registry.touch(tab for tab in {"tab1"})
    entry = await registry.entry("tab1")
    assert entry is not None
    assert entry.seen_at == clock()


async def test_touching_ahead_of_now_gives_a_longer_life(registry, clock):
    await registry.join("tab1", "ann")
    await registry.touch(["tab1"], at=clock() + 2)

    clock.advance(GRACE + 1)
    assert await registry.expire(clock() - GRACE) == []
    clock.advance(1.5)
    assert await registry.expire(clock() - GRACE) == ["tab1"]


async def test_touch_ignores_unknown_tabs(registry):
    await registry.join("tab1", "ann")
    before = await listing(registry)
    await registry.touch(["nobody", "tab1", "other"])
    assert await registry.entry("nobody") is None
    assert await registry.entry("other") is None
    assert await listing(registry) == before


async def test_an_entry_touched_at_t_survives_an_earlier_cutoff(registry, clock):
    await registry.join("tab1", "ann")
    clock.advance(10)
    t = clock()
    await registry.touch(["tab1"])
    assert await registry.expire(t - 1) == []
    assert await registry.expire(t - GRACE) == []
    assert await listing(registry) == [("ann", 1)]


async def test_an_entry_seen_exactly_at_the_cutoff_survives(registry, clock):
    await registry.join("tab1", "ann")
    assert await registry.expire(clock()) == []
    assert await listing(registry) == [("ann", 1)]


async def test_an_entry_seen_before_the_cutoff_is_removed(registry, clock):
    await registry.join("tab1", "ann")
    t = clock()
    assert await registry.expire(t + 0.5) == ["tab1"]
    assert await registry.entry("tab1") is None
    assert await listing(registry) == []


async def test_expire_returns_exactly_the_removed_tabs(registry, clock):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "ann")
    await registry.join("tab3", "bob")
    await registry.join("tab4", "cy")
    clock.advance(10)
    await registry.touch(["tab2", "tab4"])
    gone = await registry.expire(clock() - GRACE)
    assert sorted(gone) == ["tab1", "tab3"]
    assert len(gone) == len(set(gone))
    assert await listing(registry) == [("ann", 1), ("cy", 1)]


async def test_expire_with_nothing_to_remove_returns_an_empty_list(registry, clock):
    assert await registry.expire(clock() + 100) == []
    await registry.join("tab1", "ann")
    assert await registry.expire(clock() - GRACE) == []


async def test_a_reload_inside_the_grace_keeps_the_entry_name_and_place(
    registry, clock
):
    await registry.join("tab1", "Ann")
    await registry.join("tab2", "bob")
    await sweep(registry, clock, {"tab1", "tab2"})
    # tab1 reloads: its socket is gone for a moment, then back with the same token.
    clock.advance(1)
    assert await sweep(registry, clock, {"tab2"}) == []
    clock.advance(GRACE - 1)
    assert await sweep(registry, clock, {"tab2"}) == []
    assert await sweep(registry, clock, {"tab1", "tab2"}) == []
    assert await listing(registry) == [("Ann", 1), ("bob", 1)]
    clock.advance(GRACE + 1)
    assert await sweep(registry, clock, {"tab1", "tab2"}) == []
    assert await listing(registry) == [("Ann", 1), ("bob", 1)]


async def test_a_tab_that_vanishes_without_leave_goes_after_the_grace(registry, clock):
    await registry.join("tab1", "ann")
    await registry.join("tab2", "ann")
    await registry.join("tab3", "bob")
    await sweep(registry, clock, {"tab1", "tab2", "tab3"})
    clock.advance(GRACE)
    assert await sweep(registry, clock, {"tab2", "tab3"}) == []
    assert await listing(registry) == [("ann", 2), ("bob", 1)]
    clock.advance(0.5)
    assert await sweep(registry, clock, {"tab2", "tab3"}) == ["tab1"]
    assert await listing(registry) == [("ann", 1), ("bob", 1)]


async def test_a_user_expired_and_back_takes_the_new_spelling_and_goes_last(
    registry, clock
):
    await registry.join("tab1", "Ann")
    await registry.join("tab2", "bob")
    clock.advance(10)
    await sweep(registry, clock, {"tab2"})
    await registry.join("tab3", "ann")
    assert await listing(registry) == [("bob", 1), ("ann", 1)]


async def test_a_transferred_entry_is_seen_at_the_transfer(registry, clock):
    await registry.join("old", "ann")
    clock.advance(GRACE + 1)
    await registry.transfer("old", "new")
    assert await registry.expire(clock() - GRACE) == []
    assert await listing(registry) == [("ann", 1)]
