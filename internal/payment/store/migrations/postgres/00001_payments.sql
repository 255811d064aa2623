-- +goose Up
-- One payment per order. A void that arrives before any authorization
-- leaves a 'voided' row with no payment id, so a late authorization is
-- refused.
CREATE TABLE payments (
    order_id   BIGINT  PRIMARY KEY,
    payment_id TEXT    NOT NULL DEFAULT '',
    state      TEXT    NOT NULL CHECK (state IN ('authorized', 'declined', 'captured', 'voided', 'refunded')),
    amount     BIGINT  NOT NULL DEFAULT 0,
    currency   TEXT    NOT NULL DEFAULT '',
    reason     TEXT    NOT NULL DEFAULT '',
    updated_at BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE payments;
