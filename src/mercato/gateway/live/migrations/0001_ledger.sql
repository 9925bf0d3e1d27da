-- The ledger: one row per routed request, keyed by the gateway's request id (written exactly once).
-- Types are the subset SQLite and PostgreSQL both speak; every migration file must stay in it.
CREATE TABLE IF NOT EXISTS ledger (
    request_id TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    buyer TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    policy TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    payment DOUBLE PRECISION NOT NULL,
    surplus DOUBLE PRECISION NOT NULL,
    paid INTEGER NOT NULL
);
