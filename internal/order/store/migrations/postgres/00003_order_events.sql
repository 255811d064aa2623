-- +goose Up
-- Every change of an order and every step of its sagas, numbered from 1 per
-- order with no gap, written in the transaction of the change: the order's
-- history for a client that follows it (GET /api/orders/{id}/events).
CREATE TABLE order_events (
    order_id BIGINT  NOT NULL,
    seq      BIGINT  NOT NULL,
    at       BIGINT  NOT NULL, -- unix milliseconds
    kind     TEXT    NOT NULL, -- status, saga or step
    status   TEXT    NOT NULL DEFAULT '',
    saga     TEXT    NOT NULL DEFAULT '',
    step     TEXT    NOT NULL DEFAULT '',
    outcome  TEXT    NOT NULL DEFAULT '',
    detail   TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (order_id, seq)
);
-- Orders made before the history existed start it with where they are.
INSERT INTO order_events (order_id, seq, at, kind, status, detail)
    SELECT id, 1, updated_at, 'status', status, reason FROM orders;

-- +goose Down
DROP TABLE order_events;
