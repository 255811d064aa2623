package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/junction-go/junction/sqldb"
)

// checkDatabaseURL validates up's --database: empty (each service's
// SQLite file) or a PostgreSQL server's URL.
func checkDatabaseURL(flag, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return fmt.Errorf("%s: want a PostgreSQL URL, such as postgres://127.0.0.1:5432/junction (each service gets a schema of its own there)", flag)
	}
	if u.Query().Has("search_path") {
		return fmt.Errorf("%s: leave search_path out: each service gets a schema of its own", flag)
	}
	return nil
}

// schemaOf is the schema and the role of service on a shared PostgreSQL
// (order-service: order_service, junction_order_service), for up and for
// the Kubernetes manifests alike.
func schemaOf(service string) (schema, role string) {
	schema = strings.ReplaceAll(service, "-", "_")
	return schema, "junction_" + schema
}

// serviceDatabases gives each of names a schema of its own on the
// PostgreSQL server at admin (a user that may create roles), owned by a
// role of its own: a service reaches its own tables and no other
// service's. Each role gets a new random password on every call. It
// returns each service's database URL, and release, which ends the claim
// on the database: until then another up on it is refused (its services
// would share these schemas, and fence each other's relays out).
func serviceDatabases(ctx context.Context, admin string, names []string) (urls map[string]string, release func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	db, err := sqldb.Open(ctx, admin)
	if err != nil {
		return nil, nil, err
	}
	claim, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	done := func() { claim.Close(); db.Close() }
	defer func() {
		if err != nil {
			done()
		}
	}()
	var mine bool
	if err := claim.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(hashtext('junction up: ' || $1))`, strings.Join(names, ",")).Scan(&mine); err != nil {
		return nil, nil, fmt.Errorf("database: %w", err)
	}
	if !mine {
		return nil, nil, errors.New("another junction up runs on this database (--database): stop it first, or give this one another database")
	}
	base, err := url.Parse(admin)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	for _, name := range names {
		schema, role := schemaOf(name)
		secret := make([]byte, 18)
		if _, err := rand.Read(secret); err != nil {
			return nil, nil, err
		}
		password := hex.EncodeToString(secret)
		r, s := pgx.Identifier{role}.Sanitize(), pgx.Identifier{schema}.Sanitize()
		for _, stmt := range []string{
			// Another up creating it at the same moment makes this fail;
			// the role then exists, which is what is wanted.
			`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + role + `') THEN CREATE ROLE ` + r + `; END IF; END $$`,
			// Hex only: safe inside the literal (DDL takes no parameters).
			`ALTER ROLE ` + r + ` WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '` + password + `'`,
			`ALTER ROLE ` + r + ` SET search_path = ` + s,
			`CREATE SCHEMA IF NOT EXISTS ` + s + ` AUTHORIZATION ` + r,
			`REVOKE ALL ON SCHEMA ` + s + ` FROM PUBLIC`,
		} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return nil, nil, fmt.Errorf("database for %s (schema %s, role %s): %w (the URL's user must be able to create roles and schemas)", name, schema, role, err)
			}
		}
		u := *base
		u.User = url.UserPassword(role, password)
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		out[name] = u.String()
	}
	return out, done, nil
}
