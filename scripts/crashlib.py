"""What both crash tests share: calling the API of a freshet server, and starting one."""
import json, os, subprocess, time, urllib.error, urllib.request


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


def start(bin_path, base, port, db, work, *flags):
    """Starts `freshet serve --sandbox` with `flags`, logging to work/server.log; waits for /healthz.
    One partner drives the whole test as fast as it can: the per-partner API limit is off."""
    log = open(os.path.join(work, "server.log"), "a")
    p = subprocess.Popen([bin_path, "serve", "--sandbox", "--database-url", db, "--bind", f"127.0.0.1:{port}",
                          "--site-root", work, "--api-requests-per-second", "0", *flags], stdout=log, stderr=log)
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return p
        except Exception:
            time.sleep(0.05)
    raise SystemExit("the server did not start")
