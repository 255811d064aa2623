-- +goose Up
-- One shipment per order. A cancel that arrives before the booking leaves
-- a 'cancelled' row, so a late booking is refused.
CREATE TABLE shipments (
    order_id      BIGINT  PRIMARY KEY,
    user_id       BIGINT  NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL CHECK (state IN ('scheduled', 'ready', 'dispatched', 'cancelled', 'refused')),
    reason        TEXT    NOT NULL DEFAULT '',
    tracking_code TEXT    NOT NULL DEFAULT '',
    dispatch_at   BIGINT,          -- unix ms, once the order is confirmed
    dispatched_at BIGINT,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX shipments_due ON shipments (dispatch_at) WHERE state = 'ready';

-- +goose Down
DROP TABLE shipments;
