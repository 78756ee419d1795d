-- What each machine's Docker engine last reported about itself that rarely
-- changes (so `get nodes` need not ask /info, which is slow, every time).
CREATE TABLE node_facts (
    name           TEXT PRIMARY KEY,
    address        TEXT NOT NULL,
    engine_id      TEXT NOT NULL,
    docker_version TEXT NOT NULL,
    ncpu           INTEGER NOT NULL,
    mem_total      INTEGER NOT NULL,
    observed_at    INTEGER NOT NULL
);
