#!/bin/sh
# Runs once, on the first start of an empty PostgreSQL: for each service's
# URL in the Secret junction-db (postgres://<role>:<password>@…?search_path=<schema>…),
# a role with that password and a schema it owns, reachable by no other role.
set -eu
for f in /etc/junction/db/*-service; do
	url=$(cat "$f")
	role=$(printf '%s' "$url" | sed -E 's#^postgres(ql)?://([^:]+):.*#\2#')
	password=$(printf '%s' "$url" | sed -E 's#^postgres(ql)?://[^:]+:([^@]+)@.*#\2#')
	schema=$(printf '%s' "$url" | sed -E 's#.*[?&]search_path=([^&]+).*#\1#')
	psql -v ON_ERROR_STOP=1 --username postgres --dbname junction <<SQL
CREATE ROLE "$role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$password';
ALTER ROLE "$role" SET search_path = "$schema";
CREATE SCHEMA "$schema" AUTHORIZATION "$role";
REVOKE ALL ON SCHEMA "$schema" FROM PUBLIC;
SQL
done
