-- +goose Up
-- Messages written in the same transaction as the state change that causes
-- them; the relay publishes them in seq order and marks them sent.
CREATE TABLE outbox (
    seq        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    topic      TEXT    NOT NULL,
    headers    TEXT    NOT NULL, -- JSON object of transport headers
    body       BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL, -- unix milliseconds
    sent_at    BIGINT,           -- NULL until the broker acknowledged it
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- One relay at a time publishes; the token fences a relay that lost its
-- lease (paused, partitioned) out of marking rows.
CREATE TABLE outbox_lease (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Ids of messages a consumer group has applied, written in the same
-- transaction as their effect.
CREATE TABLE inbox (
    consumer   TEXT   NOT NULL,
    message_id TEXT   NOT NULL,
    handled_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- +goose Down
DROP TABLE inbox;
DROP TABLE outbox_lease;
DROP TABLE outbox;
