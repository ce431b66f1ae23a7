"""Crash test: the real `freshet` binary, refreshes for 200 users against a slow sandbox bank,
`kill -9` at random moments (5 times), restarts; then every 201's job must reach a terminal
state, every triggered account must have exactly one terminal event per job, and no
transaction may be stored twice. Usage: python3 scripts/crashtest.py path/to/freshet
"""
import json, os, random, signal, sqlite3, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crashlib  # noqa: E402  (beside this script)

BIN = sys.argv[1]
USERS, KILLS = 200, 5
work = tempfile.mkdtemp(prefix="freshet-crash-")
db_path = os.path.join(work, "crash.db")
DB = f"sqlite://{db_path}"
PORT = 3190 + random.randint(0, 9)
BASE = f"http://127.0.0.1:{PORT}"
rng = random.Random(int(os.environ.get("CRASH_SEED", time.time())))

def call(method, path, key, body=None):
    return crashlib.call(BASE, method, path, key, body)

def start():
    return crashlib.start(BIN, BASE, PORT, DB, work, "--worker-lease-seconds", "2", "--scheduled-refresh-seconds", str(30 * 86400))

def slow_bank(key):
    status, _ = call("POST", "/sandbox/v1/bank/faults", key, {"latencyMs": 150})
    assert status == 204, status

created = json.loads(subprocess.check_output([BIN, "partner", "create", "--name", "crash", "--database-url", DB]))
key = created["apiKey"]
server = start()
slow_bank(key)
users = []
for _ in range(USERS):
    status, user = call("POST", "/v1/users", key)
    assert status == 201, (status, user)
    # Refreshed five days ago: stale for an on-demand refresh, with days of new transactions
    # at the bank (the scheduler's period is set longer, so it leaves these accounts alone).
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 5 * 86400))
    accounts = [{"persona": rng.choice(["salaried", "gambler", "overdraft", "savings"]),
                 "lastTransactionRefreshDate": hour_ago} for _ in range(3)]
    status, body = call("POST", f"/sandbox/v1/users/{user['userId']}/accounts", key, {"accounts": accounts})
    assert status == 201, (status, body)
    users.append(user["userId"])

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
    slow_bank(key)

# Wait for every job to end (leases of killed workers expire after 2 s).
deadline = time.time() + 120
con = sqlite3.connect(db_path, timeout=30)
while time.time() < deadline:
    open_jobs = con.execute("SELECT COUNT(*) FROM refresh_jobs WHERE status IN ('QUEUED', 'RUNNING')").fetchone()[0]
    if open_jobs == 0:
        break
    time.sleep(0.5)
server.send_signal(signal.SIGTERM)
server.wait()

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
passed = sum(checks.values())
print(f"crashtest: {passed} passed, {len(checks) - passed} failed")
sys.exit(1 if failures else 0)
