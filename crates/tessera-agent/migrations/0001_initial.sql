-- Forward-only: never edit a migration once released; add a new numbered file instead.
-- Times are Unix milliseconds (UTC). Authorization codes themselves live in the secrets store;
-- rows here keep only a short hint. `mac` is HMAC-SHA256 over the enforcement-critical columns,
-- keyed by the state MAC key in the secrets store.

CREATE TABLE codes (
    product_id      TEXT PRIMARY KEY NOT NULL,
    code_hint       TEXT NOT NULL,
    status          TEXT NOT NULL,
    expires_at      INTEGER,
    amount          INTEGER,
    activated_at    INTEGER NOT NULL,
    last_good_check INTEGER NOT NULL,
    offline         INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    last_error      TEXT,
    usage_day       INTEGER,
    mac             BLOB NOT NULL
);

CREATE TABLE licenses (
    product_id  TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('file', 'string')),
    content     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('verified', 'refused')),
    reason      TEXT,
    message     TEXT,
    not_before  INTEGER,
    not_after   INTEGER,
    features    TEXT NOT NULL DEFAULT '[]',
    verified_at INTEGER NOT NULL
);

CREATE TABLE trusted_time (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    high_water     INTEGER NOT NULL,
    offset_ms      INTEGER NOT NULL,
    tampered_at    INTEGER,
    mac            BLOB NOT NULL
);

CREATE TABLE manifests (
    product_id     TEXT PRIMARY KEY NOT NULL,
    body           TEXT NOT NULL,
    fetched_at     INTEGER NOT NULL,
    valid_until    INTEGER,
    available      INTEGER NOT NULL,
    latest_version TEXT,
    forced         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE upgrade_answers (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    source     TEXT NOT NULL CHECK (source IN ('app', 'user')),
    accept     INTEGER NOT NULL
);

CREATE TABLE verify_reports (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    ok         INTEGER NOT NULL,
    message    TEXT
);
