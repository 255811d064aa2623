-- +goose Up
CREATE TABLE products (
    sku         TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    price       INTEGER NOT NULL CHECK (price >= 0), -- minor units
    currency    TEXT    NOT NULL,
    stock       INTEGER NOT NULL CHECK (stock >= 0)
);

-- +goose Down
DROP TABLE products;
