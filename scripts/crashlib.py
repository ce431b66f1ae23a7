"""What both crash tests share: calling the API of a freshet server, and starting one."""
import json, os, socket, subprocess, time, urllib.error, urllib.request


def free_port():
    """A port nothing listens on now (a fixed one collided with other servers on the box);
    the server under test is restarted on it after each kill."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, key, body=None):
    """One API call; returns (status, JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"x-api-key": key})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def start(bin_path, base, port, db, work, *flags, sandbox=True):
    """Starts `freshet serve` (with `--sandbox` unless told otherwise) with `flags`, logging to
    work/server.log; waits for /healthz. One partner drives the whole test as fast as it can:
    the per-partner API limit is off."""
    log = open(os.path.join(work, "server.log"), "a")
    mode = ["--sandbox"] if sandbox else []
    p = subprocess.Popen([bin_path, "serve", *mode, "--database-url", db, "--bind", f"127.0.0.1:{port}",
                          "--site-root", work, "--api-requests-per-second", "0", *flags], stdout=log, stderr=log)
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return p
        except Exception:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def start_bank(bin_path, work, callback):
    """Starts `freshet sandbox-bank` in its own process (any free port) with freshet's client
    for `callback`; returns (process, the `freshet bank add` arguments it printed)."""
    import shlex
    log = open(os.path.join(work, "bank.log"), "a")
    p = subprocess.Popen([bin_path, "sandbox-bank", "--bind", "127.0.0.1:0", "--redirect-uri", callback,
                          "--client-secret-file", os.path.join(work, "bank.secret")],
                         stdout=subprocess.PIPE, stderr=log, text=True)
    line = p.stdout.readline().strip()
    if not line.startswith("freshet bank add"):
        raise SystemExit(f"the sandbox bank printed {line!r}")
    return p, shlex.split(line)[1:]


def connect_through_journey(base, key, user, persona, partner_back, bank_id=None):
    """What an end user's browser does: the session's connectionUrl, the bank (`bank_id`, or
    the first `GET /v1/banks` lists), approval of both accounts, the callback; returns the
    session id once the partner is reached."""
    import http.client, urllib.parse
    status, session = call(base, "POST", "/v1/sessions", key, {"userId": user, "partnerRedirectUrl": partner_back})
    assert status == 201, (status, session)
    url = urllib.parse.urlparse(session["connectionUrl"])
    token = urllib.parse.parse_qs(url.query)["partnerToken"][0]

    def request(target, method, path, body=None):
        c = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        headers = {"content-type": "application/x-www-form-urlencoded"} if body is not None else {}
        c.request(method, path, body, headers)
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("location")

    status, _ = request(url, "GET", f"{url.path}?{url.query}")
    assert status == 200, status
    bank_id = bank_id or call(base, "GET", "/v1/banks", key)[1]["data"][0]["bankId"]
    status, to_bank = request(url, "POST", f"{url.path}/bank",
                              urllib.parse.urlencode({"partnerToken": token, "bankId": bank_id}))
    assert status == 303, status
    bank = urllib.parse.urlparse(to_bank)
    form = dict(urllib.parse.parse_qsl(bank.query))
    form.update({"persona": persona, "decision": "approve"})
    body = urllib.parse.urlencode(form) + "&accounts=current&accounts=savings"
    status, callback = request(bank, "POST", "/authorize", body)
    assert status == 303, status
    back = urllib.parse.urlparse(callback)
    status, to_partner = request(back, "GET", f"{back.path}?{back.query}")
    assert status == 303 and "sessionTerminationToken=" in to_partner and "error=" not in to_partner, (status, to_partner)
    return session["sessionId"]
