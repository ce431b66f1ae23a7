"""Writes refresh-vectors.json: the refresh rules' test vectors, computed by hand.

The expected decisions below are written out by hand from shared/spec/refresh-semantics.md;
nothing here calls the rules. This script only spells the times out in full, so that the
JSON stays easy to audit. Run it after editing: `python3 rules/vectors/make_vectors.py`.
"""
import json, pathlib

DAY = "2026-11-26"
def T(hms, day=DAY):
    """'11:30' or '11:40:00.001' -> '2026-11-26T11:30:00.000Z'."""
    parts = hms.split(":")
    if len(parts) == 2:
        parts.append("00")
    if "." not in parts[2]:
        parts[2] += ".000"
    return f"{day}T{parts[0]}:{parts[1]}:{parts[2]}Z"

NOW = T("12:00")

def acct(aid, consent="ACTIVE", last=None, expires=None, inflight=None):
    a = {"accountId": aid, "consentStatus": consent}
    if expires: a["consentExpiresAt"] = expires
    if last: a["lastTransactionRefreshDate"] = last
    if inflight: a["inFlightSince"] = inflight
    return a

TRIG = lambda aid: {"accountId": aid, "outcome": "TRIGGERED"}
EXP = lambda aid: {"accountId": aid, "outcome": "SKIPPED", "reason": "ACCOUNT_EXPIRED"}
def RL(aid, nxt=None):
    d = {"accountId": aid, "outcome": "SKIPPED", "reason": "RATE_LIMITED"}
    if nxt: d["nextEligibleAt"] = nxt
    return d

def V(name, accounts, status, results, nxt=None, now=NOW, interval=None):
    inp = {"now": now, "accounts": accounts}
    if interval is not None: inp["intervalSeconds"] = interval
    exp = {"status": status}
    if nxt: exp["nextRefreshAvailableAt"] = nxt
    exp["accounts"] = results
    return {"name": name, "input": inp, "expected": exp}

S, TR = "SKIPPED", "TRIGGERED"
vectors = [
    # The worked examples of refresh-semantics.md, in its order.
    V("worked 1: one stale eligible account triggers all eligible accounts",
      [acct("a", last=T("11:30")), acct("b", last=T("11:55"))], TR, [TRIG("a"), TRIG("b")]),
    V("worked 2: every eligible account fresh -> all rate-limited, next at the earliest",
      [acct("a", last=T("11:50")), acct("b", last=T("11:55"))], S,
      [RL("a", T("12:10")), RL("b", T("12:15"))], nxt=T("12:10")),
    V("worked 3: expired plus fresh -> expired and rate-limited, next from the eligible one",
      [acct("a", "EXPIRED", last=T("10:00")), acct("b", last=T("11:55"))], S,
      [EXP("a"), RL("b", T("12:15"))], nxt=T("12:15")),
    V("worked 4: expired plus never refreshed -> the eligible one triggers",
      [acct("a", "EXPIRED"), acct("b")], TR, [EXP("a"), TRIG("b")]),
    V("worked 5: refreshed exactly twenty minutes ago is stale",
      [acct("a", last=T("11:40:00"))], TR, [TRIG("a")]),
    V("worked 6: consent expiring exactly now counts as expired",
      [acct("a", expires=T("12:00:00"))], S, [EXP("a")]),
    V("worked 7: no accounts -> skipped, empty, no next",
      [], S, []),
    V("worked 8: in flight but another eligible account is stale -> both trigger",
      [acct("a", last=T("11:00"), inflight=T("11:59")), acct("b", last=T("11:30"))], TR,
      [TRIG("a"), TRIG("b")]),
    V("worked 9: an in-flight refresh counts as refreshed at its trigger time",
      [acct("a", last=T("11:00"), inflight=T("11:59"))], S, [RL("a", T("12:19"))], nxt=T("12:19")),

    # Boundaries of the interval.
    V("one millisecond inside the interval is rate-limited",
      [acct("a", last=T("11:40:00.001"))], S, [RL("a", T("12:00:00.001"))], nxt=T("12:00:00.001")),
    V("one millisecond past the interval is stale",
      [acct("a", last=T("11:39:59.999"))], TR, [TRIG("a")]),
    V("refreshed exactly now is rate-limited for a whole interval",
      [acct("a", last=T("12:00"))], S, [RL("a", T("12:20"))], nxt=T("12:20")),
    V("fractional seconds carry into the next eligible moment",
      [acct("a", last=T("11:43:20.500"))], S, [RL("a", T("12:03:20.500"))], nxt=T("12:03:20.500")),

    # Boundaries of consent.
    V("consent ending one millisecond after now is valid",
      [acct("a", expires=T("12:00:00.001"))], TR, [TRIG("a")]),
    V("consent that ended one millisecond ago is expired",
      [acct("a", expires=T("11:59:59.999"), last=T("10:00"))], S, [EXP("a")]),
    V("status EXPIRED wins over a consent end in the future",
      [acct("a", "EXPIRED", expires=T("12:00", "2027-06-01"))], S, [EXP("a")]),
    V("active consent with a future end and a stale refresh triggers",
      [acct("a", expires=T("12:00", "2027-06-01"), last=T("09:00"))], TR, [TRIG("a")]),
    V("all expired, by status and by date -> skipped with no next",
      [acct("a", "EXPIRED", last=T("11:59")), acct("b", expires=T("11:00"), last=T("08:00")),
       acct("c", "EXPIRED")], S, [EXP("a"), EXP("b"), EXP("c")]),
    V("an expired account with a refresh in flight is still expired",
      [acct("a", "EXPIRED", inflight=T("11:55"))], S, [EXP("a")]),

    # Future dates (clock skew) count as refreshed just now.
    V("a refresh date minutes in the future is rate-limited until it is an interval old",
      [acct("a", last=T("12:05"))], S, [RL("a", T("12:25"))], nxt=T("12:25")),
    V("a refresh date months in the future is rate-limited",
      [acct("a", last=T("00:00", "2027-03-01"))], S, [RL("a", T("00:20", "2027-03-01"))],
      nxt=T("00:20", "2027-03-01")),
    V("a future-dated account does not stop a stale one from triggering both",
      [acct("a", last=T("12:05")), acct("b", last=T("09:00"))], TR, [TRIG("a"), TRIG("b")]),

    # In flight.
    V("in flight with no refresh before counts from its trigger time",
      [acct("a", inflight=T("11:50"))], S, [RL("a", T("12:10"))], nxt=T("12:10")),
    V("a refresh in flight for exactly the interval no longer holds the account back",
      [acct("a", last=T("11:00"), inflight=T("11:40"))], TR, [TRIG("a")]),
    V("the later of last refresh and in-flight trigger counts",
      [acct("a", last=T("11:55"), inflight=T("11:30"))], S, [RL("a", T("12:15"))], nxt=T("12:15")),
    V("two accounts in flight -> both rate-limited, next from the older trigger",
      [acct("a", inflight=T("11:58")), acct("b", last=T("10:00"), inflight=T("11:45"))], S,
      [RL("a", T("12:18")), RL("b", T("12:05"))], nxt=T("12:05")),

    # Mixed cases.
    V("a stale but expired account does not trigger the fresh ones",
      [acct("a", "EXPIRED", last=T("10:00")), acct("b", last=T("11:59"))], S,
      [EXP("a"), RL("b", T("12:19"))], nxt=T("12:19")),
    V("one never-refreshed account triggers every eligible account, expired ones skip",
      [acct("a", last=T("11:50")), acct("b", last=T("11:45")), acct("c", "EXPIRED"), acct("d")], TR,
      [TRIG("a"), TRIG("b"), EXP("c"), TRIG("d")]),
    V("next refresh is the earliest of several fresh accounts",
      [acct("a", last=T("11:41")), acct("b", last=T("11:59")), acct("c", last=T("11:45"))], S,
      [RL("a", T("12:01")), RL("b", T("12:19")), RL("c", T("12:05"))], nxt=T("12:01")),
    V("decisions are listed by accountId whatever the input order",
      [acct("c", last=T("11:55")), acct("a", last=T("11:30")), acct("b", "EXPIRED")], TR,
      [TRIG("a"), EXP("b"), TRIG("c")]),
    V("accountIds order as strings (uuid-like ids)",
      [acct("f3c1e8a0-0000-4000-8000-000000000002", last=T("11:58")),
       acct("0b9e2c4d-0000-4000-8000-000000000001", last=T("11:50"))], S,
      [RL("0b9e2c4d-0000-4000-8000-000000000001", T("12:10")),
       RL("f3c1e8a0-0000-4000-8000-000000000002", T("12:18"))], nxt=T("12:10")),

    # Consent ending before the account would be eligible again (our reading of
    # nextRefreshAvailableAt: the earliest moment a new request would trigger).
    V("consent ending before the interval is over -> no next for that account",
      [acct("a", last=T("11:50"), expires=T("12:05"))], S, [RL("a")]),
    V("consent ending exactly when the interval is over -> no next",
      [acct("a", last=T("11:50"), expires=T("12:10"))], S, [RL("a")]),
    V("consent ending just after the interval is over -> next at the interval's end",
      [acct("a", last=T("11:50"), expires=T("12:10:00.001"))], S,
      [RL("a", T("12:10"))], nxt=T("12:10")),
    V("an account whose consent ends first does not set the next refresh",
      [acct("a", last=T("11:50"), expires=T("12:05")), acct("b", last=T("11:55"))], S,
      [RL("a"), RL("b", T("12:15"))], nxt=T("12:15")),
    V("a consent ending soon still triggers everything while it is stale",
      [acct("a", last=T("11:55")), acct("x", last=T("11:00"), expires=T("12:01"))], TR,
      [TRIG("a"), TRIG("x")]),
    V("the same accounts two minutes later: the stale one expired, the fresh one is rate-limited",
      [acct("a", last=T("11:55")), acct("x", last=T("11:00"), expires=T("12:01"))], S,
      [RL("a", T("12:15")), EXP("x")], nxt=T("12:15"), now=T("12:02")),

    # A configured interval.
    V("a five-minute interval: four minutes ago is rate-limited",
      [acct("a", last=T("11:56"))], S, [RL("a", T("12:01"))], nxt=T("12:01"), interval=300),
    V("a five-minute interval: exactly five minutes ago is stale",
      [acct("a", last=T("11:55"))], TR, [TRIG("a")], interval=300),
    V("a one-hour interval: thirty minutes ago is rate-limited, sixty-one triggers all",
      [acct("a", last=T("11:30")), acct("b", last=T("10:59"))], TR, [TRIG("a"), TRIG("b")], interval=3600),
    V("a one-hour interval: both within the hour",
      [acct("a", last=T("11:30")), acct("b", last=T("11:01"))], S,
      [RL("a", T("12:30")), RL("b", T("12:01"))], nxt=T("12:01"), interval=3600),

    # Input written with offsets other than Z reads as the same instants.
    V("offsets in the input are read as instants; output is UTC",
      [acct("a", last="2026-11-26T12:45:00+01:00")], S, [RL("a", T("12:05"))], nxt=T("12:05"),
      now="2026-11-26T13:00:00+01:00"),
]

doc = {
    "about": "freshet refresh-rule test vectors: input (accounts, now, intervalSeconds?) -> the exact "
             "serialized decision. Written by hand from shared/spec/refresh-semantics.md; run natively, "
             "in wasm and through the JavaScript package. Generated by make_vectors.py.",
    "vectors": vectors,
}
out = pathlib.Path(__file__).with_name("refresh-vectors.json")
out.write_text(json.dumps(doc, indent=2) + "\n")
print(f"{len(vectors)} vectors -> {out}")
