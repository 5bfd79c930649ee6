"""The label store's rules (annotation/store.py), each test on SQLite and on PostgreSQL (tests/annotation_db.py).

Time is simulated by replacing ``annotation.store._now`` (the ``clock`` fixture)."""
from __future__ import annotations

import hashlib
import inspect
import random
import threading
import uuid
from collections import Counter

import pytest
from sqlalchemy import inspect as db_inspect
from sqlalchemy import select, text

import annotation.store as store_module
from annotation.db import Base, Lease, Token, User, make_engine, migrate
from annotation.errors import (
    AnnotationError,
    Conflict,
    NotAllowed,
    NotFound,
    NotSignedIn,
)
from annotation.store import CODE_S, INVITE_S, REVISE_S, SESSION_S, Store

pytest_plugins = ["tests.annotation_db"]  # the fixtures db_url, pg_server and store

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(store_module, "_now", c)
    return c


def cid() -> str:
    return uuid.uuid4().hex


def pair_items(n: int, *, gold: int = 0, candidates: int = 3) -> list[dict]:
    def payload(k):
        return {"video": f"v{k}.mp4", "candidates": [f"t{k}_{c}.wav" for c in range(candidates)]}
    items = [{"key": f"i{k}", "payload": payload(k)} for k in range(n)]
    items += [{"key": f"g{k}", "payload": payload(f"g{k}"), "gold": f"t{'g' + str(k)}_0.wav"} for k in range(gold)]
    return items


def make_task(store, tmp_path, name="t", n=3, *, per_item=3, gold=0, gold_rate=0.0, lease_s=30.0, **kw) -> str:
    store.create_task(name, "pair", pair_items(n, gold=gold), media_root=tmp_path, per_item=per_item,
                      gold_rate=gold_rate, lease_s=lease_s, **kw)
    return name


def order_of(store, lease_id: int) -> list[str]:
    """The candidate order a lease showed (the client never sees paths; a test needs it to answer gold)."""
    with store.tx() as s:
        return list(s.get(Lease, lease_id).presentation["order"])


def occupancy(store, task: str) -> dict[str, int]:
    """item key -> current labels (not skips) + live open leases, by the store's own rule."""
    counts = Counter(row["item_key"] for row in store.labels(task))
    keys = {i["item_id"]: i["item_key"] for i in store.items(task)}
    now = store_module._now()
    with store.tx() as s:
        for (item_id,) in s.execute(select(Lease.item_id).where(Lease.state == "open", Lease.expires_at > now)):
            if item_id in keys:
                counts[keys[item_id]] += 1
    return dict(counts)


def assert_not_over_assigned(store, task: str, per_item: int) -> None:
    over = {k: n for k, n in occupancy(store, task).items() if n > per_item and not k.startswith("g")}
    assert not over, f"items over {per_item} annotators (labels + live leases): {over}"


# ----------------------------------------------------------------------------------------------------
# assignment
# ----------------------------------------------------------------------------------------------------
def test_never_assigned_an_item_labelled_or_skipped(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=4, per_item=3)
    u = store.add_user("ann")
    seen = []
    for k in range(4):
        a = store.next_item(u, task)
        assert a is not None
        assert store.next_item(u, task)["lease_id"] == a["lease_id"], "a live lease is given again, not a new one"
        seen.append(a["item_key"])
        if k % 2:
            store.skip(u, a["lease_id"], cid(), "cannot hear the audio")
        else:
            store.submit(u, a["lease_id"], cid(), choice=0)
    assert sorted(seen) == ["i0", "i1", "i2", "i3"]
    assert store.next_item(u, task) is None
    clock.advance(3600)  # lapsed leases change nothing: done and skipped items stay out
    assert store.next_item(u, task) is None
    assert store.progress(u, task) == {"task": task, "labelled": 2, "open": 0, "items": 4}


def test_never_more_than_per_item_annotators(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=2, per_item=2)
    users = [store.add_user(f"u{k}") for k in range(5)]
    got = {u.name: store.next_item(u, task) for u in users}
    assigned = [a["item_key"] for a in got.values() if a is not None]
    assert sorted(Counter(assigned).values()) == [2, 2]
    assert sum(a is None for a in got.values()) == 1
    late = next(u for u in users if got[u.name] is None)
    for u in users:
        if got[u.name] is not None:
            store.submit(u, got[u.name]["lease_id"], cid(), choice=1)
    assert store.next_item(late, task) is None
    assert Counter(r["item_key"] for r in store.labels(task)) == {"i0": 2, "i1": 2}
    assert_not_over_assigned(store, task, 2)


def test_skip_frees_the_slot_for_someone_else(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=1, per_item=1)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    assert store.next_item(b, task) is None
    store.skip(a, lease["lease_id"], cid(), "no face")
    assert store.next_item(b, task)["item_key"] == "i0"
    with pytest.raises(AnnotationError, match="why"):
        store.skip(b, store.next_item(b, task)["lease_id"], cid(), "  ")


def test_a_lapsed_lease_stops_counting(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=1, per_item=1, lease_s=30)
    a, b = store.add_user("a"), store.add_user("b")
    assert store.next_item(a, task)["item_key"] == "i0"
    clock.advance(29)
    assert store.next_item(b, task) is None
    clock.advance(2)  # 31 s without a sign of life
    assert store.next_item(b, task)["item_key"] == "i0"
    assert_not_over_assigned(store, task, 1)


def test_heartbeat_renews_the_lease(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=1, per_item=1, lease_s=30)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    assert lease["expires_at"] == pytest.approx(T0 + 30)
    clock.advance(20)
    assert store.heartbeat(a, lease["lease_id"]) == pytest.approx(T0 + 50)
    clock.advance(20)  # 40 s after the lease began, 20 s after the heartbeat
    assert store.next_item(b, task) is None
    with pytest.raises(NotFound):
        store.heartbeat(b, lease["lease_id"])  # not b's lease
    store.submit(a, lease["lease_id"], cid(), choice=0)
    assert store.heartbeat(a, lease["lease_id"]) is None  # a late heartbeat of a submitted item: no error


def test_heartbeat_on_a_lapsed_lease_whose_slot_was_taken_is_refused(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=1, per_item=1, lease_s=30)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    clock.advance(31)
    assert store.next_item(b, task) is not None
    with pytest.raises(Conflict, match="ran out"):
        store.heartbeat(a, lease["lease_id"])
    assert_not_over_assigned(store, task, 1)


# ----------------------------------------------------------------------------------------------------
# submits
# ----------------------------------------------------------------------------------------------------
def test_a_duplicate_submit_returns_the_first_ack_and_stores_one_row(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=2, per_item=2)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    request = cid()
    first = store.submit(a, lease["lease_id"], request, choice=2, dwell_ms=1500)
    assert first["duplicate"] is False
    again = store.submit(a, lease["lease_id"], request, choice=0)  # a retry, even with other content
    assert again == {**first, "duplicate": True}
    rows = [r for r in store.labels(task, history=True) if r["client_id"] == request]
    assert len(rows) == 1 and rows[0]["value"] == order_of(store, lease["lease_id"])[2]
    with pytest.raises(Conflict, match="request id"):  # someone else's request id
        store.submit(b, store.next_item(b, task)["lease_id"], request, choice=0)
    with pytest.raises(AnnotationError, match="request id"):
        store.submit(a, lease["lease_id"], "short", choice=0)


def test_a_late_submit_is_kept_when_the_item_has_room(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=1, per_item=2, lease_s=30)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    clock.advance(300)
    assert store.next_item(b, task) is not None  # b takes the other slot: one is still a's to come back to
    ack = store.submit(a, lease["lease_id"], cid(), choice=0)
    assert ack["duplicate"] is False
    assert [r["annotator"] for r in store.labels(task)] == ["a"]
    assert_not_over_assigned(store, task, 2)


def test_a_late_submit_is_refused_when_the_slot_went_to_someone_else(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=2, per_item=1, lease_s=30)
    a, b = store.add_user("a"), store.add_user("b")
    first = store.next_item(a, task)
    kept = store.submit(a, first["lease_id"], cid(), choice=0)
    lease = store.next_item(a, task)
    clock.advance(31)
    taken = store.next_item(b, task)
    assert taken["item_key"] == lease["item_key"]
    request = cid()
    with pytest.raises(Conflict) as err:
        store.submit(a, lease["lease_id"], request, choice=1)
    assert "ran out" in str(err.value) and "went to another annotator" in str(err.value)
    assert "not stored" in str(err.value)
    history = store.labels(task, history=True)
    assert request not in {r["client_id"] for r in history}
    assert kept["label_id"] in {r["label_id"] for r in history}, "an earlier label was lost"
    with pytest.raises(Conflict):  # the lease is given back, a retry is refused as well
        store.submit(a, lease["lease_id"], request, choice=1)
    store.submit(b, taken["lease_id"], cid(), choice=2)
    assert store.next_item(a, task) is None
    assert Counter(r["annotator"] for r in store.labels(task)) == {"a": 1, "b": 1}
    assert_not_over_assigned(store, task, 1)


def test_one_annotator_never_labels_an_item_twice(store, tmp_path, clock):
    """a's lease lapses and a asks again: the item (a's own lapsed lease does not count against it) may come
    back to a under a second lease, but then the old page and the new one must not both store a label of a
    on the same item; the second, if kept, must be a revision of the first."""
    task = make_task(store, tmp_path, n=1, per_item=3, lease_s=30)
    a = store.add_user("a")
    old = store.next_item(a, task)
    clock.advance(31)
    new = store.next_item(a, task)
    for lease in (old, new):
        try:
            store.submit(a, lease["lease_id"], cid(), choice=0)
        except Conflict:
            pass  # refusing one of them is fine
    rows = [r for r in store.labels(task, history=True) if r["row_kind"] == "label"]
    plain = [r["label_id"] for r in rows if r["revises"] is None]
    assert len(plain) == 1, f"a labelled item i0 twice under two leases ({old['lease_id']}, {new['lease_id']}): {plain}"


def test_a_submit_on_a_finished_lease_is_refused(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=2, per_item=1)
    a = store.add_user("a")
    lease = store.next_item(a, task)
    store.submit(a, lease["lease_id"], cid(), choice=0)
    with pytest.raises(Conflict, match="already submitted"):
        store.submit(a, lease["lease_id"], cid(), choice=0)
    nxt = store.next_item(a, task)
    store.skip(a, nxt["lease_id"], cid(), "broken")
    with pytest.raises(Conflict, match="skipped"):
        store.submit(a, nxt["lease_id"], cid(), choice=0)
    b = store.add_user("b")
    fresh = store.next_item(b, task)
    for bad in (7, -1, True, "0"):
        with pytest.raises(AnnotationError, match="choose a track"):
            store.submit(b, fresh["lease_id"], cid(), choice=bad)
    with pytest.raises(AnnotationError, match="takes a choice"):
        store.submit(b, fresh["lease_id"], cid(), rating=3)
    assert store.labels(task, history=True)[-1]["annotator"] == "a", "a refused submit stored a row"


# ----------------------------------------------------------------------------------------------------
# undo and revise
# ----------------------------------------------------------------------------------------------------
def test_undo_adds_a_row_and_gives_the_item_back(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=2, per_item=1)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    ack = store.submit(a, lease["lease_id"], cid(), choice=0)
    other = store.next_item(a, task)  # a moves on to the other item
    clock.advance(1)
    request = cid()
    undone = store.undo(a, task, request)
    assert undone["undone"] == ack["label_id"] and undone["duplicate"] is False
    assert undone["assignment"]["item_key"] == lease["item_key"]
    history = store.labels(task, history=True)
    assert [(r["row_kind"], r["revises"]) for r in history] == [("label", None), ("undo", ack["label_id"])]
    assert store.labels(task) == []
    again = store.undo(a, task, request)  # a retried undo does nothing new
    assert again["duplicate"] is True and again["undone"] == ack["label_id"]
    assert again["assignment"]["lease_id"] == undone["assignment"]["lease_id"]
    assert len(store.labels(task, history=True)) == 2
    # the item a was on went back to the pool: b gets it; a's own undone item is held by a's new lease
    assert store.next_item(b, task)["item_key"] == other["item_key"]
    store.submit(a, undone["assignment"]["lease_id"], cid(), choice=1)
    assert [r["annotator"] for r in store.labels(task)] == ["a"]
    assert_not_over_assigned(store, task, 1)
    with pytest.raises(Conflict, match="nothing of yours"):
        store.undo(b, task, cid())


def test_revise_adds_a_row_that_names_the_old_one(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=2, per_item=2)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    old = store.submit(a, lease["lease_id"], cid(), choice=0)
    clock.advance(60)
    new = store.revise(a, old["label_id"], cid(), choice=1)
    order = order_of(store, lease["lease_id"])
    current = store.labels(task)
    assert [(r["label_id"], r["value"], r["revises"], r["revision"]) for r in current] == \
        [(new["label_id"], order[1], old["label_id"], 1)]
    assert [r["label_id"] for r in store.labels(task, history=True)] == [old["label_id"], new["label_id"]]
    with pytest.raises(Conflict, match="revise the newest"):
        store.revise(a, old["label_id"], cid(), choice=2)
    with pytest.raises(NotFound):
        store.revise(b, new["label_id"], cid(), choice=2)
    clock.advance(REVISE_S + 1)
    with pytest.raises(Conflict, match="one day"):
        store.revise(a, new["label_id"], cid(), choice=2)
    assert store.my_labels(a, task)[0]["revisable"] is False


# ----------------------------------------------------------------------------------------------------
# gold
# ----------------------------------------------------------------------------------------------------
def test_gold_items_pause_an_annotator_below_the_threshold(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=0, per_item=1, gold=7, gold_rate=0.5, gold_threshold=0.6)
    bad, good = store.add_user("bad"), store.add_user("good")
    gold_answers = {i["item_key"]: i["gold_answer"] for i in store.items(task) if i["is_gold"]}

    def answer(user, right: bool):
        a = store.next_item(user, task)  # only gold items in this task
        order = order_of(store, a["lease_id"])
        choice = order.index(gold_answers[a["item_key"]]) if right else None  # None: "none fits", wrong here
        return store.submit(user, a["lease_id"], cid(), choice=choice)

    for _ in range(5):
        assert store.paused(task) == {}
        answer(bad, right=False)
        answer(good, right=True)
        clock.advance(1)
    assert list(store.paused(task)) == ["bad"]
    assert "0/5" in store.paused(task)["bad"]
    with pytest.raises(NotAllowed, match="paused"):
        store.next_item(bad, task)
    assert sum(r["annotator"] == "bad" for r in store.labels(task)) >= 5, "the pausing label must stay stored"
    store.lift_pause(task, "bad")
    assert store.paused(task) == {}
    assert store.next_item(bad, task) is not None  # back at work
    clock.advance(1)
    answer(bad, right=True)  # a lifted pause starts the window afresh: the old wrong answers do not count
    answer(good, right=True)
    assert store.paused(task) == {}


def test_gold_items_are_open_to_everyone(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=0, per_item=1, gold=1, gold_rate=0.99)
    users = [store.add_user(f"u{k}") for k in range(4)]
    keys = []
    for u in users:
        a = store.next_item(u, task)
        if a["item_key"] != "g0":
            store.submit(u, a["lease_id"], cid(), choice=0)
            a = store.next_item(u, task)
        keys.append(a["item_key"])
    assert keys == ["g0"] * 4


# ----------------------------------------------------------------------------------------------------
# concurrency
# ----------------------------------------------------------------------------------------------------
def test_eight_threads_never_over_assign_and_store_every_ack_once(store, tmp_path):
    per_item = 3
    task = make_task(store, tmp_path, n=12, per_item=per_item, lease_s=600)
    users = [store.add_user(f"w{k}") for k in range(8)]
    acks, errors, lock = [], [], threading.Lock()
    barrier = threading.Barrier(len(users))
    idle, idle_changed = set(), threading.Condition()

    def nothing_left(user) -> bool:
        """True once every worker found nothing at the same time: no lease is out, so no item can come back
        (a skip or an expiry returns one); until then an idle worker asks again."""
        with idle_changed:
            idle.add(user.name)
            if len(idle) == len(users):
                idle_changed.notify_all()
                return True
            idle_changed.wait(0.05)
            if len(idle) == len(users):
                return True
            idle.discard(user.name)
            return False

    def work(user):
        rng = random.Random(user.id)
        try:
            barrier.wait()
            while True:
                a = store.next_item(user, task)
                if a is None:
                    if nothing_left(user):
                        return
                    continue
                if rng.random() < 0.2:
                    store.heartbeat(user, a["lease_id"])
                request = cid()
                if rng.random() < 0.1:
                    ack = store.skip(user, a["lease_id"], request, "cannot tell")
                else:
                    ack = store.submit(user, a["lease_id"], request, choice=rng.randrange(3))
                    if rng.random() < 0.2:  # a retry of an acknowledged submit
                        again = store.submit(user, a["lease_id"], request, choice=0)
                        assert again == {**ack, "duplicate": True}
                with lock:
                    acks.append((request, ack["label_id"], user.name, a["item_key"]))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not errors, errors
    history = store.labels(task, history=True)
    stored = Counter(r["client_id"] for r in history)
    assert all(n == 1 for n in stored.values()), "a client id stored twice"
    by_id = {r["client_id"]: r["label_id"] for r in history}
    assert {request: by_id.get(request) for request, label_id, *_ in acks} == \
        {request: label_id for request, label_id, *_ in acks}, "an acknowledged label is missing or differs"
    assert len(history) == len(acks)
    per = Counter(r["item_key"] for r in store.labels(task))
    assert max(per.values()) <= per_item, f"over-assigned: {per}"
    # each worker stopped only when nothing was left for it: every item is full or done by everyone
    done = {(name, key) for _, _, name, key in acks}
    for item in (f"i{k}" for k in range(12)):
        assert per[item] == per_item or all((u.name, item) in done for u in users), (item, per[item])
    assert_not_over_assigned(store, task, per_item)


class Paused:
    """Make ``Store.<method>`` stop, in the thread named ``thread`` only, right after it returns (its reads
    done, its transaction still open) until :meth:`go` (at most 3 s)."""

    def __init__(self, monkeypatch, method: str, thread: str):
        self.reached, self._go, real = threading.Event(), threading.Event(), getattr(Store, method)

        def wrapper(*args, **kwargs):
            out = real(*args, **kwargs)
            if threading.current_thread().name == thread:
                self.reached.set()
                self._go.wait(3)
            return out

        static = isinstance(inspect.getattr_static(Store, method), staticmethod)
        monkeypatch.setattr(Store, method, staticmethod(wrapper) if static else wrapper)

    def go(self) -> None:
        self._go.set()


def in_thread(name: str, fn, *args, **kwargs):
    """Run ``fn`` in a thread; returns (thread, out) with out["result"] or out["error"] once it ends."""
    out = {}

    def run():
        try:
            out["result"] = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - checked by the caller
            out["error"] = err

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, out


def test_a_submit_racing_next_item_does_not_over_assign(store, tmp_path, clock, monkeypatch):
    """b asks for an item while a submits the only slot's lease: b's next_item reads the labels before a's
    commit; it must not then read the leases after it and see the slot as free."""
    task = make_task(store, tmp_path, n=1, per_item=1, lease_s=600)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    pause = Paused(monkeypatch, "_item_state", thread="b")
    nxt, result = in_thread("b", store.next_item, b, task)
    assert pause.reached.wait(10)
    sub, out = in_thread("a", store.submit, a, lease["lease_id"], cid(), choice=0)
    sub.join(1.0)  # on SQLite the submit waits for b's write transaction (BEGIN IMMEDIATE)
    pause.go()
    nxt.join(30)
    sub.join(30)
    assert "error" not in out and "error" not in result, (out, result)
    assert result["result"] is None, "b was given the item a had just labelled (per_item=1)"
    assert_not_over_assigned(store, task, 1)


@pytest.mark.parametrize("late", ["submit", "heartbeat"])
def test_a_lapsed_lease_coming_back_while_next_item_runs_does_not_over_assign(store, tmp_path, clock, monkeypatch,
                                                                               late):
    """a's lease lapsed. a's late submit (or heartbeat) finds room (``_check_room``); before it commits, b
    asks for an item. Only one of them may have the only slot."""
    task = make_task(store, tmp_path, n=1, per_item=1, lease_s=30)
    a, b = store.add_user("a"), store.add_user("b")
    lease = store.next_item(a, task)
    clock.advance(31)
    pause = Paused(monkeypatch, "_check_room", thread="a")
    if late == "submit":
        sub, out = in_thread("a", store.submit, a, lease["lease_id"], cid(), choice=0)
    else:
        sub, out = in_thread("a", store.heartbeat, a, lease["lease_id"])
    assert pause.reached.wait(10)
    nxt, result = in_thread("b", store.next_item, b, task)
    nxt.join(1.0)  # on SQLite next_item waits for a's write transaction
    pause.go()
    sub.join(30)
    nxt.join(30)
    assert "error" not in result, result
    a_kept = "result" in out
    b_got = result["result"] is not None
    assert a_kept != b_got, f"both have the only slot: a's late {late} {out}, b's assignment {result['result']}"
    assert_not_over_assigned(store, task, 1)


def test_a_retry_racing_its_first_submit_gets_the_ack(store, tmp_path, monkeypatch):
    """A client retries a submit whose answer is slow in coming: the retry checks the request id before the
    first commits and reads the lease after. It must get the first submit's ack (not "already submitted"),
    and one row is stored."""
    task = make_task(store, tmp_path, n=1, per_item=1, lease_s=600)
    a = store.add_user("a")
    lease = store.next_item(a, task)
    request = cid()
    pause = Paused(monkeypatch, "_by_client_id", thread="retry")
    retry, second = in_thread("retry", store.submit, a, lease["lease_id"], request, choice=1)
    assert pause.reached.wait(10)
    first, out = in_thread("first", store.submit, a, lease["lease_id"], request, choice=1)
    first.join(1.0)  # on SQLite the first waits for the retry's write transaction
    pause.go()
    retry.join(30)
    first.join(30)
    assert "error" not in out and "error" not in second, (out, second)
    assert out["result"]["label_id"] == second["result"]["label_id"]
    assert sorted([out["result"]["duplicate"], second["result"]["duplicate"]]) == [False, True]
    assert [r["client_id"] for r in store.labels(task, history=True)] == [request]


def test_two_submits_on_one_lease_store_one_label(store, tmp_path, monkeypatch):
    """Two different submits of the same lease at once (a double click that made two request ids): one is
    stored, the other is told the item was already submitted. The second read the lease before the first
    committed; it must not go on with that stale state."""
    task = make_task(store, tmp_path, n=1, per_item=2, lease_s=600)
    a = store.add_user("a")
    lease = store.next_item(a, task)
    pause = Paused(monkeypatch, "_own_lease", thread="second")
    second, out2 = in_thread("second", store.submit, a, lease["lease_id"], cid(), choice=1)
    assert pause.reached.wait(10)
    first, out1 = in_thread("first", store.submit, a, lease["lease_id"], cid(), choice=0)
    first.join(1.0)  # on SQLite the first waits for the second's write transaction
    pause.go()
    second.join(30)
    first.join(30)
    outcomes = sorted(["stored" if "result" in o else type(o["error"]).__name__ for o in (out1, out2)])
    assert outcomes == ["Conflict", "stored"], (out1, out2)
    rows = store.labels(task, history=True)
    assert len(rows) == 1, f"one lease gave {len(rows)} labels: {[r['client_id'] for r in rows]}"


def test_a_skip_racing_a_submit_of_the_same_lease_does_not_hide_the_label(store, tmp_path, monkeypatch):
    """Submit and skip of one lease at once (two windows): the skip read the lease before the submit
    committed. Only one may win; an acknowledged label must stay the annotator's current one."""
    task = make_task(store, tmp_path, n=1, per_item=2, lease_s=600)
    a = store.add_user("a")
    lease = store.next_item(a, task)
    pause = Paused(monkeypatch, "_own_lease", thread="skip")
    skip, skipped = in_thread("skip", store.skip, a, lease["lease_id"], cid(), "cannot hear it")
    assert pause.reached.wait(10)
    sub, submitted = in_thread("submit", store.submit, a, lease["lease_id"], cid(), choice=1)
    sub.join(1.0)  # on SQLite the submit waits for the skip's write transaction
    pause.go()
    skip.join(30)
    sub.join(30)
    outcomes = sorted(["ok" if "result" in o else type(o["error"]).__name__ for o in (skipped, submitted)])
    assert outcomes == ["Conflict", "ok"], (skipped, submitted)
    if "result" in submitted:
        assert [r["label_id"] for r in store.labels(task)] == [submitted["result"]["label_id"]], \
            "the acknowledged label is hidden behind a later skip"


# ----------------------------------------------------------------------------------------------------
# users and sign-in
# ----------------------------------------------------------------------------------------------------
def _all_text(store) -> str:
    with store.tx() as s:
        rows = [*s.execute(text("SELECT * FROM users")).all(), *s.execute(text("SELECT * FROM tokens")).all()]
    return "\n".join(str(tuple(r)) for r in rows)


def test_passwords_are_hashed_and_checked(store, clock):
    store.add_user("pat", password="correct horse battery")
    with store.tx() as s:
        stored = s.scalar(select(User.password_hash).where(User.name == "pat"))
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    token = store.login_password(" pat ", "correct horse battery")
    assert store.session_user(token).name == "pat"
    dump = _all_text(store)
    assert "correct horse battery" not in dump and token not in dump, "a password or session in plain text"
    with store.tx() as s:
        assert s.get(Token, hashlib.sha256(token.encode()).hexdigest()) is not None
    for name, password in [("pat", "correct horse batterY"), ("pat", ""), ("nobody", "correct horse battery")]:
        with pytest.raises(NotSignedIn, match="wrong user name or password"):
            store.login_password(name, password)
    store.add_user("nopass")
    with pytest.raises(NotSignedIn):
        store.login_password("nopass", "")
    with pytest.raises(AnnotationError, match="8 characters"):
        store.add_user("short", password="1234567")
    with pytest.raises(NotSignedIn):
        store.session_user(None)
    with pytest.raises(NotSignedIn):
        store.session_user("not-a-token")


def test_invites_and_one_time_codes_work_and_expire(store, clock):
    store.add_user("ivy")
    invite = store.invite("ivy")
    assert invite not in _all_text(store)
    assert store.session_user(store.login_token(invite)).name == "ivy"
    assert store.session_user(store.login_token(invite)).name == "ivy"  # a link works until it expires
    with pytest.raises(NotSignedIn):
        store.session_user(invite)  # an invite is not a session
    clock.advance(INVITE_S + 1)
    with pytest.raises(NotSignedIn, match="expired"):
        store.login_token(invite)

    code = store.sign_in_code("ivy")
    session = store.login_token(code)
    assert store.session_user(session).name == "ivy"
    with pytest.raises(NotSignedIn, match="already used"):
        store.login_token(code)
    with pytest.raises(NotSignedIn):
        store.login_token(session)  # a session is not a sign-in link
    late = store.sign_in_code("ivy")
    clock.advance(CODE_S + 1)
    with pytest.raises(NotSignedIn, match="expired"):
        store.login_token(late)
    with pytest.raises(NotSignedIn):
        store.login_token("made-up")
    with pytest.raises(NotFound):
        store.invite("nobody")


def test_sessions_expire_and_logout_ends_them(store, clock):
    store.add_user("sam", password="sam-password")
    token = store.login_password("sam", "sam-password")
    clock.advance(SESSION_S - 1)
    assert store.session_user(token).name == "sam"
    clock.advance(2)
    with pytest.raises(NotSignedIn, match="expired"):
        store.session_user(token)
    token = store.login_password("sam", "sam-password")
    store.logout(token)
    clock.advance(0.001)
    with pytest.raises(NotSignedIn):
        store.session_user(token)


def test_a_removed_user_loses_sessions_and_lease(store, tmp_path, clock):
    task = make_task(store, tmp_path, n=2, per_item=1)
    store.add_user("rem", password="rem-password")
    other = store.add_user("other")
    token = store.login_password("rem", "rem-password")
    invite = store.invite("rem")
    rem = store.session_user(token)
    first = store.next_item(rem, task)
    kept = store.submit(rem, first["lease_id"], cid(), choice=0)
    held = store.next_item(rem, task)
    assert store.next_item(other, task) is None  # the one item left is rem's
    store.remove_user("rem")
    clock.advance(0.001)
    with pytest.raises(NotSignedIn):
        store.session_user(token)
    with pytest.raises(NotSignedIn):
        store.login_password("rem", "rem-password")
    with pytest.raises(NotSignedIn):
        store.login_token(invite)
    with pytest.raises(AnnotationError, match="removed"):
        store.invite("rem")
    assert store.next_item(other, task)["item_key"] == held["item_key"], "the removed user's lease stuck"
    assert [r["label_id"] for r in store.labels(task)] == [kept["label_id"]], "their labels must stay"
    assert {u["name"]: u["active"] for u in store.users()} == {"rem": False, "other": True}
    store.add_user("rem")  # added again: the old session stays ended
    with pytest.raises(NotSignedIn):
        store.session_user(token)


# ----------------------------------------------------------------------------------------------------
# schema
# ----------------------------------------------------------------------------------------------------
def _schema_diff(engine) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def test_migrate_builds_the_models_schema_and_is_idempotent(db_url, monkeypatch):
    engine = make_engine(db_url)
    try:
        assert db_inspect(engine).get_table_names() == []
        migrate(engine)
        tables = set(db_inspect(engine).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        for name, table in Base.metadata.tables.items():
            assert {c["name"] for c in db_inspect(engine).get_columns(name)} == set(table.columns.keys()), name
        assert _schema_diff(engine) == []
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        migrate(engine)  # again: nothing to do
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == version
        assert set(db_inspect(engine).get_table_names()) == tables
        assert _schema_diff(engine) == []
    finally:
        engine.dispose()
    # `alembic check` as the command line runs it (env.py without a connection, AVSTUDIO_DB_URL)
    from alembic import command
    from alembic.config import Config

    from annotation.db import MIGRATIONS

    monkeypatch.setenv("AVSTUDIO_DB_URL", db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    command.check(config)  # raises AutoGenerateDiffDetected on a pending change


def test_a_store_opens_an_existing_database_without_changes(db_url, tmp_path):
    first = Store(db_url, data=tmp_path)
    first.add_user("keep")
    first.close()
    again = Store(db_url, data=tmp_path)
    try:
        assert [u["name"] for u in again.users()] == ["keep"]
    finally:
        again.close()
