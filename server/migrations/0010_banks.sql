-- The banks (account servicers) freshet fetches from, and how to reach them: the AIS API's
-- base, the OAuth endpoints (given, or read from the bank's discovery document), freshet's
-- client registration there, an optional private CA, and the limits workers keep to.
-- `client_secret` is sealed (AES-256-GCM, `secrets.rs`): the key id travels inside it.
CREATE TABLE banks (
    id                   TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    name                 TEXT NOT NULL,
    api_base             TEXT NOT NULL,
    issuer               TEXT,
    authorization_url    TEXT NOT NULL,
    token_url            TEXT NOT NULL,
    client_id            TEXT NOT NULL,
    client_secret        TEXT NOT NULL,
    ca_pem               TEXT,
    max_in_flight        INTEGER NOT NULL CHECK (max_in_flight > 0),
    requests_per_second  REAL NOT NULL CHECK (requests_per_second > 0),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
