"""Load test of the FaLa labeler: N concurrent raters saving gradings against SQLite over HTTP.

Starts `lumbar label serve` in a child process on a phantom image set, logs in N raters (each
optionally with several browser tabs, which race each other and so exercise the optimistic
locking), and has every tab save random Table 3 grades for the given time. Afterwards it checks
that no grade was lost or corrupted: each slot's stored values equal the last values the server
accepted for it, and replaying the audit trail reproduces every stored row. Prints save
latency percentiles (target: p95 under 50 ms) and throughput.

    .venv/bin/python benchmarks/labeler.py --raters 20 --seconds 120
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

FIELDS = ("disc_state", "herniation", "scs", "rfs", "lfs")
LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


def make_images(folder: Path, patients: int) -> list[str]:
    """A small ingest-like folder (random PNGs): the load is on the database, not the images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = ["patient_id,view,level,image,source_uid_hash"]
    ids = [f"P{n:012x}" for n in range(1, patients + 1)]
    for pid in ids:
        (folder / pid).mkdir(parents=True)
        views = [("myelo", ""), ("myelo", ""), ("sagittal_t2", "")]
        for i, (view, level) in enumerate(views + [("axial_t2", lv) for lv in LEVELS]):
            Image.fromarray((rng.random((64, 64)) * 255).astype("uint8")).save(
                folder / pid / f"{i}.png"
            )
            lines.append(f"{pid},{view},{level},{pid}/{i}.png,{'0' * 64}")
    (folder / "images.csv").write_text("\n".join(lines) + "\n")
    return ids


class Tab:
    """One browser tab of one rater: a session and its saves."""

    def __init__(self, base: str, name: str, password: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=30)
        page = self.client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = self.client.post(
            "/login", data={"username": name, "password": password, "csrf_token": token}
        )
        assert r.status_code == 303, r.text
        self.name = name
        self.csrf = ""
        self.latencies: list[float] = []
        self.server_ms: list[float] = []  # the handler's own time, from Server-Timing
        self.saved = 0
        self.conflicts = 0
        self.errors = 0
        # last (version, grades) the server accepted, per (patient, level)
        self.accepted: dict[tuple[str, str], tuple[int, dict]] = {}

    def run(self, patients: list[str], until: float, seed: int, think: float) -> None:
        rng = random.Random(seed)
        page = self.client.get(f"/patients/{patients[0]}")
        self.csrf = re.search(r'"csrf": "([^"]+)"', page.text).group(1)
        versions: dict[tuple[str, str], int] = {}
        while time.monotonic() < until:
            pid, level = rng.choice(patients), rng.choice(LEVELS)
            field = rng.choice(FIELDS)
            value = rng.randint(0, 3)
            if field == "herniation":
                changes = {"disc_state": 3, "herniation": value}
            else:
                changes = {field: value}
            start = time.perf_counter()
            r = self.client.put(
                f"/api/patients/{pid}/gradings/{level}",
                json={"version": versions.get((pid, level), 0), "changes": changes},
                headers={"X-CSRF-Token": self.csrf},
            )
            self.latencies.append(time.perf_counter() - start)
            timing = r.headers.get("server-timing", "")
            if timing.startswith("app;dur="):
                self.server_ms.append(float(timing.split("=", 1)[1]))
            if r.status_code == 200:
                body = r.json()
                versions[(pid, level)] = body["version"]
                key = (pid, level)
                if key not in self.accepted or self.accepted[key][0] < body["version"]:
                    self.accepted[key] = (body["version"], body["grades"])
                self.saved += 1
            elif r.status_code == 409:  # another tab saved first: take its version and go on
                current = r.json()["current"]
                versions[(pid, level)] = current["version"] if current else 0
                self.conflicts += 1
            else:
                self.errors += 1
            if think:
                time.sleep(rng.uniform(0.5, 1.5) * think)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--tabs", type=int, default=1, help="tabs per rater (racing each other)")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path(__file__).with_suffix(".csv"),
        help="figures CSV; a row per run is appended",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=0.5,
        help="mean seconds between one tab's saves (a fast keyboard rater: 0.5; 0: flat out)",
    )
    args = parser.parse_args()

    from lumbar.labeler.store import Store, rater_slot

    work = Path(tempfile.mkdtemp(prefix="fala-bench-"))
    patients = make_images(work / "ingest", args.patients)
    db = work / "fala.db"
    store = Store(str(db))
    passwords = {f"rater{i:02d}": f"bench-pass-{i:02d}" for i in range(args.raters)}
    for name, password in passwords.items():
        store.add_user(name, "radiologist", password)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lumbar = Path(sys.executable).with_name("lumbar")
    server = subprocess.Popen(
        [str(lumbar), "label", "serve", "--images", str(work / "ingest"), "--db", str(db),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(base + "/login", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        tabs = [Tab(base, n, p) for n, p in passwords.items() for _ in range(args.tabs)]
        until = time.monotonic() + args.seconds
        threads = [
            threading.Thread(target=t.run, args=(patients, until, i, args.think))
            for i, t in enumerate(tabs)
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)

    # ---- integrity: stored == last accepted, and the audit trail replays to the stored rows
    store = Store(str(db))
    users = {u.name: u.id for u in store.users()}
    stored = {(g.slot, g.patient_id, g.level): g for g in store.gradings()}
    lost = 0
    for tab_name in passwords:
        slot = rater_slot(users[tab_name])
        accepted: dict[tuple[str, str], tuple[int, dict]] = {}
        for tab in (t for t in tabs if t.name == tab_name):
            for key, (version, grades) in tab.accepted.items():
                if key not in accepted or accepted[key][0] < version:
                    accepted[key] = (version, grades)
        for (pid, level), (version, grades) in accepted.items():
            row = stored.get((slot, pid, level))
            if row is None or row.version != version or row.grades != grades:
                lost += 1
    replay: dict[tuple[str, str, str], dict] = {}
    for entry, _ in reversed(store.audit(limit=10**9)):
        if entry.action != "grade":
            continue
        values = replay.setdefault(
            (entry.slot, entry.patient_id, entry.level), dict.fromkeys(FIELDS)
        )
        if values[entry.field] != (None if entry.old is None else int(entry.old)):
            lost += 1  # an audit row whose "old" is not what the trail says was there
        values[entry.field] = None if entry.new is None else int(entry.new)
    corrupt = sum(1 for key, g in stored.items() if replay.get(key) != g.grades)
    store.close()

    latencies = sorted(x for t in tabs for x in t.latencies)
    saves = sum(t.saved for t in tabs)
    conflicts = sum(t.conflicts for t in tabs)
    errors = sum(t.errors for t in tabs)
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(0.95 * (len(latencies) - 1))] * 1000
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    print(
        f"raters={args.raters} tabs/rater={args.tabs} think={args.think}s "
        f"seconds={elapsed:.0f} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}"
    )
    print(
        f"saves={saves} ({saves / elapsed:.0f}/s) refused-stale={conflicts} errors={errors} "
        f"rows={len(stored)} audit-rows-replayed={sum(len(v) for v in replay.values())}"
    )
    print(f"save latency ms: p50={p50:.1f} p95={p95:.1f} p99={p99:.1f} (target p95 < 50)")
    handler = sorted(x for t in tabs for x in t.server_ms)
    if handler:
        h95 = handler[int(0.95 * (len(handler) - 1))]
        print(
            f"  of which in the request handler: p50={statistics.median(handler):.1f} p95={h95:.1f}"
        )
    print(f"lost updates={lost} corrupted rows={corrupt}")
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    header = "raters,tabs,think_s,seconds,saves_per_s,stale_refused,p50_ms,p95_ms,p99_ms,"
    header += "handler_p95_ms,lost,corrupted,cpus,load,date_utc"
    row = (
        f"{args.raters},{args.tabs},{args.think},{elapsed:.0f},{saves / elapsed:.1f},{conflicts},"
        f"{p50:.1f},{p95:.1f},{p99:.1f},{h95 if handler else float('nan'):.1f},{lost},{corrupt},"
        f"{os.cpu_count()},{os.getloadavg()[0]:.1f},{stamp}"
    )
    new = not args.csv.exists()
    with open(args.csv, "a", encoding="utf-8") as handle:
        handle.write((header + "\n" if new else "") + row + "\n")
    print(f"figures appended to {args.csv}")
    return 0 if lost == 0 and corrupt == 0 and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
