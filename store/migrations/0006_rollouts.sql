-- Each Deployment's rollout as the controller tracks it: state is JSON
-- written only by the reconcile lease holder (target and stable
-- revisions, phase, canary step); promote is the step a user promoted
-- past with `fleet rollout promote`, written only by that command, so the
-- two writers never overwrite each other.
CREATE TABLE rollouts (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    state      BLOB NOT NULL DEFAULT '{}',
    promote    INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
