-- The pods last listed on each machine, as JSON the reconciler owns, with
-- what only the controller knows about them (readiness from probes,
-- restarts it made, back-off). `get pods` from any process shows a
-- machine that cannot be reached with these pods as Unknown, and merges
-- readiness into what it lists itself.
CREATE TABLE machine_pods (
    machine     TEXT PRIMARY KEY,
    pods        BLOB NOT NULL,
    observed_at INTEGER NOT NULL
);
