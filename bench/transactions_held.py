#!/usr/bin/env python3
"""What the `transactions_held` trigger (migration 0009) costs ingestion: 100 accounts x 20
fetches of 20 transactions, each fetch one transaction with the engine's bulk JSON INSERT,
on freshet's own schema, without and with the trigger; three runs each, medians.
Usage: python3 bench/transactions_held.py"""
import sqlite3, time, uuid, json, statistics, os, tempfile
def run(trigger):
    p=os.path.join(tempfile.gettempdir(), 'freshet-trigger-bench.sqlite')
    for f in (p,p+'-wal',p+'-shm'):
        if os.path.exists(f): os.remove(f)
    c=sqlite3.connect(p, isolation_level=None)
    c.execute("pragma journal_mode=wal"); c.execute("pragma synchronous=normal")
    c.executescript(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'server', 'migrations', '0001_init.sql')).read().split('CREATE TABLE refresh_jobs')[0])
    c.execute("ALTER TABLE partners ADD COLUMN transactions_held INTEGER NOT NULL DEFAULT 0")
    if trigger:
        c.executescript("""CREATE TRIGGER t AFTER INSERT ON transactions BEGIN
    UPDATE partners SET transactions_held = transactions_held + 1
     WHERE id = (SELECT partner_id FROM users WHERE id = NEW.user_id); END;""")
    pid=str(uuid.uuid4()); c.execute("insert into partners(id,name,created_at) values(?,?,0)",(pid,'p'))
    users=[str(uuid.uuid4()) for _ in range(100)]
    for u in users: c.execute("insert into users values(?,?,'DIRECT',NULL,0)",(u,pid))
    accts=[]
    for u in users:
        a=str(uuid.uuid4()); accts.append((a,u))
        c.execute("insert into accounts(id,user_id,provider_name,account_type,currency,balance,consent_status,created_at) values(?,?,'x','x','GBP','0','ACTIVE',0)",(a,u))
    t0=time.perf_counter()
    n=0
    for rnd in range(20):
        for a,u in accts:
            rows=[[str(uuid.uuid4()),f"b{rnd}-{i}",0,"1.00","GBP","d",None,None] for i in range(20)]
            c.execute("BEGIN")
            c.execute("""INSERT OR IGNORE INTO transactions (id, account_id, user_id, bank_transaction_id, created, booked_at, amount, currency, description, merchant_name, category)
             SELECT value ->> 0, ?2, ?3, value ->> 1, 0, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7 FROM json_each(?1)""",(json.dumps(rows),a,u))
            c.execute("COMMIT"); n+=20
    return n/(time.perf_counter()-t0)
res={False:[],True:[]}
for i in range(3):
    for t in (False,True): res[t].append(run(t))
for t in (False,True): print("trigger" if t else "plain", round(statistics.median(res[t])), "rows/s", [round(x) for x in res[t]])
