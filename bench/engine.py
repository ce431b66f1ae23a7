"""Refresh engine benchmark: account refreshes completed per second against a zero-latency
sandbox bank, and commit → SSE delivery latency, in one run of the release binary.

Usage: python3 bench/engine.py target/release/freshet [USERS]
Seeds USERS direct users (default 2,000) with 3 accounts each, all refreshed a day ago
(stale for an on-demand refresh; the scheduler's period is set to 30 days so it stays out),
opens one SSE stream, triggers every user's refresh from 16 threads, and waits until every
job has ended. Each event's latency is its arrival on the stream minus its commit time
(`events.created_at`, written in the committing transaction).
"""
import http.client, json, os, sqlite3, subprocess, sys, tempfile, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

BIN = sys.argv[1]
USERS = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
work = tempfile.mkdtemp(prefix="freshet-engine-")
db_path = os.path.join(work, "engine.db")
DB = f"sqlite://{db_path}"
PORT = 3188
created = json.loads(subprocess.check_output([BIN, "partner", "create", "--name", "bench", "--database-url", DB]))
key, partner = created["apiKey"], created["partnerId"]

now_ms = int(time.time() * 1000)
con = sqlite3.connect(db_path)
with con:
    uid = lambda n: f"00000000-0000-4000-8000-{n:012d}"
    con.executemany("INSERT INTO users (id, partner_id, source, created_at) VALUES (?, ?, 'DIRECT', ?)",
                    ((uid(n), partner, now_ms) for n in range(USERS)))
    aid = lambda n, k: f"00000000-0000-4000-9000-{n * 3 + k:012d}"
    # The sandbox bank's link: its account id is ours, its consent names a persona.
    con.executemany(
        "INSERT INTO accounts (id, user_id, provider_name, account_type, currency, balance, consent_status,"
        " last_transaction_refresh_date, bank_id, bank_account_id, bank_consent_id, created_at)"
        " VALUES (?, ?, 'Monzo', 'CURRENT', 'GBP', '1.00', 'ACTIVE', ?, 'sandbox', ?, ?, ?)",
        ((aid(n, k), uid(n), now_ms - 86_400_000, aid(n, k),
          f"sbx.{['salaried', 'gambler', 'overdraft'][k]}.{partner}.{aid(n, k)}", now_ms)
         for n in range(USERS) for k in range(3)))
con.close()

log = open(os.path.join(work, "server.log"), "w")
# One partner triggers everything: the per-partner API limit is off.
server = subprocess.Popen([BIN, "serve", "--sandbox", "--database-url", DB, "--bind", f"127.0.0.1:{PORT}",
                           "--api-requests-per-second", "0",
                           "--scheduled-refresh-seconds", str(30 * 86400), "--site-root", work],
                          stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1)
        break
    except Exception:
        time.sleep(0.05)

arrivals = {}
def listen():
    c = http.client.HTTPConnection("127.0.0.1", PORT)
    c.request("GET", "/v1/events", headers={"x-api-key": key})
    r = c.getresponse()
    event_id = None
    while True:
        line = r.fp.readline()
        if not line:
            return
        if line.startswith(b"id: "):
            event_id = int(line[4:])
            arrivals[event_id] = time.time()
threading.Thread(target=listen, daemon=True).start()
time.sleep(0.5)

def refresh(n):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/v1/users/00000000-0000-4000-8000-{n:012d}/accounts-refresh",
                                 method="POST", headers={"x-api-key": key})
    with urllib.request.urlopen(req) as r:
        assert r.status == 201
started = time.time()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(refresh, range(USERS)))
triggered = time.time()
con = sqlite3.connect(db_path, timeout=30)
while con.execute("SELECT COUNT(*) FROM refresh_jobs WHERE status IN ('QUEUED', 'RUNNING')").fetchone()[0]:
    time.sleep(0.05)
ended = time.time()
time.sleep(1.0)
server.terminate()
server.wait()

accounts = USERS * 3
commits = dict(con.execute("SELECT seq, created_at FROM events").fetchall())
lat = sorted((arrivals[s] * 1000 - c) for s, c in commits.items() if s in arrivals)
pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
stored = con.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
print(f"| account refreshes completed | {accounts:,} in {ended - started:.2f} s = **{accounts / (ended - started):,.0f} /s** "
      f"(triggering took {triggered - started:.2f} s; {stored:,} transactions stored) |")
print(f"| commit → SSE delivery, {len(lat):,} of {len(commits):,} events | p50 **{pct(50):.1f} ms**, p99 **{pct(99):.1f} ms** |")
