-- +goose Up
-- Refresh tokens by the SHA-256 of their text (the text itself is never
-- kept); each login starts a family, each refresh adds the next one and
-- marks the one used; a used one coming back revokes its whole family.
CREATE TABLE refresh_tokens (
    hash       BYTEA   PRIMARY KEY,
    family     TEXT    NOT NULL,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT  NOT NULL DEFAULT 0,
    revoked_at BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

-- +goose Down
DROP TABLE refresh_tokens;
