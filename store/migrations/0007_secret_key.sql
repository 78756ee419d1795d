-- Which key the Secrets in objects are encrypted with now, by id only (the
-- first 8 hex digits of the key's SHA-256; the key itself never enters this
-- file). Recorded by the first Secret written and by key rotation, so a
-- process still holding a rotated-out key refuses to write Secrets the
-- current key cannot read.
CREATE TABLE secret_key (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    key_id    TEXT NOT NULL
);
