"""The label store: users and sign-in, tasks and items, leases, and the append-only label log.

Every method is one database transaction. Rules it keeps, whatever the clients do:

* An annotator is never assigned an item they labelled or skipped, and an item never has more than the
  task's ``per_item`` annotators (labels plus live leases). Gold items are open to everyone.
* A lease lives ``lease_s`` seconds past its last heartbeat. A lapsed lease simply stops counting, so an
  abandoned item returns to the pool and no lease stays stuck.
* A submit carries a client-made id: a retry of an acknowledged submit returns the first acknowledgement
  and stores nothing new. A submit on a lapsed lease is kept when the item still has room, and refused
  with a clear message when the slot went to someone else.
* Nothing in ``labels`` is updated or deleted: a revision, a skip and an undo are new rows.

The next item is the least certain one (:func:`annotation.review.item_uncertainty` of the labels so
far), with gold items mixed in, unannounced, at the task's ``gold_rate``.
"""
from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Text, cast, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from annotation import auth, review
from annotation.db import (
    Hum,
    Item,
    Label,
    Lease,
    Pause,
    Task,
    Token,
    User,
    data_dir,
    make_engine,
    migrate,
)
from annotation.errors import (
    AnnotationError,
    Conflict,
    NotAllowed,
    NotFound,
    NotSignedIn,
)

KINDS = ("pair", "bgm")
ROLES = ("annotator", "admin")
BGM_TAGS = ("mood", "tempo", "too busy", "too loud", "genre")
SESSION_S = 14 * 24 * 3600
INVITE_S = 7 * 24 * 3600
CODE_S = 120
MEDIA_S = 6 * 3600  # a lease's media links work this long
REVISE_S = 24 * 3600  # an annotator may revise their own labels for a day
APP_VERSION = "0.1.0"


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _now() -> float:
    return time.time()


def iso(t: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")


class Store:
    """The label store on one database. ``Store()`` opens ``AVSTUDIO_DB_URL`` or the SQLite file under
    ``AVSTUDIO_DATA`` and migrates it to the newest schema."""

    def __init__(self, url: str | None = None, *, data: str | Path | None = None, engine: Engine | None = None):
        self.engine = engine or make_engine(url)
        self.data = Path(data).resolve() if data else data_dir()
        self.sqlite = self.engine.dialect.name == "sqlite"
        migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite: reads in their own engine, whose transactions do not take the write lock (WAL)
        reader = make_engine(str(self.engine.url.render_as_string(hide_password=False)), read_only=True) \
            if self.sqlite and engine is None else self.engine
        self._readers = sessionmaker(reader, expire_on_commit=False)
        self._rng = random.SystemRandom()
        self._items: dict[int, list] = {}  # task id -> its items in brief (see _item_index)
        self._secret = auth.server_secret(self.data)  # signs the media links of leases

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction; committed when the block ends, rolled back on an exception."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One transaction that only reads (on SQLite it runs beside the writer)."""
        with self._readers() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()
        self._readers.kw["bind"].dispose()

    # ------------------------------------------------------------------------------------------------
    # users and sign-in
    # ------------------------------------------------------------------------------------------------
    def add_user(self, name: str, *, role: str = "annotator", password: str | None = None,
                 hf_username: str | None = None) -> UserInfo:
        """Add a user, or re-activate and update one that exists."""
        name = name.strip()
        if not name or len(name) > 100:
            raise AnnotationError("a user name needs 1 to 100 characters")
        if role not in ROLES:
            raise AnnotationError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self.tx() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                user = User(name=name, created_at=_now())
                s.add(user)
            user.role, user.active = role, True
            if password is not None:
                if len(password) < 8:
                    raise AnnotationError("a password needs at least 8 characters")
                user.password_hash = auth.hash_password(password)
            if hf_username is not None:
                user.hf_username = hf_username.strip() or None
            s.flush()
            return UserInfo(user.id, user.name, user.role)

    def remove_user(self, name: str) -> None:
        """Deactivate a user: their sessions end and their leases return to the pool; labels stay."""
        with self.tx() as s:
            user = self._user(s, name)
            user.active = False
            s.execute(update(Token).where(Token.user_id == user.id).values(expires_at=_now()))
            s.execute(update(Lease).where(Lease.user_id == user.id, Lease.state == "open")
                      .values(state="released"))

    def users(self) -> list[dict]:
        with self.read() as s:
            return [{"name": u.name, "role": u.role, "active": u.active, "hf_username": u.hf_username,
                     "password": u.password_hash is not None}
                    for u in s.scalars(select(User).order_by(User.id))]

    def invite(self, name: str, ttl_s: float = INVITE_S) -> str:
        """A secret for an invite link that signs ``name`` in until it expires."""
        return self._new_token(name, "invite", ttl_s)

    def sign_in_code(self, name: str) -> str:
        """A one-time code (valid two minutes) that signs ``name`` in; the OAuth bridge uses it."""
        return self._new_token(name, "code", CODE_S)

    def user_by_hf(self, hf_username: str) -> UserInfo | None:
        """The active user an admin linked to this Hugging Face name (``add_user(..., hf_username=)``), if any.
        Only that link counts: a Hugging Face account named like a local user is not that user."""
        with self.read() as s:
            user = s.scalar(select(User).where(User.hf_username == hf_username, User.active))
            return UserInfo(user.id, user.name, user.role) if user else None

    def login_password(self, name: str, password: str) -> str:
        """A session token for a correct name and password."""
        with self.tx() as s:
            user = s.scalar(select(User).where(User.name == name.strip(), User.active))
            if user is None or not auth.verify_password(password, user.password_hash):
                raise NotSignedIn("wrong user name or password")
            return self._session_token(s, user.id)

    def login_token(self, secret: str) -> str:
        """A session token for an invite secret or a one-time sign-in code."""
        with self.tx() as s:
            token = s.get(Token, auth.token_hash(secret))
            now = _now()
            if token is None or token.kind not in ("invite", "code") or token.expires_at <= now:
                raise NotSignedIn("this sign-in link has expired or is not valid; ask for a new one")
            if token.kind == "code":
                if token.used_at is not None:
                    raise NotSignedIn("this sign-in code was already used")
                token.used_at = now
            user = s.get(User, token.user_id)
            if not user.active:
                raise NotSignedIn("this account was removed")
            return self._session_token(s, user.id)

    def session_user(self, secret: str | None) -> UserInfo:
        """The user a session token belongs to; :class:`NotSignedIn` when there is none."""
        if not secret:
            raise NotSignedIn("sign in first")
        with self.read() as s:
            token = s.get(Token, auth.token_hash(secret))
            if token is None or token.kind != "session" or token.expires_at <= _now():
                raise NotSignedIn("your session has expired; sign in again")
            user = s.get(User, token.user_id)
            if not user.active:
                raise NotSignedIn("this account was removed")
            return UserInfo(user.id, user.name, user.role)

    def logout(self, secret: str) -> None:
        with self.tx() as s:
            s.execute(update(Token).where(Token.token_hash == auth.token_hash(secret)).values(expires_at=_now()))

    def _new_token(self, name: str, kind: str, ttl_s: float) -> str:
        with self.tx() as s:
            user = self._user(s, name)
            if not user.active:
                raise AnnotationError(f"user {name!r} was removed; add them again first")
            secret = auth.new_token()
            s.add(Token(token_hash=auth.token_hash(secret), kind=kind, user_id=user.id, created_at=_now(),
                        expires_at=_now() + ttl_s))
            return secret

    @staticmethod
    def _session_token(s: Session, user_id: int) -> str:
        secret = auth.new_token()
        s.add(Token(token_hash=auth.token_hash(secret), kind="session", user_id=user_id, created_at=_now(),
                    expires_at=_now() + SESSION_S))
        return secret

    @staticmethod
    def _user(s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    # ------------------------------------------------------------------------------------------------
    # tasks
    # ------------------------------------------------------------------------------------------------
    def create_task(self, name: str, kind: str, items: list[dict], *, media_root: str | Path,
                    instructions: str = "", per_item: int = 3, gold_rate: float = 0.1,
                    gold_threshold: float = 0.6, lease_s: float = 120.0, min_play_s: float = 0.0,
                    source: str = "") -> dict:
        """Create a task from prepared items: ``{"key", "payload", "gold"?}`` each (``gold`` holds the known
        answer of a gold item). :mod:`annotation.importer` builds and checks them."""
        if kind not in KINDS:
            raise AnnotationError(f"task kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not 1 <= per_item <= 50:
            raise AnnotationError("annotators per item must be between 1 and 50")
        if not 0 <= gold_rate < 1:
            raise AnnotationError("the gold rate must be at least 0 and below 1")
        if lease_s < 10:
            raise AnnotationError("a lease must last at least 10 s")
        if not items:
            raise AnnotationError("the task has no items")
        keys = [item["key"] for item in items]
        if len(set(keys)) != len(keys):
            raise AnnotationError("two items share a key")
        with self.tx() as s:
            if s.scalar(select(Task.id).where(Task.name == name)) is not None:
                raise Conflict(f"a task named {name!r} exists already")
            task = Task(name=name, kind=kind, instructions=instructions, per_item=per_item, gold_rate=gold_rate,
                        gold_threshold=gold_threshold, lease_s=lease_s, min_play_s=min_play_s,
                        media_root=str(Path(media_root).resolve()), source=source, created_at=_now())
            s.add(task)
            s.flush()
            for item in items:
                gold = "gold" in item and item["gold"] is not None
                s.add(Item(task_id=task.id, key=item["key"], payload=item["payload"], is_gold=gold,
                           gold_answer={"value": item["gold"]} if gold else None, created_at=_now()))
            return self._task_meta(s, task)

    def tasks(self) -> list[dict]:
        with self.read() as s:
            return [self._task_meta(s, t) for t in s.scalars(select(Task).order_by(Task.id))]

    def task(self, name: str) -> dict:
        with self.read() as s:
            return self._task_meta(s, self._task(s, name))

    def items(self, task: str) -> list[dict]:
        """Item records (see :mod:`annotation.review`)."""
        with self.read() as s:
            t = self._task(s, task)
            return [{"item_id": i.id, "item_key": i.key, "is_gold": i.is_gold,
                     "gold_answer": i.gold_answer["value"] if i.gold_answer else None, "payload": i.payload,
                     "media_root": t.media_root}
                    for i in s.scalars(select(Item).where(Item.task_id == t.id).order_by(Item.id))]

    @staticmethod
    def _task(s: Session, name: str, *, lock: bool = False) -> Task:
        query = select(Task).where(Task.name == name)
        if lock and s.bind.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE locks already
            query = query.with_for_update()
        task = s.scalar(query)
        if task is None:
            raise NotFound(f"no task named {name!r}")
        return task

    @staticmethod
    def _locked_task(s: Session, task_id: int) -> Task:
        """The task row, locked until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE locks the
        whole database already): every change of who holds which item goes through this one lock."""
        query = select(Task).where(Task.id == task_id)
        if s.bind.dialect.name != "sqlite":
            query = query.with_for_update()
        return s.scalar(query)

    @staticmethod
    def _task_meta(s: Session, t: Task) -> dict:
        n_items = len(s.scalars(select(Item.id).where(Item.task_id == t.id)).all())
        return {"name": t.name, "kind": t.kind, "instructions": t.instructions, "per_item": t.per_item,
                "gold_rate": t.gold_rate, "gold_threshold": t.gold_threshold, "lease_s": t.lease_s,
                "min_play_s": t.min_play_s, "media_root": t.media_root, "source": t.source,
                "n_items": n_items, "created_at": t.created_at}

    # ------------------------------------------------------------------------------------------------
    # assignment
    # ------------------------------------------------------------------------------------------------
    def next_item(self, user: UserInfo, task: str) -> dict | None:
        """The user's assignment on ``task``: their live lease if they have one, else a new lease on the
        next item; None when nothing is left for them."""
        with self.tx() as s:
            t = self._task(s, task, lock=True)
            return self._next(s, t, user)

    def next_and_progress(self, user: UserInfo, task: str) -> dict:
        """``{"assignment": next_item(...), "progress": progress(...)}`` in one transaction."""
        with self.tx() as s:
            t = self._task(s, task, lock=True)
            state = self._item_state(s, t.id)
            return {"assignment": self._next(s, t, user, state), "progress": self._progress(s, t, user, state)}

    def _next(self, s: Session, t: Task, user: UserInfo, state: _State | None = None) -> dict | None:
        now = _now()
        self._refuse_paused(s, t, user)
        live = s.scalar(select(Lease).where(Lease.task_id == t.id, Lease.user_id == user.id,
                                            Lease.state == "open", Lease.expires_at > now)
                        .order_by(Lease.id.desc()))
        if live is not None:
            live.expires_at = now + t.lease_s
            return self._assignment(s, t, live)
        items = self._item_index(s, t)
        state = state or self._item_state(s, t.id)
        mine = {item_id for (uid, item_id), row in state.current.items() if uid == user.id and row is not None}
        busy: dict[int, int] = defaultdict(int)
        for item_id, uid in s.execute(select(Lease.item_id, Lease.user_id).where(
                Lease.task_id == t.id, Lease.state == "open", Lease.expires_at > now)):
            if uid != user.id:
                busy[item_id] += 1
        gold = [i for i in items if i.is_gold and i.id not in mine]
        open_items = [i for i in items if not i.is_gold and i.id not in mine
                      and len(state.values[i.id]) + busy[i.id] < t.per_item]
        # gold comes mixed in, never back to back once the rest is done (that would announce it), except in
        # a task of gold items only (a qualification round)
        if gold and ((open_items and self._rng.random() < t.gold_rate) or not any(not i.is_gold for i in items)):
            chosen = self._rng.choice(gold)
        elif open_items:
            def certainty_key(i: Store._ItemInfo) -> tuple[float, float]:
                return (-review.item_uncertainty(t.kind, state.values[i.id], i.n_options), self._rng.random())
            chosen = min(open_items, key=certainty_key)
        else:
            return None
        item = s.get(Item, chosen.id)
        lease = Lease(task_id=t.id, item_id=item.id, user_id=user.id, state="open",
                      presentation=self._presentation(t, item), created_at=now, expires_at=now + t.lease_s)
        s.add(lease)
        s.flush()
        return self._assignment(s, t, lease, item)

    def _presentation(self, t: Task, item: Item) -> dict:
        if t.kind == "pair":
            order = list(item.payload["candidates"])
            self._rng.shuffle(order)
            return {"order": order}
        return {"gains": item.payload.get("gains", {})}

    def _assignment(self, s: Session, t: Task, lease: Lease, item: Item | None = None) -> dict:
        """What the client needs: the lease, the item's media slots in the order shown (no answers, no
        gold flag, no server paths) and the task's rules."""
        item = item or s.get(Item, lease.item_id)
        if t.kind == "pair":
            media = {"video": "video", "candidates": [f"c{k}" for k in range(len(lease.presentation["order"]))]}
        else:
            media = {"mix": "mix", "speech": "speech", "bgm": "bgm"}
        return {"lease_id": lease.id, "media_token": self.media_token(lease.id, lease.user_id),
                "task": t.name, "kind": t.kind, "item_key": item.key,
                "expires_at": lease.expires_at, "lease_s": t.lease_s, "min_play_s": t.min_play_s,
                "media": media, "tags": list(BGM_TAGS) if t.kind == "bgm" else []}

    def _token_ok(self, token: str, lease: Lease) -> bool:
        expires, _, signature = token.partition(".")
        if not expires.isdigit() or int(expires) < _now():
            return False
        return auth.signature_ok(self._secret, f"{lease.id}.{lease.user_id}.{expires}", signature)

    def heartbeat(self, user: UserInfo, lease_id: int) -> float | None:
        """Keep a lease alive; returns its new expiry. A lapsed lease is renewed when no one took the slot.
        A lease already submitted or skipped has nothing to keep alive: None (a heartbeat sent just before
        a submit can arrive after it; that is not an error)."""
        with self.tx() as s:
            lease, t = self._own_lease_locked(s, user, lease_id)
            if lease.state != "open":
                return None
            if lease.expires_at <= _now():
                self._check_room(s, t, lease)
            lease.expires_at = _now() + t.lease_s
            return lease.expires_at

    def media_token(self, lease_id: int, user_id: int, ttl_s: float = MEDIA_S) -> str:
        """A link secret for one lease's media, valid ``ttl_s`` (signed; nothing stored)."""
        expires = int(_now() + ttl_s)
        return f"{expires}.{auth.sign(self._secret, f'{lease_id}.{user_id}.{expires}')}"

    def media_path(self, user: UserInfo | None, lease_id: int, slot: str, token: str | None = None) -> Path:
        """The file behind one media slot of a lease: for its owner, an admin, or a valid media token."""
        with self.read() as s:
            lease = s.get(Lease, lease_id)
            allowed = lease is not None and (
                (user is not None and (lease.user_id == user.id or user.is_admin))
                or (token is not None and self._token_ok(token, lease)))
            if not allowed:
                raise NotFound("no such item for you")
            t = s.get(Task, lease.task_id)
            item = s.get(Item, lease.item_id)
            root = Path(t.media_root)
            if t.kind == "pair":
                if slot == "video":
                    return root / item.payload["video"]
                if slot.startswith("c") and slot[1:].isdigit() and int(slot[1:]) < len(lease.presentation["order"]):
                    return root / lease.presentation["order"][int(slot[1:])]
            elif slot in ("mix", "speech", "bgm"):
                rel = item.payload["prepared"][slot]  # prepared at import under <data>/mixes
                return self.data / rel
            raise NotFound(f"no media slot {slot!r}")

    # ------------------------------------------------------------------------------------------------
    # labels
    # ------------------------------------------------------------------------------------------------
    def submit(self, user: UserInfo, lease_id: int, client_id: str, *, choice=None, rating: int | None = None,
               tags: list[str] | None = None, dwell_ms: int = 0, played_ms: int | None = None,
               hum_sha256: str | None = None, client_time: float | None = None,
               app_version: str = APP_VERSION, then_next: bool = False) -> dict:
        """Store a label for the item of ``lease_id``. Pair: ``choice`` is the position of the chosen track
        in the order shown, or None for "none fits"; BGM fit: ``rating`` 1..5 and optional ``tags``.
        Returns ``{"label_id", "client_id", "duplicate"}``; a retried ``client_id`` stores nothing. With
        ``then_next``: ``{"ack": that, "next": assignment, "progress": ...}``, all in one transaction."""
        client_id = self._client_id(client_id)
        try:
            with self.tx() as s:
                lease, t = self._own_lease_locked(s, user, lease_id)
                done = self._by_client_id(s, user, client_id)
                if done is not None:
                    return {"ack": done, **self._follow(s, t, user)} if then_next else done
                self._refuse_paused(s, t, user)
                if lease.state == "done":
                    raise Conflict("this item was already submitted; revise the label from your history instead")
                if lease.state == "released":
                    raise Conflict("this item was skipped or given back; it is no longer yours to label")
                latest = s.scalar(select(Label.kind).where(Label.user_id == user.id, Label.item_id == lease.item_id)
                                  .order_by(Label.id.desc()).limit(1))
                if latest is not None and latest != "undo":  # e.g. an old page with a lapsed lease
                    raise Conflict("you already labelled this item (in another window?); revise it from your "
                                   "recent labels instead")
                if lease.expires_at <= _now():
                    self._check_room(s, t, lease)
                value, tags = self._value(t, lease, choice, rating, tags, played_ms)
                if hum_sha256 is not None and s.get(Hum, hum_sha256) is None:
                    raise AnnotationError("the hum for this label was not uploaded; record it again")
                presentation = dict(lease.presentation)
                if played_ms is not None:
                    presentation["played_ms"] = int(played_ms)
                label = Label(client_id=client_id, task_id=t.id, item_id=lease.item_id, user_id=user.id,
                              lease_id=lease.id, kind="label", value={"value": value}, tags=tags,
                              dwell_ms=max(0, int(dwell_ms)), presentation=presentation, hum_sha256=hum_sha256,
                              app_version=app_version[:64], client_time=client_time, created_at=_now())
                s.add(label)
                lease.state = "done"
                s.flush()
                self._maybe_pause(s, t, user.id, s.get(Item, lease.item_id))
                ack = {"label_id": label.id, "client_id": client_id, "duplicate": False}
                return {"ack": ack, **self._follow(s, t, user)} if then_next else ack
        except IntegrityError:  # the same client id raced in on another connection
            with self.tx() as s:
                done = self._by_client_id(s, user, client_id)
                if done is None:
                    raise
                if then_next:
                    t = self._locked_task(s, self._own_lease(s, user, lease_id).task_id)
                    return {"ack": done, **self._follow(s, t, user)}
            return done

    def skip(self, user: UserInfo, lease_id: int, client_id: str, reason: str, *, then_next: bool = False) -> dict:
        """Skip the item of ``lease_id`` with a reason; it is not offered to this user again. Returns the
        acknowledgement (with ``then_next``, as :meth:`submit` does, with the next assignment)."""
        client_id = self._client_id(client_id)
        reason = (reason or "").strip()
        if not reason:
            raise AnnotationError("say why you skip this item")
        with self.tx() as s:
            lease, t = self._own_lease_locked(s, user, lease_id)
            done = self._by_client_id(s, user, client_id)
            if done is not None:
                return {"ack": done, **self._follow(s, t, user)} if then_next else done
            if lease.state != "open":
                raise Conflict("this item was already submitted or skipped")
            label = Label(client_id=client_id, task_id=lease.task_id, item_id=lease.item_id, user_id=user.id,
                          lease_id=lease.id, kind="skip", value=None, tags=[], reason=reason[:500], dwell_ms=0,
                          presentation=dict(lease.presentation), app_version=APP_VERSION, created_at=_now())
            s.add(label)
            lease.state = "released"
            s.flush()
            ack = {"label_id": label.id, "client_id": client_id, "duplicate": False}
            return {"ack": ack, **self._follow(s, t, user)} if then_next else ack

    def undo(self, user: UserInfo, task: str, client_id: str) -> dict:
        """Take back the user's latest label or skip on ``task`` (an undo row) and give them that item
        again. Returns ``{"undone": label_id, "assignment": ...}``."""
        client_id = self._client_id(client_id)
        with self.tx() as s:
            t = self._task(s, task, lock=True)
            earlier = s.scalar(select(Label).where(Label.client_id == client_id))
            if earlier is not None:
                if earlier.user_id != user.id or earlier.kind != "undo":
                    raise Conflict("this request id was used for something else")
                live = s.scalar(select(Lease).where(Lease.user_id == user.id, Lease.item_id == earlier.item_id,
                                                    Lease.state == "open").order_by(Lease.id.desc()))
                return {"undone": earlier.revises, "duplicate": True,
                        "assignment": self._assignment(s, t, live) if live else self._next(s, t, user)}
            self._refuse_paused(s, t, user)
            state = self._item_state(s, t.id)
            rows = [row for (uid, _), row in state.current.items() if uid == user.id and row is not None]
            if not rows:
                raise Conflict("there is nothing of yours to undo on this task")
            last = s.get(Label, max(rows, key=lambda row: row.id).id)
            s.add(Label(client_id=client_id, task_id=t.id, item_id=last.item_id, user_id=user.id, kind="undo",
                        value=None, tags=[], revises=last.id, presentation={}, app_version=APP_VERSION,
                        created_at=_now()))
            s.execute(update(Lease).where(Lease.task_id == t.id, Lease.user_id == user.id, Lease.state == "open")
                      .values(state="released"))  # the item they were on goes back to the pool
            now = _now()
            if last.kind == "skip" and not s.get(Item, last.item_id).is_gold:
                # a skip held no slot: others may have filled the item since; then it does not come back
                others = len(s.scalars(select(Lease.id).where(Lease.item_id == last.item_id, Lease.state == "open",
                                                              Lease.expires_at > now)).all())
                if len(state.values[last.item_id]) + others >= t.per_item:
                    return {"undone": last.id, "duplicate": False, "assignment": self._next(s, t, user),
                            "notice": "the skip is undone, but others have labelled that item since"}
            lease = Lease(task_id=t.id, item_id=last.item_id, user_id=user.id, state="open",
                          presentation=dict(last.presentation), created_at=now, expires_at=now + t.lease_s)
            lease.presentation.pop("played_ms", None)
            s.add(lease)
            s.flush()
            return {"undone": last.id, "duplicate": False, "assignment": self._assignment(s, t, lease)}

    def revise(self, user: UserInfo, label_id: int, client_id: str, *, choice=None, rating: int | None = None,
               tags: list[str] | None = None) -> dict:
        """Replace one of the user's own recent labels with a new row (``revises`` = the old one).
        Pair: ``choice`` is a position in the order the item was shown."""
        client_id = self._client_id(client_id)
        with self.tx() as s:
            done = self._by_client_id(s, user, client_id)
            if done is not None:
                return done
            old = s.get(Label, label_id)
            if old is None or old.user_id != user.id:
                raise NotFound("no such label of yours")
            t = self._locked_task(s, old.task_id)
            self._refuse_paused(s, t, user)
            current = self._item_state(s, t.id).current.get((user.id, old.item_id))
            if current is None or current.id != old.id or old.kind != "label":
                raise Conflict("this label was revised or undone since; revise the newest one")
            if _now() - old.created_at > REVISE_S:
                raise Conflict("labels can be revised for one day after they are made")
            lease = s.get(Lease, old.lease_id) if old.lease_id else None
            value, tags = self._value(t, lease, choice, rating, tags, None, check_play=False)
            label = Label(client_id=client_id, task_id=t.id, item_id=old.item_id, user_id=user.id,
                          lease_id=old.lease_id, kind="label", value={"value": value}, tags=tags,
                          dwell_ms=old.dwell_ms, presentation=old.presentation, hum_sha256=old.hum_sha256,
                          revises=old.id, app_version=APP_VERSION, created_at=_now())
            s.add(label)
            s.flush()
            self._maybe_pause(s, t, user.id, s.get(Item, old.item_id))
            return {"label_id": label.id, "client_id": client_id, "duplicate": False}

    def my_labels(self, user: UserInfo, task: str, limit: int = 20) -> list[dict]:
        """The user's own current labels on ``task``, newest first (what they may see and revise)."""
        with self.read() as s:
            t = self._task(s, task)
            state = self._item_state(s, t.id)
            ids = sorted((row.id for (uid, _), row in state.current.items() if uid == user.id and row is not None),
                         reverse=True)[:limit]
            full = self._full_rows(s, ids)
            rows = [full[i] for i in ids]
            keys = dict(s.execute(select(Item.id, Item.key).where(Item.task_id == t.id)).all())
            return [{"label_id": row.id, "item_key": keys[row.item_id], "kind": row.kind,
                     "value": row.value["value"] if row.value else None, "tags": row.tags, "reason": row.reason,
                     "order": row.presentation.get("order"), "created_at": row.created_at,
                     "revisable": row.kind == "label" and _now() - row.created_at <= REVISE_S}
                    for row in rows]

    def label_of(self, user: UserInfo, label_id: int) -> dict:
        """One of the user's own label rows (any, for an admin), as :meth:`my_labels` shows it; anyone else's
        is "not found" (so label ids reveal nothing), and no gold flag or answer is shown."""
        with self.read() as s:
            row = s.get(Label, label_id)
            if row is None or (row.user_id != user.id and not user.is_admin):
                raise NotFound("no such label of yours")
            key = s.scalar(select(Item.key).where(Item.id == row.item_id))
            return {"label_id": row.id, "item_key": key, "kind": row.kind,
                    "value": row.value["value"] if row.value else None, "tags": row.tags, "reason": row.reason,
                    "order": row.presentation.get("order"), "created_at": row.created_at, "revises": row.revises}

    def progress(self, user: UserInfo, task: str) -> dict:
        """The user's own progress on ``task``: their labels, and how many items could still come to them."""
        with self.read() as s:
            t = self._task(s, task)
            return self._progress(s, t, user, self._item_state(s, t.id))

    def _progress(self, s: Session, t: Task, user: UserInfo, state: _State) -> dict:
        mine = sum(1 for (uid, _), row in state.current.items() if uid == user.id and row is not None
                   and row.kind == "label")
        items = self._item_index(s, t)
        open_items = sum(1 for i in items if not i.is_gold and len(state.values[i.id]) < t.per_item
                         and state.current.get((user.id, i.id)) is None)
        return {"task": t.name, "labelled": mine, "open": open_items, "items": len(items)}

    def _follow(self, s: Session, t: Task, user: UserInfo) -> dict:
        """The user's next assignment and progress, in the transaction that stored their label (a pause that
        label caused comes back as a notice, and the label stays)."""
        state = self._item_state(s, t.id)
        try:
            nxt, notice = self._next(s, t, user, state), None
        except NotAllowed as err:
            nxt, notice = None, str(err)
        out = {"next": nxt, "progress": self._progress(s, t, user, state)}
        if notice:
            out["notice"] = notice
        return out

    # ------------------------------------------------------------------------------------------------
    # hums
    # ------------------------------------------------------------------------------------------------
    def add_hum(self, user: UserInfo, data: bytes, check) -> dict:
        """Store a checked hum (``annotation.checks.check_hum``'s result) by its content hash."""
        folder = self.data / "hums"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{check.sha256}.{check.ext}"
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)
        with self.tx() as s:
            if s.get(Hum, check.sha256) is None:
                s.add(Hum(sha256=check.sha256, user_id=user.id, ext=check.ext, size=check.size,
                          duration_s=check.duration_s, created_at=_now()))
        return {"sha256": check.sha256, "duration_s": check.duration_s, "warnings": list(check.warnings)}

    def hum_path(self, sha256: str) -> Path | None:
        with self.read() as s:
            hum = s.get(Hum, sha256)
            return self.data / "hums" / f"{hum.sha256}.{hum.ext}" if hum else None

    # ------------------------------------------------------------------------------------------------
    # review
    # ------------------------------------------------------------------------------------------------
    def labels(self, task: str, *, history: bool = False) -> list[dict]:
        """Label records of ``task`` (see :mod:`annotation.review`): the current label of each annotator on
        each item, or with ``history`` every row of the log (labels, skips, revisions, undos)."""
        with self.read() as s:
            t = self._task(s, task)
            items = {i.id: i for i in s.scalars(select(Item).where(Item.task_id == t.id))}
            names = dict(s.execute(select(User.id, User.name)).all())
            hums = {h.sha256: self.data / "hums" / f"{h.sha256}.{h.ext}" for h in s.scalars(select(Hum))}
            if history:
                rows = list(s.scalars(select(Label).where(Label.task_id == t.id).order_by(Label.id)))
            else:
                state = self._item_state(s, t.id)
                ids = sorted(row.id for row in state.current.values() if row is not None and row.kind == "label")
                full = self._full_rows(s, ids)
                rows = [full[i] for i in ids]
            revision = defaultdict(int)
            out = []
            for row in rows:
                item = items[row.item_id]
                key = (row.user_id, row.item_id)
                if row.kind == "label":
                    revision[key] += 1
                out.append({"label_id": row.id, "client_id": row.client_id, "task": t.name, "kind": t.kind,
                            "row_kind": row.kind, "item_id": row.item_id, "item_key": item.key,
                            "annotator": names[row.user_id], "value": row.value["value"] if row.value else None,
                            "tags": row.tags, "reason": row.reason, "dwell_ms": row.dwell_ms,
                            "presentation": row.presentation, "hum_sha256": row.hum_sha256,
                            "hum_path": str(hums[row.hum_sha256]) if row.hum_sha256 else None,
                            "is_gold": item.is_gold,
                            "gold_answer": item.gold_answer["value"] if item.gold_answer else None,
                            "app_version": row.app_version, "created_at": iso(row.created_at),
                            "revises": row.revises, "revision": self._revision_number(s, row)})
            return out

    def paused(self, task: str) -> dict[str, str]:
        """Annotators paused on ``task``, with the reason."""
        with self.read() as s:
            t = self._task(s, task)
            return {name: reason for name, reason in s.execute(
                select(User.name, Pause.reason).join(User, User.id == Pause.user_id)
                .where(Pause.task_id == t.id, Pause.lifted_at.is_(None)))}

    def lift_pause(self, task: str, name: str) -> None:
        with self.tx() as s:
            t, user = self._task(s, task), self._user(s, name)
            s.execute(update(Pause).where(Pause.task_id == t.id, Pause.user_id == user.id,
                                          Pause.lifted_at.is_(None)).values(lifted_at=_now()))

    # ------------------------------------------------------------------------------------------------
    # internals
    # ------------------------------------------------------------------------------------------------
    class _ItemInfo(NamedTuple):
        id: int
        is_gold: bool
        n_options: int  # Pair: candidates + none fits; BGM fit: 5 ratings

    def _item_index(self, s: Session, t: Task) -> list[_ItemInfo]:
        """The task's items in brief, read once per process: items never change after a task is made."""
        if t.id not in self._items:
            self._items[t.id] = [
                Store._ItemInfo(i, gold, len(payload.get("candidates", [])) + 1 if t.kind == "pair" else 5)
                for i, gold, payload in s.execute(select(Item.id, Item.is_gold, Item.payload)
                                                  .where(Item.task_id == t.id).order_by(Item.id))]
        return self._items[t.id]

    class _Row(NamedTuple):
        id: int
        item_id: int
        kind: str  # "label" | "skip"
        value: object  # the label's value (None for a skip or "none fits")

    @dataclass
    class _State:
        current: dict  # (user_id, item_id) -> the current _Row (label or skip), None after an undo
        values: dict  # item_id -> values of current labels (not skips)

    def _item_state(self, s: Session, task_id: int) -> _State:
        """Who currently holds which label on each item, from the log in one light query (no ORM rows)."""
        current: dict = {}
        decoded: dict[str | None, object] = {None: None, "null": None}  # few distinct values: parse each once
        for row_id, user_id, item_id, kind, raw in s.execute(
                select(Label.id, Label.user_id, Label.item_id, Label.kind, cast(Label.value, Text))
                .where(Label.task_id == task_id).order_by(Label.id)):
            if raw not in decoded:
                decoded[raw] = json.loads(raw)["value"]
            current[(user_id, item_id)] = None if kind == "undo" else Store._Row(row_id, item_id, kind, decoded[raw])
        values: dict = defaultdict(list)
        for (_, item_id), row in current.items():
            if row is not None and row.kind == "label":
                values[item_id].append(row.value)
        return Store._State(current, values)

    @staticmethod
    def _full_rows(s: Session, ids: list[int]) -> dict[int, Label]:
        rows = {}
        for start in range(0, len(ids), 500):
            rows.update({row.id: row for row in s.scalars(select(Label).where(Label.id.in_(ids[start:start + 500])))})
        return rows

    @staticmethod
    def _revision_number(s: Session, row: Label) -> int:
        n, cursor = 0, row
        while cursor.revises is not None and cursor.kind == "label":
            cursor = s.get(Label, cursor.revises)
            n += 1
        return n

    def _refuse_paused(self, s: Session, t: Task, user: UserInfo) -> None:
        if self._paused(s, t.id, user.id):
            raise NotAllowed("you are paused on this task: your answers on check items fell below the "
                             "required accuracy; an admin can lift the pause")

    @staticmethod
    def _paused(s: Session, task_id: int, user_id: int) -> bool:
        return s.scalar(select(Pause.id).where(Pause.task_id == task_id, Pause.user_id == user_id,
                                               Pause.lifted_at.is_(None))) is not None

    def _maybe_pause(self, s: Session, t: Task, user_id: int, item: Item) -> None:
        if not item.is_gold or self._paused(s, t.id, user_id):
            return
        gold = {i.id: i.gold_answer["value"] for i in s.scalars(select(Item).where(Item.task_id == t.id,
                                                                                   Item.is_gold))}
        state = self._item_state(s, t.id)
        lifted = s.scalar(select(func.max(Pause.lifted_at)).where(Pause.task_id == t.id, Pause.user_id == user_id))
        after = s.scalar(select(func.max(Label.id)).where(Label.task_id == t.id, Label.created_at <= lifted)) \
            if lifted else None  # a lifted pause starts the window afresh
        rows = sorted((row for (uid, item_id), row in state.current.items()
                       if uid == user_id and item_id in gold and row is not None and row.kind == "label"
                       and (after is None or row.id > after)),
                      key=lambda row: row.id)
        results = [review.gold_correct(t.kind, row.value, gold[row.item_id]) for row in rows]
        if review.should_pause(results, threshold=t.gold_threshold):
            window = results[-10:]
            s.add(Pause(task_id=t.id, user_id=user_id, created_at=_now(),
                        reason=f"gold accuracy {sum(window)}/{len(window)} on the last check items, below "
                               f"{t.gold_threshold:.0%}"))

    def _check_room(self, s: Session, t: Task, lease: Lease) -> None:
        """A lapsed lease may go on only when no one else has taken its slot since."""
        item = s.get(Item, lease.item_id)
        if item.is_gold:
            return
        now = _now()
        labelled = len(self._item_state(s, t.id).values[item.id])
        others = len(s.scalars(select(Lease.id).where(Lease.item_id == item.id, Lease.state == "open",
                                                      Lease.expires_at > now, Lease.id != lease.id)).all())
        if labelled + others >= t.per_item:
            raise Conflict(f"your time on this item ran out ({t.lease_s:.0f} s without a sign of life) and it "
                           "went to another annotator, so this label was not stored; go on with the next item")

    def _own_lease_locked(self, s: Session, user: UserInfo, lease_id: int) -> tuple[Lease, Task]:
        """The user's lease and its task, read after the task's lock is taken (so the lease's state is not
        one that a transaction which held the lock before has since changed)."""
        lease = self._own_lease(s, user, lease_id)
        t = self._locked_task(s, lease.task_id)
        s.refresh(lease)
        return lease, t

    @staticmethod
    def _own_lease(s: Session, user: UserInfo, lease_id: int) -> Lease:
        lease = s.get(Lease, int(lease_id))
        if lease is None or lease.user_id != user.id:
            raise NotFound("no such item assigned to you")
        return lease

    @staticmethod
    def _client_id(client_id: str) -> str:
        client_id = str(client_id or "").strip()
        if not 8 <= len(client_id) <= 64:
            raise AnnotationError("each submit needs a request id of 8 to 64 characters")
        return client_id

    @staticmethod
    def _by_client_id(s: Session, user: UserInfo, client_id: str) -> dict | None:
        row = s.scalar(select(Label).where(Label.client_id == client_id))
        if row is None:
            return None
        if row.user_id != user.id:
            raise Conflict("this request id was used for something else")
        return {"label_id": row.id, "client_id": client_id, "duplicate": True}

    @staticmethod
    def _value(t: Task, lease: Lease | None, choice, rating, tags, played_ms, *, check_play: bool = True):
        if t.kind == "pair":
            if rating is not None:
                raise AnnotationError("a pair item takes a choice of track, not a rating")
            if choice is None or choice == "none":
                return None, []
            order = lease.presentation["order"]
            if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(order):
                raise AnnotationError(f"choose a track 1 to {len(order)}, or none fits")
            return order[choice], []
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise AnnotationError("rate the fit from 1 to 5")
        tags = sorted(set(tags or []))
        unknown = [tag for tag in tags if tag not in BGM_TAGS]
        if unknown:
            raise AnnotationError(f"unknown reason tags {unknown}; use {', '.join(BGM_TAGS)}")
        if check_play and t.min_play_s > 0 and (played_ms or 0) < t.min_play_s * 1000:
            raise AnnotationError(f"play the mix for at least {t.min_play_s:.0f} s before rating it")
        return rating, tags
