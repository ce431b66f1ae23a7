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

On PostgreSQL (issue 15): BACKEND=postgres runs the same scenarios with the server on a
throw-away PostgreSQL of scripts/pg.sh (synchronous_commit=on, torn down at exit), a new
database for each run; the accounts and items are written straight into it in one
transaction too (COPY through psql), and FRESHET_MASTER_KEY is made up for the run.
BACKEND=sqlite,postgres runs each scenario on both, one after the other, and prints
PostgreSQL's accounts/s as a share of SQLite's. POOL=N sets the server's PostgreSQL pool
(?max_connections=N; the server's default when unset). Peak RSS is freshet's alone.

Usage: [BACKEND=sqlite|postgres|sqlite,postgres] python3 bench/engine.py target/release/freshet [N]
"""
import atexit, base64, json, os, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import crashlib  # noqa: E402

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HUNG_USERS = 50
BACKENDS = os.environ.get("BACKEND", "sqlite").split(",")
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
if not BACKENDS or any(b not in NAMES for b in BACKENDS):
    raise SystemExit(f"BACKEND is sqlite, postgres or sqlite,postgres, not {os.environ['BACKEND']!r}")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


class Sqlite:
    """The run's SQLite file, read and written with the sqlite3 module."""

    def __init__(self, work):
        self.path = os.path.join(work, "engine.db")
        self.url = f"sqlite://{self.path}"
        self.env = {}

    def open(self):
        self.con = sqlite3.connect(self.path, timeout=60)

    def row(self, sql):
        return self.con.execute(sql).fetchone()

    def insert(self, tables):
        """All of `tables` ([(table, columns, rows)]) in one transaction."""
        with self.con:
            for table, columns, rows in tables:
                self.con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                     rows)

    def close(self):
        self.con.close()


class Postgres:
    """A new database of the run on the throw-away PostgreSQL server, read through one psql
    session (no process nor connection per poll) and written with COPY."""
    server = None  # the URL of .../postgres, once started
    pg_dir = None
    count = 0

    @classmethod
    def start_server(cls):
        if cls.server:
            return
        # Under /tmp and open to the postgres user (pg.sh, run as root, chowns it).
        cls.pg_dir = tempfile.mkdtemp(prefix="freshet-engine-pg-", dir="/tmp")
        os.chmod(cls.pg_dir, 0o755)
        atexit.register(cls.stop_server)
        cls.server = subprocess.run(["bash", os.path.join(ROOT, "scripts", "pg.sh"), "start", cls.pg_dir],
                                    check=True, stdout=subprocess.PIPE, text=True).stdout.strip()

    @classmethod
    def stop_server(cls):
        if cls.pg_dir:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "pg.sh"), "stop", cls.pg_dir])
            cls.pg_dir = cls.server = None

    def __init__(self, work):
        Postgres.start_server()
        Postgres.count += 1
        self.name = f"engine{Postgres.count}"
        self.admin(f"CREATE DATABASE {self.name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        self.psql_url = f"{Postgres.server.rsplit('/', 1)[0]}/{self.name}"
        pool = os.environ.get("POOL")
        self.url = self.psql_url + (f"?max_connections={pool}" if pool else "")
        self.env = {"FRESHET_MASTER_KEY": os.environ.get("FRESHET_MASTER_KEY")
                    or base64.b64encode(os.urandom(32)).decode()}
        self.session = None

    @staticmethod
    def admin(sql):
        subprocess.run(["psql", Postgres.server, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True)

    def open(self):
        self.session = subprocess.Popen(["psql", self.psql_url, "-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def row(self, sql):
        """The first row of `sql`, numbers as ints and NULL as None (like sqlite3's)."""
        self.session.stdin.write(f"{sql};\n\\echo __end__\n")
        self.session.stdin.flush()
        rows = []
        while (line := self.session.stdout.readline()) != "__end__\n":
            if not line:
                raise SystemExit(f"psql failed on: {sql}")
            rows.append(line.rstrip("\n").split("\t"))
        return tuple(None if v == "" else int(v) if v.lstrip("-").isdigit() else v for v in rows[0]) if rows else None

    def insert(self, tables):
        """All of `tables` ([(table, columns, rows)]) in one transaction, by COPY from psql's
        input (every value is an id, a word or a number: no CSV quoting is needed); then
        ANALYZE, as autovacuum would have done on a database in service."""
        p = subprocess.Popen(["psql", self.psql_url, "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE, text=True)
        p.stdin.write("BEGIN;\n")
        for table, columns, rows in tables:
            p.stdin.write(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv);\n")
            p.stdin.writelines(",".join(str(v) for v in row) + "\n" for row in rows)
            p.stdin.write("\\.\n")
        p.stdin.write("COMMIT;\n")
        p.stdin.write(f"ANALYZE {', '.join(table for table, _, _ in tables)};\n")
        p.stdin.close()
        if p.wait():
            raise SystemExit(f"psql exited with {p.returncode} while seeding")

    def close(self):
        if self.session:
            self.session.stdin.close()
            self.session.wait()
            self.session = None
        self.admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def run(latency_ms, hung, backend="sqlite"):
    work = tempfile.mkdtemp(prefix="freshet-engine-")
    store = (Sqlite if backend == "sqlite" else Postgres)(work)
    db = store.url
    # The server and the freshet commands of this run see the backend's environment.
    saved_env = {k: os.environ.get(k) for k in store.env}
    os.environ.update(store.env)
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
    store.open()
    if hung:
        hung_users = []
        for _ in range(HUNG_USERS):
            status, user = call("POST", "/v1/users")
            assert status == 201
            crashlib.connect_through_journey(base, key, user["userId"], "salaried", "http://127.0.0.1:9/back", bank_id="other")
            hung_users.append(user["userId"])
        while store.row("SELECT COUNT(*) FROM refresh_jobs WHERE status IN ('QUEUED', 'RUNNING')")[0]:
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
    store.insert([
        ("users", ("id", "partner_id", "source", "created_at"),
         ((uid(n), partner, "DIRECT", now_ms) for n in range(users))),
        ("accounts", ("id", "user_id", "provider_name", "account_type", "currency", "balance", "consent_status",
                      "last_transaction_refresh_date", "in_flight_since", "bank_id", "bank_account_id", "bank_consent_id",
                      "created_at"),
         ((aid(n, k), uid(n), "Monzo", "CURRENT", "GBP", "1.00", "ACTIVE", now_ms - 86_400_000, now_ms, "sandbox", aid(n, k),
           f"sbx.{personas[k]}.{partner}.{aid(n, k)}", now_ms) for n in range(users) for k in range(3))),
        ("refresh_jobs", ("id", "partner_id", "user_id", "status", "created_at", "kind"),
         ((jid(n), partner, uid(n), "QUEUED", now_ms, "ON_DEMAND") for n in range(users))),
        ("refresh_job_items", ("job_id", "account_id", "state"),
         ((jid(n), aid(n, k), "QUEUED") for n in range(users) for k in range(3))),
    ])
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
    while store.row("SELECT COUNT(*) FROM refresh_job_items WHERE job_id LIKE '00000000-0000-4000-a000-%'"
                    " AND state IN ('QUEUED', 'RUNNING')")[0]:
        # Coarse: the figures come from the server's own timestamps, and this scan costs CPU.
        time.sleep(0.25)
    stop.set()
    prober.join()
    first, last, failed = store.row(
        "SELECT MIN(started_at), MAX(finished_at), SUM(CASE WHEN state = 'FAILED' THEN 1 ELSE 0 END) FROM refresh_job_items"
        " WHERE job_id LIKE '00000000-0000-4000-a000-%'")
    # The webhooks land shortly after the last commit.
    deadline = time.time() + 60
    while time.time() < deadline and store.row(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'PENDING'")[0] > HUNG_USERS * 2 * hung:
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
    hung_open = store.row(
        "SELECT COUNT(*) FROM refresh_job_items i JOIN accounts a ON a.id = i.account_id"
        " WHERE a.bank_id = 'other' AND i.state IN ('QUEUED', 'RUNNING')")[0] if hung else 0
    store.close()
    for k, v in saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(work, ignore_errors=True)
    return {
        **({} if backend == "sqlite" else {"backend": backend}),
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
# SCENARIOS="0,0h,500,500h" (the default): bank latency in ms, "h" with the hung second bank.
# REPEAT=3 (the default) runs each that many times, in turn; the table has each figure's median.
# With several BACKENDS, each run of a scenario is made on each backend in turn.
scenarios = os.environ.get("SCENARIOS", "0,0h,500,500h").split(",")
repeat = int(os.environ.get("REPEAT", "3"))
runs = {(s, b): [] for s in scenarios for b in BACKENDS}
# SIGTERM ends the run as Ctrl-C does: the PostgreSQL server is stopped on the way out.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
for _ in range(repeat):
    for scenario in scenarios:
        for backend in BACKENDS:
            latency_ms, hung = int(scenario.rstrip("h")), scenario.endswith("h")
            r = run(latency_ms, hung, backend)
            print(json.dumps(r), flush=True)
            runs[scenario, backend].append(r)
Postgres.stop_server()


def median_of(rs):
    m = dict(rs[0])
    for k, v in rs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m[k] = statistics.median(r[k] for r in rs)
    m["all"] = [round(r["accounts_per_s"]) for r in rs]
    return m


# On SQLite alone, the table as it always was; otherwise with the backend in a first column.
show_backend = BACKENDS != ["sqlite"]
by_backend = {b: [median_of(runs[s, b]) for s in scenarios] for b in BACKENDS}
print(f"\n|{' backend |' if show_backend else ''} bank | second bank | accounts/s (median; runs) | trigger → webhook p50 / p99 | /healthz p99 | peak RSS | webhooks | failed |")
print("|---" * (8 + show_backend) + "|")
for backend, rows in by_backend.items():
    for r in rows:
        second = f"hung ({HUNG_USERS * 2} accounts, still open: {r['hung_open']:.0f})" if r["hung"] else "—"
        print(f"|{f' {NAMES[backend]} |' if show_backend else ''} {r['bank']} | {second} | **{r['accounts_per_s']:,.0f}** ({' · '.join(f'{x:,}' for x in r['all'])})"
              f" | {r['p50'] / 1000:.2f} s / {r['p99'] / 1000:.2f} s"
              f" | {r['healthz_p99']:.1f} ms | {r['rss_mb']:.0f} MB | {r['webhooks']:,.0f} of {N:,} | {r['failed']:.0f} |")
for backend, rows in by_backend.items():
    for a, b in zip(rows[::2], rows[1::2]) if len(rows) == 4 else ():
        print(f"\n{f'{NAMES[backend]}, ' if show_backend else ''}{a['bank']}: with a hung bank, throughput {b['accounts_per_s'] / a['accounts_per_s']:.2f}×, "
              f"p99 {b['p99'] / a['p99']:.2f}× of the run without")
if "sqlite" in by_backend and "postgres" in by_backend:
    print()
    for scenario, lite, pg in zip(scenarios, by_backend["sqlite"], by_backend["postgres"]):
        hung = ", hung second bank" if lite["hung"] else ""
        print(f"PostgreSQL / SQLite, bank {lite['bank']}{hung}: accounts/s {pg['accounts_per_s'] / lite['accounts_per_s']:.0%}"
              f" ({pg['accounts_per_s']:,.0f} / {lite['accounts_per_s']:,.0f})"
              + (" — issue 15's target: ≥ 50 % at 0 ms" if scenario == "0" else ""))
