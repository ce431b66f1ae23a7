"""Seeds a freshet database for the load benchmark: N direct users of one partner, each with
three accounts, two of them stale for an on-demand refresh (refreshed two hours ago, and an
hour ago) and one fresh (five minutes ago). None is older than the scheduler's six hours: the
engine that runs in every server has nothing to do, and the benchmark measures the endpoint.

Writes rows straight into the schema of server/migrations (the benchmark needs hundreds of
thousands of users, which the HTTP API would take minutes to create one by one).
Usage: python3 bench/seed.py DB_PATH PARTNER_ID USERS NOW_MS
       python3 bench/seed.py --postgres URL PARTNER_ID USERS NOW_MS
With --postgres the same rows go into the database at URL (migrated already, e.g. by
`freshet partner create`; schema server/migrations-postgres), as CSV through psql's \\copy;
then the two tables are vacuumed and analyzed and a checkpoint is taken, so that the
measurement starts from a settled database rather than paying for the load.
"""
import subprocess, sqlite3, sys

uid = lambda n: f"00000000-0000-4000-8000-{n:012d}"
aid = lambda n, k: f"00000000-0000-4000-9000-{n * 3 + k:012d}"
# Refreshed two hours, one hour and five minutes ago.
AGES = [7_200_000, 3_600_000, 300_000]


def seed_sqlite(db, partner, users, now):
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    with con:
        con.executemany(
            "INSERT INTO users (id, partner_id, source, created_at) VALUES (?, ?, 'DIRECT', ?)",
            ((uid(n), partner, now) for n in range(users)),
        )
        con.executemany(
            "INSERT INTO accounts (id, user_id, provider_name, account_type, currency, balance, consent_status,"
            " last_transaction_refresh_date, created_at) VALUES (?, ?, 'Monzo', 'CURRENT', 'GBP', '10.00', 'ACTIVE', ?, ?)",
            (
                (aid(n, k), uid(n), now - AGES[k], now)
                for n in range(users)
                for k in range(3)
            ),
        )
    con.close()


def psql(url, *commands, stdin_rows=None):
    """psql URL -c COMMAND... (each its own transaction); `stdin_rows`, if given, is an
    iterable of CSV lines streamed to psql's stdin (for one `\\copy ... FROM STDIN`)."""
    args = ["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for c in commands:
        args += ["-c", c]
    p = subprocess.Popen(args, stdin=subprocess.PIPE if stdin_rows is not None else subprocess.DEVNULL, text=True)
    if stdin_rows is not None:
        chunk = []
        for line in stdin_rows:
            chunk.append(line)
            if len(chunk) >= 10_000:
                p.stdin.write("".join(chunk))
                chunk = []
        p.stdin.write("".join(chunk))
        p.stdin.close()
    if p.wait():
        sys.exit(f"seed: psql {' '.join(commands)} exited with {p.returncode}")


def seed_postgres(url, partner, users, now):
    # Every value is a UUID, a plain word or a number: nothing needs CSV quoting.
    psql(url, "\\copy users (id, partner_id, source, created_at) FROM STDIN WITH (FORMAT csv)",
         stdin_rows=(f"{uid(n)},{partner},DIRECT,{now}\n" for n in range(users)))
    psql(url, "\\copy accounts (id, user_id, provider_name, account_type, currency, balance, consent_status,"
              " last_transaction_refresh_date, created_at) FROM STDIN WITH (FORMAT csv)",
         stdin_rows=(f"{aid(n, k)},{uid(n)},Monzo,CURRENT,GBP,10.00,ACTIVE,{now - AGES[k]},{now}\n"
                     for n in range(users) for k in range(3)))
    # A database in service has its statistics, hint bits and visibility map: the load should
    # not be paid for (nor autovacuum's first pass over it started) during the measurement.
    psql(url, "VACUUM (ANALYZE) users", "VACUUM (ANALYZE) accounts", "CHECKPOINT")


if __name__ == "__main__":
    args = sys.argv[1:]
    postgres = args[:1] == ["--postgres"]
    if postgres:
        args = args[1:]
    if len(args) != 4:
        sys.exit(__doc__)
    target, partner, users, now = args[0], args[1], int(args[2]), int(args[3])
    (seed_postgres if postgres else seed_sqlite)(target, partner, users, now)
    print(f"seeded {users} users with 3 accounts each")
