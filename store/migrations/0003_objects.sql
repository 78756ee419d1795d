-- Desired objects, one row each; spec is the object as JSON. generation
-- bumps on every change of the object, as Kubernetes' metadata.generation.
CREATE TABLE objects (
    kind       TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    generation INTEGER NOT NULL,
    spec       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

-- Each distinct pod template of a workload is a revision, kept for
-- rollout history and undo. Going back to an earlier template moves it to
-- a new revision number, as Kubernetes does.
CREATE TABLE revisions (
    kind         TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    template_hash TEXT NOT NULL,
    spec         BLOB NOT NULL,
    change_cause TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name, revision)
);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    type      TEXT NOT NULL,      -- Normal | Warning
    reason    TEXT NOT NULL,
    namespace TEXT NOT NULL,
    kind      TEXT NOT NULL,
    name      TEXT NOT NULL,
    machine   TEXT NOT NULL DEFAULT '',
    message   TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);

-- Who may act on the machines now: fleet serve, or a fleet reconcile from
-- cron, never both.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
