"""The registry against a reference model, over random histories.

The model shares no code with the registry: it keeps only the log of what
happened and, at every step, replays that whole log from scratch to say what
presence should be. User identity is ``str.casefold`` written out here, spelling
is "the name of the join that brought the user online", and order is "the log
position of the join that put each current tab under its user".

Two tests:

- ``test_random_joins_renames_and_leaves_match_the_model``: flat random action
  lists (join, rename, leave, transfer) over a few tabs.
- ``test_presence_machine``: a stateful machine that also simulates sockets and
  time (close, reload, silent loss, sweeps, clock jumps, re-tokened tabs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

GRACE = 3.0
NAMES = ["ann", "Ann", "ANN", "bob", "Bob", "cy", "Straße", "STRASSE"]
SLOTS = 5
TABS = [f"t{i}" for i in range(5)]
START = 1000.0

# --- the reference model --------------------------------------------------------
#
# Events in the log (``now`` is the clock reading when the call was made):
#   ("join", tab, name, now)   join or rename
#   ("leave", tab)
#   ("transfer", old, new, now)
#   ("touch", tabs, now)
#   ("expire", cutoff)


@dataclasses.dataclass
class ModelTab:
    name: str  # the spelling this tab joined with
    key: str  # str.casefold() of it
    joined_at: int  # log position of the join that put it under its user
    seen: float


@dataclasses.dataclass(frozen=True)
class Expected:
    tabs: dict[str, ModelTab]
    users: list[tuple[str, int]]  # (listed spelling, tab count), in list order


def replay(log: Sequence[tuple]) -> Expected:
    """What the registry should hold after ``log``, computed from nothing."""
    tabs: dict[str, ModelTab] = {}
    spelling: dict[str, str] = {}  # key -> spelling, set when the key comes online

    def online(key: str) -> bool:
        return any(t.key == key for t in tabs.values())

    for position, event in enumerate(log):
        match event:
            case ("join", tab, name, now):
                key = name.casefold()
                if tab in tabs and tabs[tab].key == key:
                    tabs[tab].seen = now  # same user again: only seen
                    continue
                tabs.pop(tab, None)  # a rename drops the old name first
                if not online(key):
                    spelling[key] = name
                tabs[tab] = ModelTab(name, key, position, now)
            case ("leave", tab):
                tabs.pop(tab, None)
            case ("transfer", old, new, now):
                if old == new or old not in tabs:
                    continue
                moved = tabs.pop(old)
                tabs.pop(new, None)
                moved.seen = now
                tabs[new] = moved
            case ("touch", touched, now):
                for tab in touched:
                    if tab in tabs:
                        tabs[tab].seen = now
            case ("expire", cutoff):
                for tab in [t for t, m in tabs.items() if m.seen < cutoff]:
                    del tabs[tab]
            case _:
                raise AssertionError(f"unknown event {event!r}")

    first: dict[str, int] = {}
    count: dict[str, int] = {}
    for model in tabs.values():
        first[model.key] = min(first.get(model.key, model.joined_at), model.joined_at)
        count[model.key] = count.get(model.key, 0) + 1
    order = sorted(first, key=first.__getitem__)
    return Expected(tabs, [(spelling[key], count[key]) for key in order])


# --- checking the registry against the model --------------------------------------


async def observe(registry, tabs):
    presence = await registry.presence()
    entries = {tab: await registry.entry(tab) for tab in tabs}
    return presence, entries


class History:
    """The log, plus what has been observed of the registry's versions."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.expected = replay(self.log)
        self.last_version: int | None = None
        self.last_users: list[tuple[str, int]] = []
        self.versions: dict[int, list[tuple[str, int]]] = {}

    def record(self, event: tuple) -> tuple[Expected, Expected]:
        before = self.expected
        self.log.append(event)
        self.expected = replay(self.log)
        return before, self.expected

    def check(self, presence, entries) -> None:
        expected = self.expected
        users = [(user.name, user.tabs) for user in presence.users]
        assert users == expected.users, self.log
        assert presence.count == len(expected.users), self.log
        for tab, entry in entries.items():
            model = expected.tabs.get(tab)
            if model is None:
                assert entry is None, (tab, self.log)
            else:
                assert entry is not None, (tab, self.log)
                assert (entry.tab, entry.name, entry.seen_at) == (
                    tab,
                    model.name,
                    model.seen,
                ), self.log
        version = presence.version
        if self.last_version is not None:
            assert version >= self.last_version, self.log
            if users != self.last_users:
                assert version > self.last_version, self.log
        assert self.versions.setdefault(version, users) == users, self.log
        self.last_version, self.last_users = version, users


# --- (a) flat random action lists ---------------------------------------------------

TAB = st.sampled_from(TABS)
ACTION = st.one_of(
    st.tuples(st.just("join"), TAB, st.sampled_from(NAMES)),
    st.tuples(st.just("leave"), TAB),
    st.tuples(st.just("transfer"), TAB, TAB),
)


@settings(max_examples=300, deadline=None)
@given(actions=st.lists(ACTION, max_size=40))
def test_random_joins_renames_and_leaves_match_the_model(
    registry_factory, clock_factory, actions
):
    async def run() -> None:
        clock = clock_factory(START)
        registry = registry_factory(clock)
        history = History()
        try:
            history.check(*await observe(registry, TABS))
            for action in actions:
                clock.advance(1.0)
                now = clock()
                match action:
                    case ("join", tab, name):
                        before, after = history.record(("join", tab, name, now))
                        changed = await registry.join(tab, name)
                        assert changed == (before.users != after.users), history.log
                    case ("leave", tab):
                        before, _ = history.record(("leave", tab))
                        assert await registry.leave(tab) == (tab in before.tabs)
                    case ("transfer", old, new):
                        # Only onto a fresh tab, as the app does.
                        if new in history.expected.tabs:
                            continue
                        before, after = history.record(("transfer", old, new, now))
                        moved = await registry.transfer(old, new)
                        assert moved == (old != new and old in before.tabs)
                        assert after.users == before.users
                history.check(*await observe(registry, TABS))
        finally:
            await registry.close()

    asyncio.run(run())


# --- (b) the stateful machine -------------------------------------------------------


@dataclasses.dataclass
class Slot:
    """One browser tab as the test drives it: its current token and socket."""

    token: str
    connected: bool


class PresenceMachine(RuleBasedStateMachine):
    """Users open, join, rename, leave, close and reload tabs while time passes.

    The sweep (touch every connected tab, then expire what was not seen within
    GRACE) runs only when a rule says so, as the app's periodic sweep would.
    """

    def __init__(self, registry_factory, clock_factory) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = clock_factory(START)
        self.registry = registry_factory(self.clock)
        self.history = History()
        self.tokens = (f"tab{n}" for n in itertools.count())
        self.slots = [Slot(next(self.tokens), connected=True) for _ in range(SLOTS)]
        self.watched: set[str] = set()

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.registry.close())
        finally:
            self.loop.close()

    # helpers

    def run(self, awaitable):
        return self.loop.run_until_complete(awaitable)

    def new_token(self) -> str:
        return next(self.tokens)

    def joined(self, token: str) -> bool:
        return token in self.history.expected.tabs

    def connected_slots(self) -> list[int]:
        return [i for i, slot in enumerate(self.slots) if slot.connected]

    def sweep(self) -> list[str]:
        live = sorted(slot.token for slot in self.slots if slot.connected)
        now = self.clock()
        self.history.record(("touch", tuple(live), now))
        self.run(self.registry.touch(live))
        before, after = self.history.record(("expire", now - GRACE))
        gone = self.run(self.registry.expire(now - GRACE))
        assert len(gone) == len(set(gone)), gone
        assert set(gone) == before.tabs.keys() - after.tabs.keys(), self.history.log
        # A connected tab is touched right before the cut-off: it never expires.
        assert not set(gone) & set(live)
        return gone

    def pick_connected(self, data, prefer_joined: bool = False) -> int:
        """A connected slot; a joined one when asked and there is one, so that
        the rules that act on entries mostly have an entry to act on."""
        slots = self.connected_slots()
        if prefer_joined:
            slots = [i for i in slots if self.joined(self.slots[i].token)] or slots
        return data.draw(st.sampled_from(slots), label="slot")

    # rules

    @initialize(
        names=st.lists(st.sampled_from([*NAMES, None]), min_size=SLOTS, max_size=SLOTS)
    )
    def open_tabs(self, names):
        """Start with most tabs joined, so every history has people to lose."""
        for slot, name in zip(self.slots, names, strict=True):
            if name is not None:
                self.history.record(("join", slot.token, name, self.clock()))
                assert self.run(self.registry.join(slot.token, name)) is True
            self.clock.advance(0.5)

    @rule(slot=st.integers(0, SLOTS - 1), name=st.sampled_from(NAMES))
    def join(self, slot, name):
        """Join (or rename, or repeat); a closed slot first opens a new tab."""
        current = self.slots[slot]
        if not current.connected:
            self.slots[slot] = current = Slot(self.new_token(), connected=True)
        now = self.clock()
        before, after = self.history.record(("join", current.token, name, now))
        changed = self.run(self.registry.join(current.token, name))
        assert changed == (before.users != after.users), self.history.log

    @precondition(lambda self: self.connected_slots())
    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def rename(self, data, name):
        """Join a connected tab under a name of a different user than its own."""
        slot = self.slots[self.pick_connected(data)]
        model = self.history.expected.tabs.get(slot.token)
        if model is not None and model.key == name.casefold():
            others = [n for n in NAMES if n.casefold() != model.key]
            name = data.draw(st.sampled_from(others), label="other name")
        before, after = self.history.record(("join", slot.token, name, self.clock()))
        assert self.run(self.registry.join(slot.token, name)) is True
        assert before.users != after.users

    @precondition(lambda self: self.connected_slots())
    @rule(data=st.data())
    def leave(self, data):
        slot = self.slots[self.pick_connected(data, prefer_joined=True)]
        was_joined = self.joined(slot.token)
        self.history.record(("leave", slot.token))
        assert self.run(self.registry.leave(slot.token)) == was_joined

    @precondition(lambda self: self.connected_slots())
    @rule(data=st.data())
    def close(self, data):
        """The tab goes away without Leave; nobody touches it any more."""
        self.slots[self.pick_connected(data, prefer_joined=True)].connected = False

    @precondition(lambda self: self.connected_slots())
    @rule(data=st.data(), away=st.sampled_from([0.5, 1.0, 2.0, 2.5]))
    def reload(self, data, away):
        """The socket drops and comes back with the same token inside the grace."""
        slot = self.slots[self.pick_connected(data, prefer_joined=True)]
        self.sweep()
        entry_before = self.history.expected.tabs.get(slot.token)
        slot.connected = False
        self.clock.advance(away)
        self.sweep()
        slot.connected = True
        self.sweep()
        if entry_before is not None:
            entry = self.run(self.registry.entry(slot.token))
            assert entry is not None
            assert entry.name == entry_before.name

    @precondition(lambda self: self.connected_slots())
    @rule(data=st.data(), extra=st.sampled_from([0.5, 1.0, 10.0, 600.0]))
    def silent_loss(self, data, extra):
        """The socket dies without a word and stays dead past the grace."""
        slot = self.slots[self.pick_connected(data, prefer_joined=True)]
        slot.connected = False
        self.clock.advance(GRACE + extra)
        self.sweep()
        assert self.run(self.registry.entry(slot.token)) is None

    @rule()
    def sweep_now(self):
        self.sweep()

    @rule(seconds=st.sampled_from([0.5, 1.0, 1.5, 2.5, 3.0]))
    def small_clock_jump(self, seconds):
        self.clock.advance(seconds)

    @rule(seconds=st.sampled_from([3.5, 4.0, 30.0, 3600.0]))
    def large_clock_jump(self, seconds):
        self.clock.advance(seconds)

    @rule(data=st.data())
    def transfer(self, data):
        """The tab reconnects under a new token and carries its entry over (or
        finds nothing to carry when its entry already expired)."""
        joined = [i for i, s in enumerate(self.slots) if self.joined(s.token)]
        slot = data.draw(
            st.sampled_from(joined or range(len(self.slots))), label="slot"
        )
        current = self.slots[slot]
        old, new = current.token, self.new_token()
        was_joined = self.joined(old)
        before, after = self.history.record(("transfer", old, new, self.clock()))
        assert self.run(self.registry.transfer(old, new)) == was_joined
        assert after.users == before.users
        self.slots[slot] = Slot(new, connected=True)

    # checks

    @invariant()
    def matches_the_model(self):
        # Every token that is in use or has an entry, plus the ones that were
        # last time: a token that drops out is checked once more, for None.
        current = {
            slot.token for slot in self.slots
        } | self.history.expected.tabs.keys()
        tokens = sorted(current | self.watched)
        self.watched = current
        self.history.check(*self.run(observe(self.registry, tokens)))


# Up to 50 steps per history; about 300 histories make some 10,000 steps on the
# memory registry in a few seconds. A registry behind a network round trip gets
# fewer histories (per kind here), to stay within the same time.
MACHINE_EXAMPLES = {"memory": 300}
MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=50,
    # One failure shrunk well beats several shrunk slowly.
    report_multiple_bugs=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_presence_machine(
    registry_kind: str, registry_factory: Callable, clock_factory: Callable
) -> None:
    examples = MACHINE_EXAMPLES.get(registry_kind, MACHINE_SETTINGS.max_examples)
    run_state_machine_as_test(
        lambda: PresenceMachine(registry_factory, clock_factory),
        settings=settings(MACHINE_SETTINGS, max_examples=examples),
    )
