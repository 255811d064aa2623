-- +goose Up
-- Lists go newest first: by creation time, then id.
CREATE INDEX saga_instances_created ON saga_instances (created_at, id);
CREATE INDEX saga_instances_status_created ON saga_instances (status, created_at, id);
DROP INDEX saga_instances_status;

-- +goose Down
CREATE INDEX saga_instances_status ON saga_instances (status, id);
DROP INDEX saga_instances_status_created;
DROP INDEX saga_instances_created;
