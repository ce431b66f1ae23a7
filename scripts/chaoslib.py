"""What the chaos suite (scripts/chaos) is made of, apart from freshet itself: a throw-away
PostgreSQL reached through `psql`, a webhook receiver that checks Standard Webhooks signatures,
a server-sent events client that resumes with Last-Event-ID on whichever replica answers, and a
proxy in front of the sandbox bank's account API that counts the fetches it sees.

`python3 scripts/chaoslib.py` checks the parts that need no freshet: the signature check
against the Standard Webhooks reference vector, the SSE parser, the receiver and the proxy.
"""
import base64, collections, hashlib, hmac, http.client, json, os, socket, subprocess, threading, time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- PostgreSQL -------------------------------------------------------------------------

class PsqlError(Exception):
    pass


def pg(command, pg_dir):
    """`bash scripts/pg.sh COMMAND DIR`; returns its stdout (the URL, for `start`)."""
    out = subprocess.run(["bash", os.path.join(HERE, "pg.sh"), command, pg_dir],
                         stdout=subprocess.PIPE, text=True, timeout=300)
    if out.returncode:
        raise PsqlError(f"pg.sh {command} {pg_dir} exited with {out.returncode}")
    return out.stdout.strip()


def psql(url, sql, timeout=60):
    """Rows of `sql` (lists of text fields; NULL is ''). Only for ids, numbers and statuses:
    a field holding a tab or a newline would break the rows."""
    env = dict(os.environ, PGCONNECT_TIMEOUT="5")
    out = subprocess.run(["psql", url, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode:
        raise PsqlError(out.stderr.strip() or f"psql exited with {out.returncode}")
    return [line.split("\t") for line in out.stdout.splitlines()]


def psql_value(url, sql, timeout=60):
    rows = psql(url, sql, timeout)
    return rows[0][0] if rows and rows[0] else None


def with_database(url, name):
    """`url` (…/postgres) with its database replaced by `name`."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


# ---- Standard Webhooks -------------------------------------------------------------------

def standard_signature(secret, msg_id, timestamp, body):
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with the bytes after `whsec_`."""
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify_standard(secret, msg_id, timestamp, body, header, now=None, tolerance=300):
    """Whether `header` (space-separated `v1,<base64>`) holds a valid signature of this
    message, made within `tolerance` seconds of `now` (the receiver's clock)."""
    if not msg_id or not timestamp or not header:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    want = standard_signature(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(part, want) for part in header.split(" ") if part.startswith("v1,"))


class Receiver:
    """A webhook receiver on a free loopback port. Every request's Standard Webhooks signature
    is checked (and the D•One `x-signature` too); a request answered 2xx is an acknowledged
    delivery, counted per event id. `fail_rate` of the first requests of an event are answered
    500, so that retries run too; `delay` (seconds, a range) keeps requests in flight."""

    def __init__(self, fail_rate=0.0, delay=(0.0, 0.0), rng=None):
        import random
        self.secret = None            # whsec_..., once the subscription exists
        self.fail_rate, self.delay = fail_rate, delay
        self.rng = rng or random.Random()
        self.lock = threading.Lock()
        self.requests = collections.Counter()   # event id -> requests
        self.acked = collections.Counter()      # event id -> requests answered 2xx
        self.bad = []                           # (event id, why) of requests failing a check
        self.failed_on_purpose = 0
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver.handle(self.headers, body)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = _Quiet(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, headers, body):
        msg_id = headers.get("webhook-id")
        try:
            event_id = json.loads(body)["eventId"]
        except (ValueError, KeyError, TypeError):
            event_id = None
        why = None
        if self.secret is None:
            why = "no subscription yet"
        elif not verify_standard(self.secret, msg_id, headers.get("webhook-timestamp"), body,
                                 headers.get("webhook-signature")):
            why = "bad webhook-signature"
        else:
            key = base64.b64decode(self.secret[len("whsec_"):])
            want = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
            if want not in headers.get("x-signature", "").split(","):
                why = "bad x-signature"
            elif event_id is None or msg_id != event_id:
                why = f"webhook-id {msg_id!r} is not the body's eventId {event_id!r}"
        lo, hi = self.delay
        if hi > 0:
            time.sleep(self.rng.uniform(lo, hi))
        with self.lock:
            if why:
                self.bad.append((event_id or msg_id, why))
                return 400
            first = self.requests[event_id] == 0
            self.requests[event_id] += 1
            if first and self.rng.random() < self.fail_rate:
                self.failed_on_purpose += 1
                return 500
            self.acked[event_id] += 1
            return 200

    def shutdown(self):
        self.server.shutdown()
        self.server.server_close()


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a killed replica drops its connections mid-request: expected here


# ---- Server-sent events ------------------------------------------------------------------

class SseParser:
    """The event-stream format (WHATWG HTML, server-sent events), one line at a time:
    `feed` returns an event {"id", "event", "data"} when a blank line ends one with data."""

    def __init__(self):
        self.last_id = None
        self._reset()

    def _reset(self):
        self.event, self.data = "", []

    def feed(self, line):
        line = line.rstrip("\r\n") if line.endswith("\n") or line.endswith("\r") else line
        if line == "":
            if not self.data:
                self._reset()
                return None
            ev = {"id": self.last_id, "event": self.event or "message", "data": "\n".join(self.data)}
            self._reset()
            return ev
        if line.startswith(":"):
            return None  # a comment: the keep-alive
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self.data.append(value)
        elif field == "event":
            self.event = value
        elif field == "id" and "\0" not in value:
            self.last_id = value
        return None


class SseClient(threading.Thread):
    """Reads `GET /v1/events` from one of `bases`; whenever the stream breaks (a killed
    replica, a reset, `read_timeout` seconds of silence — keep-alives come every 15), it
    resumes on the next base with `Last-Event-ID`. Records every event's (id, eventId)."""

    def __init__(self, bases, key, first=0, last_id="0", read_timeout=25):
        super().__init__(daemon=True)
        self.bases, self.key, self.index = bases, key, first
        self.last_id, self.read_timeout = last_id, read_timeout
        self.lock = threading.Lock()
        self.events = []                         # (id, eventId, connection number)
        self.counts = collections.Counter()      # eventId -> times seen
        self.connections = 0
        self.breaks = collections.Counter()      # why a connection ended
        self.refused = collections.Counter()     # non-200 answers to a (re)connection
        self.stopping = threading.Event()
        self._conn = None

    def seen(self):
        with self.lock:
            return set(self.counts)

    def run(self):
        while not self.stopping.is_set():
            base = urllib.parse.urlsplit(self.bases[self.index % len(self.bases)])
            conn = http.client.HTTPConnection(base.hostname, base.port, timeout=self.read_timeout)
            self._conn = conn
            try:
                headers = {"x-api-key": self.key, "accept": "text/event-stream"}
                if self.last_id is not None:
                    headers["Last-Event-ID"] = self.last_id
                conn.request("GET", "/v1/events", headers=headers)
                r = conn.getresponse()
                if r.status != 200:
                    body = r.read()[:200]
                    self.refused[f"{r.status} {body!r}"] += 1
                    raise ConnectionError(f"answered {r.status}")
                self.connections += 1
                parser = SseParser()
                while not self.stopping.is_set():
                    line = r.readline()
                    if not line:
                        raise EOFError("the stream ended")
                    ev = parser.feed(line.decode())
                    if ev:
                        self._record(ev)
            except Exception as e:  # noqa: BLE001  (every break is a reason to resume)
                if not self.stopping.is_set():
                    self.breaks[type(e).__name__] += 1
            finally:
                conn.close()
            if self.stopping.is_set():
                break
            self.index += 1
            time.sleep(0.1)

    def _record(self, ev):
        try:
            event_id = json.loads(ev["data"]).get("eventId")
        except ValueError:
            event_id = None
        with self.lock:
            self.events.append((ev["id"], event_id, self.connections))
            self.counts[event_id] += 1
        if ev["id"] is not None:
            self.last_id = ev["id"]

    def stop(self):
        self.stopping.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.join(10)


# ---- The bank's fetches ------------------------------------------------------------------

class BankProxy:
    """An HTTP proxy in front of the whole bank (freshet's `--discovery-url` and `--api-base`
    point here): forwards every request to `upstream` (http://host:port) as it is, except the
    discovery document, whose `token_endpoint` it points at itself. So it sees every token
    answer (the sandbox bank names the consent a token is for) and every call of the account
    API; it records, for each first page of an account's transactions, when it arrived, the
    consent (by the bearer token) and the bank's account id: one fetch. Tokens stay in memory."""

    def __init__(self, upstream):
        up = urllib.parse.urlsplit(upstream)
        self.upstream = (up.hostname, up.port)
        self.upstream_origin = f"http://{up.hostname}:{up.port}"
        self.lock = threading.Lock()
        self.fetches = []          # (unix seconds, consent id or None, bank account id)
        self.consent_of = {}       # access token -> consent id
        self.requests = collections.Counter()
        self.local = threading.local()
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self):
                proxy.handle(self)

            do_GET = do_POST = do_DELETE = do_PUT = forward

            def log_message(self, *args):
                pass

        self.server = _Quiet(("127.0.0.1", 0), Forward)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def base(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def _upstream(self, method, path, body, headers):
        """One request upstream. GETs reuse a kept-alive connection (once more on a fresh one
        if it went stale); anything else goes once, on a connection of its own: a refresh
        token is single-use, and sending its grant twice would end the consent."""
        if method != "GET":
            conn = http.client.HTTPConnection(*self.upstream, timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                return r.status, r.getheaders(), r.read()
            finally:
                conn.close()
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(*self.upstream, timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                return r.status, r.getheaders(), r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 1:
                    raise

    def handle(self, h):
        arrived = time.time()
        n = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(n) if n else None
        url = urllib.parse.urlsplit(h.path)
        parts = url.path.rstrip("/").split("/")
        bearer = h.headers.get("authorization", "")
        bearer = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None
        if h.command == "GET" and len(parts) >= 3 and parts[-1] == "transactions" and parts[-3] == "accounts":
            page = urllib.parse.parse_qs(url.query).get("page", ["1"])[0]
            if page == "1":
                with self.lock:
                    self.fetches.append((arrived, self.consent_of.get(bearer), urllib.parse.unquote(parts[-2])))
        with self.lock:
            self.requests[(h.command, parts[-1] if parts else "")] += 1
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() not in ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "host")}
        try:
            status, answer_headers, data = self._upstream(h.command, h.path, body, headers)
        except (OSError, http.client.HTTPException):
            h.send_error(502)
            return
        if status == 200 and url.path.endswith("/.well-known/openid-configuration"):
            doc = json.loads(data)
            doc["token_endpoint"] = doc["token_endpoint"].replace(self.upstream_origin, self.base(), 1)
            data = json.dumps(doc).encode()
        elif status == 200 and h.command == "POST" and url.path.endswith("/token"):
            try:
                tokens = json.loads(data)
                if tokens.get("access_token") and tokens.get("consent_id"):
                    with self.lock:
                        self.consent_of[tokens["access_token"]] = tokens["consent_id"]
            except ValueError:
                pass
        h.send_response(status)
        for k, v in answer_headers:
            if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"):
                h.send_header(k, v)
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def shutdown(self):
        self.server.shutdown()
        self.server.server_close()


# ---- Self-test ---------------------------------------------------------------------------

def selftest():
    # The Standard Webhooks reference vector (the specification's, and server/src/webhooks/signature.rs's).
    secret, msg_id, ts, body = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                1614265330, b'{"test": 2432232314}')
    sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert standard_signature(secret, msg_id, ts, body) == sig
    assert verify_standard(secret, msg_id, str(ts), body, sig, now=ts)
    assert verify_standard(secret, msg_id, str(ts), body, "v1,bm9wZQ== " + sig, now=ts)  # rotation
    assert not verify_standard(secret, msg_id, str(ts), body + b" ", sig, now=ts)
    assert not verify_standard(secret, msg_id + "x", str(ts), body, sig, now=ts)
    assert not verify_standard(secret, msg_id, str(ts), body, sig, now=ts + 301)  # too old
    assert not verify_standard(secret, msg_id, str(ts), body, "v2," + sig[3:], now=ts)

    # The SSE parser: ids, comments, multi-line data, an id carried over, CRLF.
    p, out = SseParser(), []
    for line in [": keep-alive\n", "id: 7\n", "event: v1.x\n", "data: {\"eventId\":\n", "data: \"e7\"}\n", "\n",
                 "\n", "id: 8\r\n", "data:{\"eventId\":\"e8\"}\r\n", "\r\n", "data: x\n", "\n"]:
        ev = p.feed(line)
        if ev:
            out.append(ev)
    assert out[0] == {"id": "7", "event": "v1.x", "data": "{\"eventId\":\n\"e7\"}"}, out[0]
    assert out[1] == {"id": "8", "event": "message", "data": "{\"eventId\":\"e8\"}"}, out[1]
    assert out[2]["id"] == "8" and len(out) == 3, out

    # The SSE client: two servers that each send two events after Last-Event-ID and hang up;
    # the client resumes on the other one from the last id it saw.
    log = []

    class Stream(BaseHTTPRequestHandler):
        def do_GET(self):
            after = int(self.headers.get("Last-Event-ID", "0"))
            log.append((self.server.server_address[1], self.headers.get("Last-Event-ID")))
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b": hello\n\n")
            for seq in (after + 1, after + 2):
                if seq <= 6:
                    self.wfile.write(f"id: {seq}\nevent: v1.x\ndata: {{\"eventId\": \"e{seq}\"}}\n\n".encode())
            self.wfile.flush()

        def log_message(self, *args):
            pass

    servers = [_Quiet(("127.0.0.1", 0), Stream) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    client = SseClient([f"http://127.0.0.1:{s.server_address[1]}" for s in servers], "k", last_id="0")
    client.start()
    for _ in range(100):
        if len(client.events) >= 6:
            break
        time.sleep(0.05)
    client.stop()
    assert [e for _, e, _ in client.events] == [f"e{n}" for n in range(1, 7)], client.events
    assert [last for _, last in log[:3]] == ["0", "2", "4"], log
    assert log[0][0] != log[1][0] and log[0][0] == log[2][0], log
    for s in servers:
        s.shutdown()

    # The receiver: a signed request is acknowledged; a forged one is not.
    import random
    rec = Receiver(rng=random.Random(1))
    rec.secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = json.dumps({"eventId": "ev1", "type": "v1.x"}).encode()
    now = str(int(time.time()))
    key = base64.b64decode(rec.secret[6:])
    good = {"webhook-id": "ev1", "webhook-timestamp": now,
            "webhook-signature": standard_signature(rec.secret, "ev1", now, body),
            "x-signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
            "content-type": "application/json"}
    u = urllib.parse.urlsplit(rec.url)
    for headers, want in [(good, 200), (dict(good, **{"webhook-signature": "v1,AAAA"}), 400), (good, 200)]:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        c.request("POST", u.path, body, headers)
        assert c.getresponse().status == want
        c.close()
    assert rec.acked["ev1"] == 2 and len(rec.bad) == 1, (rec.acked, rec.bad)
    rec.shutdown()

    # The proxy: counts first pages of transactions only, and forwards answers as they are.
    class Bank(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            data = json.dumps({"access_token": "at-1", "consent_id": "c-1"}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            port = self.server.server_address[1]
            doc = {"path": self.path, "token_endpoint": f"http://127.0.0.1:{port}/token"}
            data = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    bank = _Quiet(("127.0.0.1", 0), Bank)
    threading.Thread(target=bank.serve_forever, daemon=True).start()
    proxy = BankProxy(f"http://127.0.0.1:{bank.server_address[1]}")
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    c.request("GET", "/.well-known/openid-configuration")
    assert json.loads(c.getresponse().read())["token_endpoint"] == proxy.base("/token")
    c.request("POST", "/token", body=b"grant_type=refresh_token", headers={"content-type": "x"})
    assert json.loads(c.getresponse().read())["consent_id"] == "c-1"
    for path in ["/aisp/accounts/a.b.c/transactions", "/aisp/accounts/a.b.c/transactions?page=2",
                 "/aisp/accounts/a.b.c/transactions?fromBookingDateTime=x&page=1", "/aisp/accounts/a.b.c/balances"]:
        c.request("GET", path, headers={"authorization": "Bearer at-1"})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["path"] == path
    assert [(c, a) for _, c, a in proxy.fetches] == [("c-1", "a.b.c"), ("c-1", "a.b.c")], proxy.fetches
    proxy.shutdown()
    bank.shutdown()
    print("chaoslib: self-test passed")


if __name__ == "__main__":
    selftest()
