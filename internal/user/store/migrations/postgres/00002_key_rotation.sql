-- +goose Up
-- A key is published from its creation, signs from activates_at, and
-- leaves the key set at retires_at (0: never).
ALTER TABLE signing_keys ADD COLUMN activates_at BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN retires_at BIGINT  NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE signing_keys DROP COLUMN retires_at;
ALTER TABLE signing_keys DROP COLUMN activates_at;
