# A throwaway PostgreSQL 15 server for the tests of a distributed search.
#
# Source it from bash (.ci/run does: `source .ci/postgres.sh || exit 1`): it starts a
# server in a fresh temporary directory, listening on 127.0.0.1 only, on a free port, with a
# database `lrjax_test`; exports LRJAX_TEST_POSTGRES_URL; and stops the server and deletes the
# directory when the shell exits (an EXIT trap, chained after any trap already set). Run
# directly (`bash .ci/postgres.sh -- CMD ARGS...`) it runs CMD with the URL set and stops the
# server after it. PostgreSQL refuses to run as root: as root the server runs as the
# `postgres` user (created by the Debian package), otherwise as the calling user. Where
# PostgreSQL 15 is missing and we are root, it is installed with apt-get. Every step is
# bounded: the server must accept connections within LRJAX_PG_START_TIMEOUT seconds (30).

_lrjax_pg_fail() {
  echo "postgres.sh: $*" >&2
  return 1
}

_lrjax_pg_bin() {  # the directory of initdb/pg_ctl, installing PostgreSQL 15 if need be
  local dir
  for dir in "${LRJAX_PG_BIN:-}" /usr/lib/postgresql/15/bin; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "postgres.sh: installing PostgreSQL 15 with apt-get" >&2
    timeout 600 apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq postgresql-15 >&2 ||
      { _lrjax_pg_fail "could not install postgresql-15 with apt-get"; return 1; }
    [ -x /usr/lib/postgresql/15/bin/initdb ] && { echo /usr/lib/postgresql/15/bin; return 0; }
  fi
  _lrjax_pg_fail "PostgreSQL 15 not found (looked in \$LRJAX_PG_BIN and /usr/lib/postgresql/15/bin)"
}

_lrjax_pg_free_port() {
  python3 - <<'EOF'
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
EOF
}

lrjax_postgres_stop() {
  if [ -n "${_LRJAX_PG_DIR:-}" ] && [ -d "$_LRJAX_PG_DIR" ]; then
    ${_LRJAX_PG_AS[@]+"${_LRJAX_PG_AS[@]}"} timeout 60 "$_LRJAX_PG_BINDIR/pg_ctl" \
      -D "$_LRJAX_PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      echo "postgres.sh: could not stop the server in $_LRJAX_PG_DIR cleanly" >&2
    rm -rf "$_LRJAX_PG_DIR"
  fi
  _LRJAX_PG_DIR=
  unset LRJAX_TEST_POSTGRES_URL
}

lrjax_postgres_start() {
  local timeout_s="${LRJAX_PG_START_TIMEOUT:-30}" port user
  _LRJAX_PG_BINDIR="$(_lrjax_pg_bin)" || return 1
  _LRJAX_PG_AS=()
  user="$(id -un)"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { _lrjax_pg_fail "running as root and there is no postgres user"; return 1; }
    _LRJAX_PG_AS=(runuser -u postgres --)
    user=postgres
  fi
  _LRJAX_PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/lrjax-pg.XXXXXX")" || return 1
  [ "$user" = postgres ] && [ "$(id -u)" = 0 ] && chown postgres "$_LRJAX_PG_DIR"
  # Trust authentication is safe here: the server listens on 127.0.0.1 only, and on a
  # socket in its own directory, for the duration of one CI run.
  if ! ${_LRJAX_PG_AS[@]+"${_LRJAX_PG_AS[@]}"} timeout 120 "$_LRJAX_PG_BINDIR/initdb" \
      -D "$_LRJAX_PG_DIR/data" -U "$user" --auth=trust -E UTF8 --no-instructions \
      >"$_LRJAX_PG_DIR/initdb.log" 2>&1; then
    cat "$_LRJAX_PG_DIR/initdb.log" >&2
    lrjax_postgres_stop
    _lrjax_pg_fail "initdb failed"
    return 1
  fi
  port="$(_lrjax_pg_free_port)" || { lrjax_postgres_stop; _lrjax_pg_fail "no free port"; return 1; }
  # pg_ctl -w waits until the server accepts connections, at most -t seconds.
  if ! ${_LRJAX_PG_AS[@]+"${_LRJAX_PG_AS[@]}"} timeout $((timeout_s + 10)) \
      "$_LRJAX_PG_BINDIR/pg_ctl" -D "$_LRJAX_PG_DIR/data" -l "$_LRJAX_PG_DIR/server.log" \
      -w -t "$timeout_s" \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $_LRJAX_PG_DIR -c fsync=off -c max_connections=200" \
      start >/dev/null 2>&1; then
    tail -n 20 "$_LRJAX_PG_DIR/server.log" >&2 2>/dev/null
    lrjax_postgres_stop
    _lrjax_pg_fail "the server did not accept connections within ${timeout_s}s (log above)"
    return 1
  fi
  if ! timeout 30 "$_LRJAX_PG_BINDIR/createdb" -h 127.0.0.1 -p "$port" -U "$user" lrjax_test; then
    lrjax_postgres_stop
    _lrjax_pg_fail "could not create the database lrjax_test"
    return 1
  fi
  export LRJAX_TEST_POSTGRES_URL="postgresql://$user@127.0.0.1:$port/lrjax_test"
  echo "postgres.sh: PostgreSQL $("$_LRJAX_PG_BINDIR/postgres" --version | awk '{print $3}') at $LRJAX_TEST_POSTGRES_URL" >&2
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then  # sourced: start now, stop when the shell exits
  trap -- "lrjax_postgres_stop; $(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")" EXIT
  lrjax_postgres_start
else  # run: bash .ci/postgres.sh -- CMD ARGS...
  [ "${1:-}" = -- ] && shift
  [ $# -gt 0 ] || { echo "usage: source .ci/postgres.sh, or bash .ci/postgres.sh -- CMD ARGS..." >&2; exit 2; }
  trap lrjax_postgres_stop EXIT
  lrjax_postgres_start || exit 1
  "$@"
fi
