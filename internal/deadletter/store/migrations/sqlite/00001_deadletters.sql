-- +goose Up
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    grp        TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    died_at    INTEGER NOT NULL, -- unix milliseconds
    headers    TEXT    NOT NULL, -- JSON object
    body       BLOB    NOT NULL,
    status     TEXT    NOT NULL,
    redrives   INTEGER NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE dead_letters;
