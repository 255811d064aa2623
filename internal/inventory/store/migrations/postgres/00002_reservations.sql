-- +goose Up
-- One reservation per order: the stock held for it by the saga's
-- ReserveStock, all lines or none. A release that arrives first leaves a
-- 'released' row behind, so a late ReserveStock for that order holds
-- nothing.
CREATE TABLE reservations (
    order_id   BIGINT  PRIMARY KEY,
    state      TEXT    NOT NULL CHECK (state IN ('reserved', 'rejected', 'released', 'committed')),
    total      BIGINT  NOT NULL DEFAULT 0,
    currency   TEXT    NOT NULL DEFAULT '',
    reason     TEXT    NOT NULL DEFAULT '',
    updated_at BIGINT  NOT NULL
);

CREATE TABLE reservation_items (
    order_id BIGINT  NOT NULL REFERENCES reservations (order_id),
    sku      TEXT    NOT NULL,
    quantity BIGINT  NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);

-- +goose Down
DROP TABLE reservation_items;
DROP TABLE reservations;
