-- Forward-only. Times are Unix milliseconds (UTC) so both backends store them alike.
CREATE TABLE instances (
    instance_id         TEXT PRIMARY KEY,
    order_id            TEXT NOT NULL,
    order_line_id       TEXT NOT NULL,
    business_id         TEXT NOT NULL,
    test_flag           INTEGER NOT NULL,
    status              TEXT NOT NULL,
    product_id          TEXT,
    sku_code            TEXT,
    charging_mode       TEXT,
    order_type          TEXT,
    linear_value        INTEGER,
    order_created_ms    INTEGER,
    expire_ms           INTEGER,
    order_fetched_ms    INTEGER,
    last_order_id       TEXT,
    last_order_line_id  TEXT,
    last_scene          TEXT,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL,
    UNIQUE (order_id, order_line_id)
);

CREATE TABLE licenses (
    event_id            TEXT NOT NULL,
    fingerprint_hash    TEXT NOT NULL,
    fingerprint         TEXT NOT NULL,
    instance_id         TEXT NOT NULL,
    license_id          TEXT NOT NULL,
    delivery            TEXT NOT NULL,
    body                BLOB NOT NULL,
    sha256              TEXT NOT NULL,
    not_before_ms       INTEGER NOT NULL,
    not_after_ms        INTEGER,
    issued_ms           INTEGER NOT NULL,
    uploaded_ms         INTEGER,
    PRIMARY KEY (event_id, fingerprint_hash)
);
CREATE INDEX licenses_by_instance ON licenses (instance_id, fingerprint_hash);

CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT NOT NULL,
    dedupe_key          TEXT NOT NULL UNIQUE,
    payload             TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempts            INTEGER NOT NULL,
    run_at_ms           INTEGER NOT NULL,
    lease_owner         TEXT,
    lease_until_ms      INTEGER,
    last_error          TEXT,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs (state, run_at_ms);

CREATE TABLE nonces (
    nonce               TEXT PRIMARY KEY,
    expires_ms          INTEGER NOT NULL
);
CREATE INDEX nonces_expiry ON nonces (expires_ms);

CREATE TABLE license_codes (
    license_code        TEXT PRIMARY KEY,
    status              TEXT NOT NULL,
    expire_ms           INTEGER,
    order_id            TEXT,
    order_line_id       TEXT,
    product_id          TEXT,
    last_scene          TEXT,
    updated_ms          INTEGER NOT NULL
);
