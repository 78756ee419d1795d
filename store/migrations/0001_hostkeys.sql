-- Host keys pinned on first contact (trust on first use), keyed by the
-- address:port fleet dials, as known_hosts is.
CREATE TABLE host_keys (
    address     TEXT PRIMARY KEY,
    machine     TEXT NOT NULL,
    key_type    TEXT NOT NULL,
    key         BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    first_seen  INTEGER NOT NULL
);
