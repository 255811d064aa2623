-- +goose Up
-- The W3C traceparent of the work that started the instance: its timers
-- (timeouts, resends, compensations) continue that trace.
ALTER TABLE saga_instances ADD COLUMN trace TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE saga_instances DROP COLUMN trace;
