-- +goose Up
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL,
    order_id   INTEGER NOT NULL,
    event      TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL -- unix milliseconds
);
CREATE INDEX notifications_by_user ON notifications (user_id, id);

-- +goose Down
DROP TABLE notifications;
