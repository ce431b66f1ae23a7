"""Seeds a freshet database for the load benchmark: N direct users of one partner, each with
three accounts, two of them stale for an on-demand refresh (refreshed two hours ago, and an
hour ago) and one fresh (five minutes ago). None is older than the scheduler's six hours: the
engine that runs in every server has nothing to do, and the benchmark measures the endpoint.

Writes rows straight into the schema of server/migrations (the benchmark needs hundreds of
thousands of users, which the HTTP API would take minutes to create one by one).
Usage: python3 bench/seed.py DB_PATH PARTNER_ID USERS NOW_MS
"""
import sqlite3, sys

db, partner, users, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
uid = lambda n: f"00000000-0000-4000-8000-{n:012d}"
aid = lambda n, k: f"00000000-0000-4000-9000-{n * 3 + k:012d}"
with con:
    con.executemany(
        "INSERT INTO users (id, partner_id, source, created_at) VALUES (?, ?, 'DIRECT', ?)",
        ((uid(n), partner, now) for n in range(users)),
    )
    con.executemany(
        "INSERT INTO accounts (id, user_id, provider_name, account_type, currency, balance, consent_status,"
        " last_transaction_refresh_date, created_at) VALUES (?, ?, 'Monzo', 'CURRENT', 'GBP', '10.00', 'ACTIVE', ?, ?)",
        (
            (aid(n, k), uid(n), [now - 7_200_000, now - 3_600_000, now - 300_000][k], now)
            for n in range(users)
            for k in range(3)
        ),
    )
con.close()
print(f"seeded {users} users with 3 accounts each")
