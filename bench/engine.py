"""Refresh engine benchmark (issue 13): the engine, not its client. Every figure of one run
comes from the release binary, a real SQLite file (synchronous=FULL), the sandbox bank over
HTTP in-process, and webhook deliveries to a local Node receiver.

For each scenario a fresh server is started with a webhook subscription to the receiver; then
N accounts (N/3 users × 3) with an open on-demand job item each are written straight into the
database in one transaction (no trigger client), and one API refresh wakes the workers. The
run ends when every item has ended. Reported:
- accounts/s: N / (last item's end − first item's start), the server's own timestamps;
- trigger → `on_demand_refresh.succeeded` webhook at the receiver, p50 / p99 (all N triggered
  at once, so the p50 is about half the drain time);
- `/healthz` p99 during the run (one client, a request every 10 ms);
- the server's peak RSS.
Scenarios: the sandbox bank at 0 ms, then at 500 ms ±30 %; each also with a second bank
(`freshet sandbox-bank` in its own process, 100 accounts connected through the journey)
hung — every call to it times out — while its accounts are being refreshed.

Usage: python3 bench/engine.py target/release/freshet [N]
"""
import json, os, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import crashlib  # noqa: E402

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HUNG_USERS = 50


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def run(latency_ms, hung):
    work = tempfile.mkdtemp(prefix="freshet-engine-")
    db_path = os.path.join(work, "engine.db")
    db = f"sqlite://{db_path}"
    port = 3170 + (latency_ms > 0) * 2 + hung
    base = f"http://127.0.0.1:{port}"
    receiver_port = port + 100
    receiver = subprocess.Popen(["node", os.path.join(ROOT, "bench", "receiver.mjs"),
                                 os.path.join(work, "arrivals.jsonl"), str(receiver_port)],
                                stdout=subprocess.PIPE, text=True)
    receiver.stdout.readline()
    bank = None
    if hung:
        bank, bank_add = crashlib.start_bank(BIN, work, f"{base}/connect/callback")
        bank_add = [a if a != "sandbox-bank" else "other" for a in bank_add]
        subprocess.check_call([BIN, *bank_add, "--max-in-flight", "32", "--requests-per-second", "1000",
                               "--database-url", db], stdout=subprocess.DEVNULL)
        bank_base = next(a for a in bank_add if a.startswith("http")).split("/open-banking")[0]
    created = json.loads(subprocess.check_output([BIN, "partner", "create", "--name", "bench", "--database-url", db]))
    key, partner = created["apiKey"], created["partnerId"]
    os.environ["RUST_LOG"] = "warn"
    # The scheduler stays out (30 days); a one-second interval lets the hung bank's accounts,
    # fetched when they were connected, be refreshed again at once.
    server = crashlib.start(BIN, base, port, db, work, "--insecure-webhook-targets",
                            "--scheduled-refresh-seconds", str(30 * 86400), "--refresh-interval-seconds", "1")
    call = lambda method, path, body=None: crashlib.call(base, method, path, key, body)
    status, sub = call("POST", "/v1/webhooks/subscriptions", {
        "targetUrl": f"http://127.0.0.1:{receiver_port}/hooks",
        "eventTypes": ["v1.account_transactions.on_demand_refresh.succeeded"]})
    assert status == 201, (status, sub)
    if latency_ms:
        status, _ = call("POST", "/sandbox/v1/bank/faults", {"latencyMs": latency_ms, "jitterPercent": 30})
        assert status == 204, status
    con = sqlite3.connect(db_path, timeout=60)
    if hung:
        hung_users = []
        for _ in range(HUNG_USERS):
            status, user = call("POST", "/v1/users")
            assert status == 201
            crashlib.connect_through_journey(base, key, user["userId"], "salaried", "http://127.0.0.1:9/back", bank_id="other")
            hung_users.append(user["userId"])
        while con.execute("SELECT COUNT(*) FROM refresh_jobs WHERE status IN ('QUEUED', 'RUNNING')").fetchone()[0]:
            time.sleep(0.2)
        time.sleep(1.1)
        req = urllib.request.Request(f"{bank_base}/faults", data=json.dumps({"kind": "HANG"}).encode(), method="POST",
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        for user in hung_users:
            status, answer = call("POST", f"/v1/users/{user}/accounts-refresh")
            assert status == 201, (status, answer)
        time.sleep(0.5)  # their fetches are out, hanging

    # N accounts with an open item each, written at once.
    users = N // 3
    now_ms = int(time.time() * 1000)
    uid = lambda n: f"00000000-0000-4000-8000-{n:012d}"
    aid = lambda n, k: f"00000000-0000-4000-9000-{n * 3 + k:012d}"
    jid = lambda n: f"00000000-0000-4000-a000-{n:012d}"
    personas = ["salaried", "gambler", "overdraft"]
    with con:
        con.executemany("INSERT INTO users (id, partner_id, source, created_at) VALUES (?, ?, 'DIRECT', ?)",
                        ((uid(n), partner, now_ms) for n in range(users)))
        con.executemany(
            "INSERT INTO accounts (id, user_id, provider_name, account_type, currency, balance, consent_status,"
            " last_transaction_refresh_date, in_flight_since, bank_id, bank_account_id, bank_consent_id, created_at)"
            " VALUES (?, ?, 'Monzo', 'CURRENT', 'GBP', '1.00', 'ACTIVE', ?, ?, 'sandbox', ?, ?, ?)",
            ((aid(n, k), uid(n), now_ms - 86_400_000, now_ms, aid(n, k),
              f"sbx.{personas[k]}.{partner}.{aid(n, k)}", now_ms) for n in range(users) for k in range(3)))
        con.executemany("INSERT INTO refresh_jobs (id, partner_id, user_id, status, created_at, kind)"
                        " VALUES (?, ?, ?, 'QUEUED', ?, 'ON_DEMAND')",
                        ((jid(n), partner, uid(n), now_ms) for n in range(users)))
        con.executemany("INSERT INTO refresh_job_items (job_id, account_id, state) VALUES (?, ?, 'QUEUED')",
                        ((jid(n), aid(n, k)) for n in range(users) for k in range(3)))
    triggered = time.time() * 1000
    # One refresh through the API wakes the workers (the seed was not theirs to hear of);
    # its answer does not matter (the user's accounts are in flight already).
    call("POST", f"/v1/users/{uid(0)}/accounts-refresh")

    health = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t = time.perf_counter()
            urllib.request.urlopen(f"{base}/healthz", timeout=10).read()
            health.append((time.perf_counter() - t) * 1000)
            time.sleep(0.01)
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    seeded = [aid(n, k) for n in range(users) for k in range(3)]
    while con.execute("SELECT COUNT(*) FROM refresh_job_items WHERE job_id LIKE '00000000-0000-4000-a000-%'"
                      " AND state IN ('QUEUED', 'RUNNING')").fetchone()[0]:
        # Coarse: the figures come from the server's own timestamps, and this scan costs CPU.
        time.sleep(0.25)
    stop.set()
    prober.join()
    first, last, failed = con.execute(
        "SELECT MIN(started_at), MAX(finished_at), SUM(state = 'FAILED') FROM refresh_job_items"
        " WHERE job_id LIKE '00000000-0000-4000-a000-%'").fetchone()
    # The webhooks land shortly after the last commit.
    deadline = time.time() + 60
    while time.time() < deadline and con.execute(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'PENDING'").fetchone()[0] > HUNG_USERS * 2 * hung:
        time.sleep(0.1)
    rss_kb = int(next(l for l in open(f"/proc/{server.pid}/status") if l.startswith("VmHWM")).split()[1])
    server.send_signal(signal.SIGTERM)
    server.wait()
    receiver.send_signal(signal.SIGTERM)
    receiver.wait()
    if bank:
        bank.kill()
    wanted = set(seeded)
    arrivals = {}
    for line in open(os.path.join(work, "arrivals.jsonl")):
        event_id, kind, at, account = json.loads(line)
        if account in wanted and kind.endswith("on_demand_refresh.succeeded"):
            arrivals.setdefault(account, at)
    latency = [at - triggered for at in arrivals.values()]
    hung_open = con.execute(
        "SELECT COUNT(*) FROM refresh_job_items i JOIN accounts a ON a.id = i.account_id"
        " WHERE a.bank_id = 'other' AND i.state IN ('QUEUED', 'RUNNING')").fetchone()[0] if hung else 0
    con.close()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "bank": f"{latency_ms} ms" + (" ±30 %" if latency_ms else ""),
        "hung": hung,
        "accounts_per_s": N / ((last - first) / 1000),
        "failed": failed,
        "webhooks": len(arrivals),
        "p50": pct(latency, 50), "p99": pct(latency, 99),
        "healthz_p99": pct(health, 99), "healthz_n": len(health),
        "rss_mb": rss_kb / 1024,
        "hung_open": hung_open,
    }


# SCENARIOS="0,0h,500,500h" (the default): bank latency in ms, "h" with the hung second bank.
# REPEAT=3 (the default) runs each that many times, in turn; the table has each figure's median.
scenarios = os.environ.get("SCENARIOS", "0,0h,500,500h").split(",")
repeat = int(os.environ.get("REPEAT", "3"))
runs = {s: [] for s in scenarios}
for _ in range(repeat):
    for scenario in scenarios:
        latency_ms, hung = int(scenario.rstrip("h")), scenario.endswith("h")
        r = run(latency_ms, hung)
        print(json.dumps(r), flush=True)
        runs[scenario].append(r)


def median_of(rs):
    m = dict(rs[0])
    for k, v in rs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m[k] = statistics.median(r[k] for r in rs)
    m["all"] = [round(r["accounts_per_s"]) for r in rs]
    return m


rows = [median_of(runs[s]) for s in scenarios]
print(f"\n| bank | second bank | accounts/s (median; runs) | trigger → webhook p50 / p99 | /healthz p99 | peak RSS | webhooks | failed |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    second = f"hung ({HUNG_USERS * 2} accounts, still open: {r['hung_open']:.0f})" if r["hung"] else "—"
    print(f"| {r['bank']} | {second} | **{r['accounts_per_s']:,.0f}** ({' · '.join(f'{x:,}' for x in r['all'])})"
          f" | {r['p50'] / 1000:.2f} s / {r['p99'] / 1000:.2f} s"
          f" | {r['healthz_p99']:.1f} ms | {r['rss_mb']:.0f} MB | {r['webhooks']:,.0f} of {N:,} | {r['failed']:.0f} |")
for a, b in zip(rows[::2], rows[1::2]) if len(rows) == 4 else ():
    print(f"\n{a['bank']}: with a hung bank, throughput {b['accounts_per_s'] / a['accounts_per_s']:.2f}×, "
          f"p99 {b['p99'] / a['p99']:.2f}× of the run without")
