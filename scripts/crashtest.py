"""Crash test: the real `freshet` binary in production mode (no --sandbox), the sandbox bank in
its own process registered with `freshet bank add`, 200 users connected through the journey
(consent, authorization, callback); then refreshes against the bank made slow, `kill -9` of the
server at random moments (5 times), restarts; every 201's job must reach a terminal state,
every triggered account must have exactly one terminal event per job, and no transaction may
be stored twice. Usage: python3 scripts/crashtest.py path/to/freshet
"""
import json, os, random, signal, sqlite3, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crashlib  # noqa: E402  (beside this script)

BIN = sys.argv[1]
USERS, KILLS = 200, 5
work = tempfile.mkdtemp(prefix="freshet-crash-")
db_path = os.path.join(work, "crash.db")
DB = f"sqlite://{db_path}"
PORT = crashlib.free_port()
BASE = f"http://127.0.0.1:{PORT}"
rng = random.Random(int(os.environ.get("CRASH_SEED", time.time())))

def call(method, path, key, body=None):
    return crashlib.call(BASE, method, path, key, body)

# The bank, in its own process, registered as an operator would.
bank, bank_add = crashlib.start_bank(BIN, work, f"{BASE}/connect/callback")
subprocess.check_call([BIN, *bank_add, "--database-url", DB], stdout=subprocess.DEVNULL)
BANK_BASE = next(a for a in bank_add if a.startswith("http")).split("/open-banking")[0]

def start():
    # A one-second refresh interval: the accounts are stale again right after their first
    # fetch (the scheduler's period is set longer, so it leaves them alone).
    return crashlib.start(BIN, BASE, PORT, DB, work, "--worker-lease-seconds", "2",
                          "--scheduled-refresh-seconds", str(30 * 86400), "--refresh-interval-seconds", "1",
                          "--insecure-webhook-targets", sandbox=False)

def bank_latency(ms):
    req = urllib.request.Request(f"{BANK_BASE}/faults", data=json.dumps({"latencyMs": ms} if ms else {}).encode(),
                                 method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204, r.status

created = json.loads(subprocess.check_output([BIN, "partner", "create", "--name", "crash", "--database-url", DB]))
key = created["apiKey"]
server = start()
users = []
for _ in range(USERS):
    status, user = call("POST", "/v1/users", key)
    assert status == 201, (status, user)
    crashlib.connect_through_journey(BASE, key, user["userId"], rng.choice(["salaried", "gambler", "overdraft", "savings"]),
                                     "http://127.0.0.1:9/back")
    users.append(user["userId"])
con = sqlite3.connect(db_path, timeout=30)
# The first fetches end before the refreshes start (they would make the refreshes skip).
deadline = time.time() + 120
while time.time() < deadline and con.execute(
        "SELECT COUNT(*) FROM refresh_jobs WHERE status IN ('QUEUED', 'RUNNING')").fetchone()[0]:
    time.sleep(0.3)
time.sleep(1.1)
bank_latency(150)

jobs = {}
pending = list(users)
for k in range(KILLS):
    # Trigger a share of the refreshes, let the workers run a little, then kill -9.
    share = pending[: len(users) // KILLS]
    pending = pending[len(share):]
    for u in share:
        status, body = call("POST", f"/v1/users/{u}/accounts-refresh", key)
        assert status in (200, 201), (status, body)
        if status == 201:
            jobs[body["jobId"]] = [a["accountId"] for a in body["metadata"]["accounts"] if a["outcome"] == "TRIGGERED"]
    time.sleep(rng.uniform(0.1, 1.2))
    server.send_signal(signal.SIGKILL)
    server.wait()
    server = start()

# Wait for every job to end (leases of killed workers expire after 2 s).
deadline = time.time() + 120
while time.time() < deadline:
    open_jobs = con.execute("SELECT COUNT(*) FROM refresh_jobs WHERE status IN ('QUEUED', 'RUNNING')").fetchone()[0]
    if open_jobs == 0:
        break
    time.sleep(0.5)
server.send_signal(signal.SIGTERM)
server.wait()
bank.terminate()

failures = []
checks = {"terminal": True, "one event": True, "no duplicates": True, "none in flight": True}
statuses = dict(con.execute("SELECT id, status FROM refresh_jobs").fetchall())
events = {}
for payload, in con.execute("SELECT payload FROM events WHERE type LIKE 'v1.account_transactions.on_demand_refresh.%'"):
    p = json.loads(payload)
    events[(p["jobId"], p["accountId"])] = events.get((p["jobId"], p["accountId"]), 0) + 1
for job, accounts in jobs.items():
    if statuses.get(job) not in ("SUCCEEDED", "FAILED", "PARTIALLY_FAILED"):
        failures.append(f"job {job} ended as {statuses.get(job)}")
        checks["terminal"] = False
    for a in accounts:
        if events.get((job, a), 0) != 1:
            failures.append(f"job {job} account {a}: {events.get((job, a), 0)} terminal events")
            checks["one event"] = False
dupes = con.execute("SELECT COUNT(*) FROM (SELECT 1 FROM transactions GROUP BY account_id, bank_transaction_id HAVING COUNT(*) > 1)").fetchone()[0]
if dupes:
    failures.append(f"{dupes} duplicated transactions")
    checks["no duplicates"] = False
in_flight = con.execute("SELECT COUNT(*) FROM accounts WHERE in_flight_since IS NOT NULL").fetchone()[0]
if in_flight:
    failures.append(f"{in_flight} accounts still in flight")
    checks["none in flight"] = False
items = sum(len(a) for a in jobs.values())
print(f"crash test: {len(jobs)} jobs, {items} account fetches, {KILLS} kill -9s, "
      f"{con.execute('SELECT COUNT(*) FROM transactions').fetchone()[0]} transactions stored")
for f in failures[:20]:
    print("  FAIL", f)
if len(jobs) < USERS:
    failures.append(f"only {len(jobs)} of {USERS} refreshes triggered")
    checks["every user triggered"] = False
else:
    checks["every user triggered"] = True
# Nothing secret in the server's log: no OAuth code or token the bank issued (the sandbox bank
# prefixes them code-/at-/rt-), and not the client secret.
import re
log = open(os.path.join(work, "server.log")).read()
secret = open(os.path.join(work, "bank.secret")).read().strip()
leaked = re.findall(r"\b(?:code|at|rt)-[A-Za-z0-9_-]{43}\b", log) + ([secret] if secret in log else [])
checks["no secret in the log"] = not leaked
if leaked:
    failures.append(f"{len(leaked)} secrets in the server's log")
passed = sum(checks.values())
print(f"crashtest: {passed} passed, {len(checks) - passed} failed")
sys.exit(1 if failures else 0)
