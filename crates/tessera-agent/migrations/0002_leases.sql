-- Leases granted to application sessions, so a session resumed after an agent restart keeps
-- its seats. Rewritten as a whole (at most once a second, and at shutdown); `mac` as in 0001.

CREATE TABLE leases (
    lease_id   TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    product_id TEXT NOT NULL,
    feature    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    mac        BLOB NOT NULL
);
