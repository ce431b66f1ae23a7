"""Webhook crash test: the real `freshet` binary in production mode (no --sandbox), the sandbox
bank in its own process, delivers 2,000 events (1,000 users connected through the journey with 2
accounts each, each first fetch announced by `user_initiated.succeeded`) to a real receiver on
loopback that answers slowly and sometimes with a 500, while the server is `kill -9`ed five
times mid-delivery and restarted. Afterwards every event must have reached the receiver at
least once, correctly signed, every delivery must have succeeded, and the attempt log must
account for every request the receiver saw. Usage: python3 scripts/webhook_crashtest.py path/to/freshet
"""
import base64, hashlib, hmac, json, os, random, signal, sqlite3, subprocess, sys, tempfile, threading, time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crashlib  # noqa: E402  (beside this script)

BIN = sys.argv[1]
USERS, ACCOUNTS, KILLS = 1000, 2, 5
EVENTS = USERS * ACCOUNTS
work = tempfile.mkdtemp(prefix="freshet-webhook-crash-")
db_path = os.path.join(work, "crash.db")
DB = f"sqlite://{db_path}"
PORT = crashlib.free_port()
BASE = f"http://127.0.0.1:{PORT}"
rng = random.Random(int(os.environ.get("CRASH_SEED", time.time())))

received = []          # (webhook-id, body eventId, signature ok)
seen_once = set()
lock = threading.Lock()
secret_key = None      # the decoded whsec_ bytes, once the subscription exists

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        want = "sha256=" + hmac.new(secret_key, body, hashlib.sha256).hexdigest()
        ok = want in self.headers.get("x-signature", "").split(",")
        event_id = json.loads(body)["eventId"]
        with lock:
            received.append((self.headers.get("webhook-id"), event_id, ok))
            first = event_id not in seen_once
            seen_once.add(event_id)
        time.sleep(0.02)  # slow enough that kills land mid-delivery
        # One first attempt in twenty fails: those go through the retry schedule too.
        status = 500 if first and rng.random() < 0.05 else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a killed server drops its connections mid-answer: expected here

receiver = Quiet(("127.0.0.1", 0), Hook)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
HOOK_URL = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"

def call(method, path, key, body=None):
    return crashlib.call(BASE, method, path, key, body)

# The bank, in its own process, registered as an operator would.
bank, bank_add = crashlib.start_bank(BIN, work, f"{BASE}/connect/callback")
subprocess.check_call([BIN, *bank_add, "--database-url", DB], stdout=subprocess.DEVNULL)

def start():
    return crashlib.start(BIN, BASE, PORT, DB, work, "--insecure-webhook-targets", "--worker-lease-seconds", "2",
                          "--webhook-lease-seconds", "6", sandbox=False)

created = json.loads(subprocess.check_output([BIN, "partner", "create", "--name", "crash", "--database-url", DB]))
key = created["apiKey"]
server = start()
status, sub = call("POST", "/v1/webhooks/subscriptions", key, {
    "targetUrl": HOOK_URL,
    "eventTypes": ["v1.account_transactions.user_initiated.succeeded"],
})
assert status == 201, (status, sub)
secret_key = base64.b64decode(sub["secret"][len("whsec_"):])

users = []
for wave in range(KILLS):
    for _ in range(USERS // KILLS):
        status, user = call("POST", "/v1/users", key)
        assert status == 201, (status, user)
        # Both accounts of a persona: the journey connects them and queues their first fetch.
        crashlib.connect_through_journey(BASE, key, user["userId"], rng.choice(["salaried", "gambler", "savings"]),
                                         "http://127.0.0.1:9/back")
        users.append(user["userId"])
    # Let fetches and deliveries run a little, then kill -9 in the middle of them.
    time.sleep(rng.uniform(0.3, 1.5))
    server.send_signal(signal.SIGKILL)
    server.wait()
    server = start()

con = sqlite3.connect(db_path, timeout=30)
deadline = time.time() + 240
while time.time() < deadline:
    events = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    open_deliveries = con.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE status != 'SUCCEEDED'").fetchone()[0]
    if events == EVENTS and open_deliveries == 0:
        break
    time.sleep(0.5)
server.send_signal(signal.SIGTERM)
server.wait()
bank.terminate()
receiver.shutdown()

checks, failures = {}, []
def check(name, ok, detail):
    checks[name] = ok
    if not ok:
        failures.append(f"{name}: {detail}")

event_ids = {row[0] for row in con.execute("SELECT id FROM events")}
check("every event committed", len(event_ids) == EVENTS, f"{len(event_ids)} of {EVENTS}")
delivered = {e for _, e, _ in received}
missing = event_ids - delivered
check("every event reached the receiver", not missing, f"{len(missing)} never arrived")
bad = [e for _, e, ok in received if not ok]
check("every request signed", not bad, f"{len(bad)} bad signatures")
check("webhook-id is the eventId", all(h == e for h, e, _ in received), "a webhook-id differs from its eventId")
statuses = dict(con.execute("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status").fetchall())
check("every delivery succeeded", statuses == {"SUCCEEDED": EVENTS}, f"{statuses}")
logged = dict(con.execute("SELECT event_id, COUNT(*) FROM webhook_attempts GROUP BY event_id").fetchall())
per_event = {}
for _, e, _ in received:
    per_event[e] = per_event.get(e, 0) + 1
unaccounted = [e for e, n in per_event.items() if logged.get(e, 0) < n]
check("the attempt log accounts for every request", not unaccounted,
      f"{len(unaccounted)} events had more requests than logged attempts")
in_progress = con.execute("SELECT COUNT(*) FROM webhook_attempts WHERE outcome = 'IN_PROGRESS'").fetchone()[0]
check("no attempt left in progress", in_progress == 0, f"{in_progress} in progress")
succeeded = con.execute("SELECT COUNT(DISTINCT event_id) FROM webhook_attempts WHERE outcome = 'SUCCEEDED'").fetchone()[0]
check("a logged 2xx for every event", succeeded == EVENTS, f"{succeeded} of {EVENTS}")
kinds = dict(con.execute("SELECT COALESCE(error_kind, 'OK'), COUNT(*) FROM webhook_attempts GROUP BY 1").fetchall())
print(f"webhook crash test: {len(event_ids)} events, {KILLS} kill -9s, {len(received)} requests received, "
      f"{sum(logged.values())} attempts logged {kinds}, redelivered events: {sum(1 for n in per_event.values() if n > 1)}")
for f in failures[:20]:
    print("  FAIL", f)
passed = sum(checks.values())
print(f"crashtest: {passed} passed, {len(checks) - passed} failed")
sys.exit(1 if failures else 0)
