-- +goose Up
-- One row per saga instance: where it is, its data and the replies it got.
CREATE TABLE saga_instances (
    id          TEXT    PRIMARY KEY,
    saga        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    step        INTEGER NOT NULL, -- index of the step awaiting a reply
    attempt     INTEGER NOT NULL, -- sends of that step's current command
    data        TEXT    NOT NULL, -- JSON
    results     TEXT    NOT NULL, -- JSON object: step name -> reply data
    reason      TEXT    NOT NULL DEFAULT '',
    deadline_at BIGINT,           -- unix ms; the durable timer, NULL when ended
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX saga_instances_due ON saga_instances (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX saga_instances_status ON saga_instances (status, id);

-- Every transition of every instance, in order.
CREATE TABLE saga_events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id TEXT    NOT NULL,
    at      BIGINT  NOT NULL,
    step    TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX saga_events_by_saga ON saga_events (saga_id, seq);

-- +goose Down
DROP TABLE saga_events;
DROP TABLE saga_instances;
