-- Opaque values by path-like key ("certificates/acme-v02/example.com/
-- example.com.crt"), for what fleet keeps besides objects: certificates,
-- ACME account keys, the local CA. Locks on them use the leases table.
CREATE TABLE blobs (
    key      TEXT PRIMARY KEY,
    value    BLOB NOT NULL,
    modified INTEGER NOT NULL
);
