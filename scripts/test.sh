#!/usr/bin/env bash
# The whole test suite, set-up included: starts (and on a fresh Debian
# machine installs) the Redis and PostgreSQL the adapter tests run
# against, then runs every crate's tests with every feature, and the HTTP
# API's contract test (scripts/contract.sh).
#
#   scripts/test.sh [extra cargo test arguments]
#
# IMKIT_TEST_REDIS_URL and IMKIT_TEST_POSTGRES_URL, when set, name servers
# to use instead; nothing is started for them.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  echo "installing $*"
  (as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null
}

# Redis: the one on 6379, else one started there.
if [ -z "${IMKIT_TEST_REDIS_URL:-}" ]; then
  if ! (command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
    command -v redis-server >/dev/null || apt_install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  export IMKIT_TEST_REDIS_URL=redis://127.0.0.1:6379
fi

# PostgreSQL: database `test` on 127.0.0.1:5432 for user postgres without a
# password, else the machine's cluster started and set up to serve that.
if [ -z "${IMKIT_TEST_POSTGRES_URL:-}" ]; then
  url=postgres://postgres@127.0.0.1:5432/test
  pg_ok() { psql "$url" -Atc 'SELECT 1' >/dev/null 2>&1; }
  if ! (command -v psql >/dev/null && pg_ok); then
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    [ -d "/etc/postgresql/$version/main" ] || as_root pg_createcluster "$version" main >/dev/null
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
    if ! pg_ok; then
      # Local test clusters only: trust loopback connections, and make `test`.
      hba="/etc/postgresql/$version/main/pg_hba.conf"
      if ! grep -q "imkit tests" "$hba"; then
        as_root sed -i '1i host all all 127.0.0.1/32 trust # imkit tests\nhost all all ::1/128 trust # imkit tests' "$hba"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        sleep 0.5
      fi
      psql postgres://postgres@127.0.0.1:5432/postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
        || psql postgres://postgres@127.0.0.1:5432/postgres -qc 'CREATE DATABASE test'
    fi
    pg_ok || { echo "PostgreSQL at $url does not answer" >&2; exit 1; }
  fi
  export IMKIT_TEST_POSTGRES_URL=$url
fi

cargo test --workspace --all-features "$@"

# The HTTP API against its OpenAPI document (schemathesis).
scripts/contract.sh
