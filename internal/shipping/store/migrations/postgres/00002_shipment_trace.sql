-- +goose Up
-- The W3C traceparent of the work that last changed the shipment: its
-- dispatch, later and on a timer, continues that trace.
ALTER TABLE shipments ADD COLUMN trace TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE shipments DROP COLUMN trace;
