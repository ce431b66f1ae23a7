"""Webhook delivery, black-box (issue 13): the release binary's deliverer draining a backlog to
one fast local receiver (Node), at the default per-subscription limit (8 in flight) and at 64,
from backlogs of 5,000 and 50,000 events (a flat claim cost keeps the rate the same).

For each case a fresh server (a real SQLite file, synchronous=FULL) gets one subscription
through the API; then the events are written straight into the event log in one transaction
(the fan-out trigger queues their deliveries, as the engine's commits do). Deliveries/s is
(N − 1) / (last arrival − first arrival) at the receiver, whose clock is the one that counts.

Usage: python3 bench/webhooks.py target/release/freshet
"""
import json, os, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, time, uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import crashlib  # noqa: E402

BIN = sys.argv[1]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EVENT = "v1.account_transactions.on_demand_refresh.succeeded"


def run(backlog, per_subscription):
    work = tempfile.mkdtemp(prefix="freshet-hooks-")
    db_path = os.path.join(work, "hooks.db")
    db = f"sqlite://{db_path}"
    port = 3160
    base = f"http://127.0.0.1:{port}"
    out = os.path.join(work, "arrivals.jsonl")
    receiver = subprocess.Popen(["node", os.path.join(ROOT, "bench", "receiver.mjs"), out, str(port + 100)],
                                stdout=subprocess.PIPE, text=True)
    receiver.stdout.readline()
    created = json.loads(subprocess.check_output([BIN, "partner", "create", "--name", "bench", "--database-url", db]))
    key, partner = created["apiKey"], created["partnerId"]
    os.environ["RUST_LOG"] = "warn"
    server = crashlib.start(BIN, base, port, db, work, "--insecure-webhook-targets",
                            "--webhook-per-subscription", str(per_subscription),
                            "--webhook-per-partner", str(max(16, per_subscription)),
                            "--webhook-concurrency", str(max(64, per_subscription)))
    status, sub = crashlib.call(base, "POST", "/v1/webhooks/subscriptions", key, {
        "targetUrl": f"http://127.0.0.1:{port + 100}/hooks", "eventTypes": [EVENT]})
    assert status == 201, (status, sub)
    now_ms = int(time.time() * 1000)
    con = sqlite3.connect(db_path, timeout=60)
    with con:
        con.executemany("INSERT INTO events (id, partner_id, type, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                        ((str(uuid.uuid4()), partner, EVENT, json.dumps({"n": n}), now_ms) for n in range(backlog)))
    deadline = time.time() + 600
    while time.time() < deadline and con.execute(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'PENDING'").fetchone()[0]:
        time.sleep(0.1)
    server.send_signal(signal.SIGTERM)
    server.wait()
    receiver.send_signal(signal.SIGTERM)
    receiver.wait()
    arrivals = sorted(json.loads(line)[2] for line in open(out))
    succeeded = con.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'SUCCEEDED'").fetchone()[0]
    con.close()
    shutil.rmtree(work, ignore_errors=True)
    return {"backlog": backlog, "per_subscription": per_subscription, "arrived": len(arrivals),
            "succeeded": succeeded,
            "per_s": (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1000) if len(arrivals) > 1 else 0}


# CASES="8:5000,64:5000" runs only those (in-flight per subscription : backlog); REPEAT=3
# (the default) runs each that many times, in turn; the table has the medians.
cases = [tuple(map(int, c.split(":"))) for c in os.environ.get("CASES", "8:5000,8:50000,64:5000,64:50000").split(",")]
repeat = int(os.environ.get("REPEAT", "3"))
runs = {c: [] for c in cases}
for _ in range(repeat):
    for per_subscription, backlog in cases:
        r = run(backlog, per_subscription)
        print(json.dumps(r), flush=True)
        runs[(per_subscription, backlog)].append(r)
def delivered(r):
    return f"{r['arrived']:,} ({r['succeeded']:,})"


print("\n| in flight per subscription | backlog | deliveries/s (median; runs) | delivered (succeeded), each run |")
print("|---|---|---|---|")
for (per_subscription, backlog), rs in runs.items():
    rates = [r["per_s"] for r in rs]
    print(f"| {per_subscription} | {backlog:,} | **{statistics.median(rates):,.0f}** ({' · '.join(f'{x:,.0f}' for x in rates)})"
          f" | {' · '.join(delivered(r) for r in rs)} |")
