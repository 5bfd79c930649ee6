"""Load benchmark of the labelling server (run by hand, not part of the tests): many annotators over HTTP while
the server is killed and restarted.

A Pair task (default 800 items x 3 annotators; the media paths are made up, nobody plays them) and one password
user per annotator are made with :class:`annotation.store.Store`; then ``python -m annotation --db URL serve``
runs as its own process. Each simulated annotator is a thread with its own ``httpx.Client``: it signs in with
its password, asks for an item, submits a label with a fresh ``client_id`` and takes the next item from the
answer, until the run's labels are all sent (default 2,000 in total). About 10 % of submits are sent a second
time on purpose with the same ``client_id`` (the answer must be the first acknowledgement, flagged a
duplicate), and a submit that fails on the connection (or with a 5xx) is sent again with the same
``client_id`` until the server answers. Meanwhile the server is killed with SIGKILL (default twice, evenly
spread over the run) and started again at once.

Afterwards the database is read directly and checked:

* every label acknowledged to a client is stored exactly once, under the acknowledged ``label_id``;
* no ``client_id`` is stored twice; no label is stored that no client was told of;
* no item has more current labels than ``per_item``, nor more labels plus live leases.

Reported per database: p50/p95/p99 latency of successful submits (the attempt that got the answer), labels
per second over the whole run (restarts included), retries (connection and deliberate), restarts and the
time the server was down, and errors by kind. ``--db both`` runs SQLite (a WAL file, as the embedded default)
and PostgreSQL (a throw-away cluster made with the tests' :mod:`tests.pg`, fsync on; or the server in
``AVSTUDIO_TEST_PG_URL``).

    python -m benchmarks.annotation_load                  # both -> benchmarks/results/annotation_load.json
    python -m benchmarks.annotation_load --db sqlite --annotators 10 --labels 200 --out /tmp/load.json
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests.pg: the throw-away PostgreSQL cluster, shared with the tests
    sys.path.insert(0, str(REPO))

import httpx
import numpy as np
from tqdm import tqdm

from models.provenance import save_results
from tests import pg

API = "/annotate/api"
TASK = "load"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): .*$", re.MULTILINE)


class ServerProcess:
    """``python -m annotation --db URL serve`` as a child process that can be killed and started again."""

    def __init__(self, url: str, data: Path, log: Path):
        self.url, self.data, self.log = url, data, log
        self.port = pg.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> float:
        """Start it and wait until it answers; returns the seconds that took."""
        t0 = time.monotonic()
        env = {**os.environ, "AVSTUDIO_DATA": str(self.data), "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "annotation", "--db", self.url, "serve",
                                          "--port", str(self.port)], cwd=REPO, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                httpx.get(self.base + f"{API}/me", timeout=2)  # 401: up
                return time.monotonic() - t0
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not answer in {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.is_file() else ""

    def errors(self) -> dict:
        """What went wrong inside the server, from its log: unhandled exceptions (HTTP 500) and the
        exception lines of their tracebacks, counted."""
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        lines = Counter(m.group(0)[:160] for m in EXCEPTION_LINE.finditer(text))
        return {"unhandled": text.count("Exception in ASGI application"), "exceptions": dict(lines.most_common())}


class Run:
    """What the annotators share: the counters, under one lock."""

    def __init__(self, target: int, bar):
        self.lock = threading.Lock()
        self.target, self.bar = target, bar
        self.started = 0  # submits begun (each a new label)
        self.acks: dict[str, int] = {}  # client_id -> label_id acknowledged
        self.submit_ms: list[float] = []
        self.duplicate_ms: list[float] = []
        self.next_ms: list[float] = []
        self.errors: Counter = Counter()
        self.connection_retries = 0
        self.deliberate_duplicates = 0
        self.retried_ack_was_duplicate = 0  # a retry after a lost answer found the label already stored
        self.nothing_left = 0

    def take(self) -> bool:
        with self.lock:
            if self.started >= self.target:
                return False
            self.started += 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.started -= 1

    def acked(self) -> int:
        with self.lock:
            return len(self.acks)


def request(client: httpx.Client, run: Run, method: str, path: str, **kwargs) -> tuple[httpx.Response, float]:
    """Send until the server answers with something other than a 5xx (the same body each time); returns the
    answer and the milliseconds of the attempt that got it."""
    for attempt in range(200):
        t0 = time.perf_counter()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError as err:
            with run.lock:
                run.errors[f"connection: {type(err).__name__}"] += 1
                run.connection_retries += 1
        else:
            if response.status_code < 500:
                return response, (time.perf_counter() - t0) * 1000
            with run.lock:
                run.errors[f"http {response.status_code}"] += 1
                run.connection_retries += 1
        time.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)) * (0.5 + random.random()))
    raise RuntimeError(f"{method} {path}: no answer after 200 tries")


def annotator(k: int, base: str, password: str, run: Run, dup_rate: float, seed: int) -> None:
    rng = random.Random(seed * 1000 + k)
    with httpx.Client(base_url=base, timeout=httpx.Timeout(60.0)) as client:
        r, _ = request(client, run, "POST", f"{API}/login", json={"name": f"ann{k:03d}", "password": password})
        if r.status_code != 200:
            with run.lock:
                run.errors[f"login {r.status_code}"] += 1
            return
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        assignment = None
        while run.take():
            if assignment is None:
                r, ms = request(client, run, "POST", f"{API}/tasks/{TASK}/next")
                with run.lock:
                    run.next_ms.append(ms)
                assignment = r.json().get("assignment") if r.status_code == 200 else None
                if assignment is None:
                    with run.lock:
                        run.errors["next: nothing left" if r.status_code == 200 else f"next {r.status_code}"] += 1
                    run.give_back()
                    return
            body = {"client_id": uuid.uuid4().hex, "choice": rng.choice([0, 1, 2, None]),
                    "dwell_ms": rng.randint(2000, 20000), "client_time": time.time()}
            path = f"{API}/leases/{assignment['lease_id']}/submit"
            r, ms = request(client, run, "POST", path, json=body)
            if r.status_code != 200:
                with run.lock:
                    run.errors[f"submit {r.status_code}: {r.json().get('error', '')[:60]}"] += 1
                assignment = None
                run.give_back()
                continue
            answer = r.json()
            ack = answer["ack"]
            with run.lock:
                run.submit_ms.append(ms)
                run.acks[body["client_id"]] = ack["label_id"]
                run.retried_ack_was_duplicate += bool(ack["duplicate"])
                run.bar.update(1)
            if rng.random() < dup_rate:  # the same submit again, on purpose
                r, ms = request(client, run, "POST", path, json=body)
                with run.lock:
                    run.deliberate_duplicates += 1
                    run.duplicate_ms.append(ms)
                    again = r.json().get("ack") if r.status_code == 200 else None
                    if again != {**ack, "duplicate": True}:
                        run.errors[f"duplicate answered {r.status_code} {again}"] += 1
                if r.status_code == 200:
                    answer = r.json()
            assignment = answer.get("next")


def killer(server: ServerProcess, run: Run, kills: int, stop: threading.Event, t_start: float,
           restarts: list) -> None:
    marks = [run.target * (i + 1) / (kills + 1) for i in range(kills)]
    for mark in marks:
        while run.acked() < mark:
            if stop.wait(0.05):
                return
        t0 = time.monotonic()
        server.kill()
        up = server.start()
        restarts.append({"after_labels": run.acked(), "at_s": round(t0 - t_start, 2),
                         "down_s": round(time.monotonic() - t0, 2), "start_s": round(up, 2)})


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": len(values), "p50": round(float(np.percentile(a, 50)), 1),
            "p95": round(float(np.percentile(a, 95)), 1), "p99": round(float(np.percentile(a, 99)), 1),
            "mean": round(float(a.mean()), 1), "max": round(float(a.max()), 1)}


def verify(url: str, data: Path, acks: dict[str, int], per_item: int) -> dict:
    """Read the database directly: each acknowledged label stored once, no item over its annotators."""
    from sqlalchemy import select

    from annotation.db import Lease
    from annotation.store import Store

    store = Store(url, data=data)
    try:
        history = store.labels(TASK, history=True)
        current = store.labels(TASK)
        now = time.time()
        with store.tx() as s:
            live = Counter(item for (item,) in s.execute(select(Lease.item_id).where(
                Lease.state == "open", Lease.expires_at > now)))
    finally:
        store.close()
    stored = Counter(r["client_id"] for r in history)
    label_of = {r["client_id"]: r["label_id"] for r in history}
    missing = sorted(c for c in acks if c not in label_of)
    wrong_id = sorted(c for c, lid in acks.items() if c in label_of and label_of[c] != lid)
    twice = sorted(c for c, n in stored.items() if n > 1)
    unacknowledged = sorted(c for c in label_of if c not in acks)
    labels_per_item = Counter(r["item_id"] for r in current)
    over = {i: n for i, n in labels_per_item.items() if n > per_item}
    over_with_leases = {i: labels_per_item[i] + live[i] for i in set(labels_per_item) | set(live)
                        if labels_per_item[i] + live[i] > per_item}
    checks = {"acknowledged": len(acks), "stored_rows": len(history), "current_labels": len(current),
              "acked_missing": missing[:20], "n_acked_missing": len(missing), "acked_wrong_label_id": wrong_id[:20],
              "client_ids_stored_twice": twice[:20], "n_client_ids_stored_twice": len(twice),
              "stored_never_acknowledged": len(unacknowledged),
              "max_labels_per_item": max(labels_per_item.values(), default=0),
              "items_over_per_item": over, "items_over_per_item_with_live_leases": over_with_leases}
    checks["ok"] = not (missing or wrong_id or twice or unacknowledged or over or over_with_leases)
    return checks


def run_one(db: str, args) -> dict:
    from annotation.store import Store

    tmp = Path(tempfile.mkdtemp(prefix=f"avs-load-{db}-"))
    data = tmp / "data"
    cluster = None
    if db == "sqlite":
        url = f"sqlite:///{data / 'annotation.db'}"
        where = "SQLite file (WAL, synchronous=FULL)"
    else:
        cluster = pg.server(durable=True)
        url = cluster.new_database(prefix="avs_load")
        where = ("PostgreSQL from AVSTUDIO_TEST_PG_URL" if os.environ.get(pg.ENV_URL)
                 else "throw-away PostgreSQL cluster (tests/pg.py), fsync on, unix socket")
    password = "load-test-password"
    server = ServerProcess(url, data, tmp / "server.log")
    try:
        store = Store(url, data=data)
        media = data / "media"
        items = [{"key": f"item{i:05d}", "payload": {"video": f"video/{i}.mp4",
                                                      "candidates": [f"tracks/{i}_{c}.wav" for c in range(3)]}}
                 for i in range(args.items)]
        store.create_task(TASK, "pair", items, media_root=media, per_item=args.per_item, gold_rate=0.0,
                          lease_s=args.lease_s)
        for k in range(args.annotators):
            store.add_user(f"ann{k:03d}", password=password)
        store.close()
        server.start()
        restarts: list[dict] = []
        stop = threading.Event()
        with tqdm(total=args.labels, desc=f"{db}: labels", unit="label", mininterval=2.0) as bar:
            run = Run(args.labels, bar)
            t0 = time.monotonic()
            kill_thread = threading.Thread(target=killer, args=(server, run, args.kills, stop, t0, restarts))
            kill_thread.start()
            workers = [threading.Thread(target=annotator, args=(k, server.base, password, run, args.dup_rate,
                                                                args.seed)) for k in range(args.annotators)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall = time.monotonic() - t0
            stop.set()
            kill_thread.join()
        server.stop()
        checks = verify(url, data, run.acks, args.per_item)
        result = {
            "database": where, "annotators": args.annotators, "labels_target": args.labels,
            "items": args.items, "per_item": args.per_item, "lease_s": args.lease_s,
            "labels_acknowledged": len(run.acks), "wall_s": round(wall, 2),
            "throughput_labels_per_s": round(len(run.acks) / wall, 2),
            "submit_latency_ms": percentiles(run.submit_ms),
            "duplicate_submit_latency_ms": percentiles(run.duplicate_ms),
            "next_latency_ms": percentiles(run.next_ms),
            "retries": {"connection_or_5xx": run.connection_retries, "deliberate_duplicates": run.deliberate_duplicates,
                        "first_answer_was_a_duplicate_ack": run.retried_ack_was_duplicate},
            "restarts": restarts, "n_restarts": len(restarts),
            "errors": dict(sorted(run.errors.items())),
            "server_errors": server.errors(),
            "checks": checks,
        }
        if checks["ok"] is False or len(restarts) != args.kills:
            result["server_log_tail"] = server.log_tail()
        return result
    finally:
        server.stop()
        try:
            if cluster is not None:
                try:
                    cluster.drop_database(url)
                finally:
                    cluster.stop()
        finally:
            if args.keep:
                print(f"{db}: database, data and server log kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--labels", type=int, default=2000, help="labels submitted in all")
    ap.add_argument("--items", type=int, default=800)
    ap.add_argument("--per-item", type=int, default=3)
    ap.add_argument("--lease-s", type=float, default=600.0)
    ap.add_argument("--kills", type=int, default=2, help="SIGKILLs of the server during the run")
    ap.add_argument("--dup-rate", type=float, default=0.1, help="share of submits sent twice on purpose")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (SQLite file, server log)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "annotation_load.json")
    args = ap.parse_args(argv)
    if args.items * args.per_item < args.labels + args.annotators:
        ap.error("too few items for the labels asked (items x per-item must exceed labels + annotators)")
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = {"task": {"kind": "pair", "items": args.items, "per_item": args.per_item},
               "databases": {db: run_one(db, args) for db in dbs}}
    for db, r in results["databases"].items():
        lat = r["submit_latency_ms"]
        print(f"{db}: {r['labels_acknowledged']} labels in {r['wall_s']} s ({r['throughput_labels_per_s']}/s), "
              f"submit p50 {lat.get('p50')} ms p95 {lat.get('p95')} ms, retries {r['retries']}, "
              f"restarts {r['n_restarts']}, errors {r['errors']}, server errors {r['server_errors']}, "
              f"checks ok: {r['checks']['ok']}")
    save_results(args.out, results, module="benchmarks.annotation_load",
                 argv=sys.argv[1:] if argv is None else argv, weights={})
    print(f"-> {args.out}")
    return 0 if all(r["checks"]["ok"] for r in results["databases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
