-- +goose Up
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('customer', 'admin')),
    password_hash BLOB    NOT NULL,
    created_at    INTEGER NOT NULL -- unix milliseconds
);

CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    private_key BLOB    NOT NULL, -- Ed25519 seed
    created_at  INTEGER NOT NULL, -- unix milliseconds
    seq         INTEGER NOT NULL UNIQUE
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE users;
