-- +goose Up
CREATE TABLE products (
    sku         TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    price       BIGINT  NOT NULL CHECK (price >= 0), -- minor units
    currency    TEXT    NOT NULL,
    stock       BIGINT  NOT NULL CHECK (stock >= 0)
);

-- +goose Down
DROP TABLE products;
