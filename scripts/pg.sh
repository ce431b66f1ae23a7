# A throw-away PostgreSQL server for tests and benchmarks: its own cluster in a directory of
# its own, on a free port of 127.0.0.1, removed again by pg_stop. Debian's cluster "main" on
# 5432 may run or not; nothing here uses it.
#
# Sourced (after scripts/lib.sh, or alone):
#   ensure_postgres                  install Debian's postgresql when initdb is missing
#   pg_start DIR                     new cluster in DIR/data, exports FRESHET_PG_DIR,
#                                    FRESHET_PG_PORT, FRESHET_TEST_POSTGRES_URL
#   pg_restart_fast [DIR]            pg_ctl restart -m fast, same port and options
#   pg_stop [DIR]                    stop the server and remove DIR (quiet no-op when gone)
#   pg_stop_all                      pg_stop every server this shell started
#   pg_url [DIR]                     print postgres://postgres@127.0.0.1:PORT/postgres
# DIR defaults to $FRESHET_PG_DIR (the last pg_start), so `pg_start "$dir"; trap pg_stop EXIT`
# is enough for one server; for several, `trap pg_stop_all EXIT`. A failed pg_start prints
# the logs and removes DIR itself.
#
# As a command (for Python test scripts): bash scripts/pg.sh start|restart|stop|url DIR
# `start` prints the URL alone on stdout; everything else goes to stderr.
# shellcheck shell=bash

declare -F step >/dev/null || step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
declare -F as_root >/dev/null || as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Marks a directory as made by pg_start, so that pg_stop never removes anything else.
PG_MARKER=.freshet-pg
# The dirs of the servers this shell started, for pg_stop_all.
[ -n "${PG_STARTED+x}" ] || PG_STARTED=()

# Debian's package, not a cluster of it: pg_start makes its own.
ensure_postgres() {
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    step "installing Debian's postgresql"
    # To stderr: `pg.sh start` prints nothing but the URL on stdout.
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

# The newest installed server's binaries (Debian puts each major version in its own dir).
pg_bindir() {
  local dir
  dir=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    echo "pg: no /usr/lib/postgresql/*/bin/initdb; run ensure_postgres" >&2
    return 1
  fi
  echo "$dir"
}

# initdb and postgres refuse to run as root: as root, they run as Debian's postgres user.
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A port nothing listens on right now (pg_start retries when another process takes it first).
pg_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 30000))
}

# Absolute, so that the socket dir, the trap and the standalone command agree whatever the cwd.
pg_abs_dir() {
  local dir="${1:-${FRESHET_PG_DIR:-}}"
  if [ -z "$dir" ]; then
    echo "pg: no DIR given and FRESHET_PG_DIR is not set" >&2
    return 2
  fi
  case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
  echo "${dir%/}"
}

# The server's options; pg_start and pg_restart_fast must pass the same ones.
# fsync and synchronous_commit stay on: freshet's promises rely on durable commits.
pg_server_opts() {
  local dir="$1" port="$2"
  echo "-p $port -k $dir -c listen_addresses=127.0.0.1 -c unix_socket_permissions=0777" \
    "-c max_connections=300 -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB"
}

pg_url() {
  local dir
  dir=$(pg_abs_dir "${1:-}") || return
  if [ ! -f "$dir/port" ]; then
    echo "pg: $dir has no server of pg_start" >&2
    return 1
  fi
  echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
}

# Runs pg_ctl from inside DIR: as the postgres user, a cwd such as /root is unreadable.
pg_ctl_in() {
  local dir="$1" bin
  shift
  bin=$(pg_bindir) || return
  (cd "$dir" && pg_as_owner "$bin/pg_ctl" -D "$dir/data" "$@")
}

# pg_print_log DIR FILE: the end of a log of DIR, for a failure's message.
pg_print_log() {
  local file="$1/$2"
  if [ -s "$file" ]; then
    echo "---- $file" >&2
    tail -n 50 "$file" >&2
  fi
}

# Shows why, then removes what pg_start made: a throw-away server leaves nothing behind.
pg_start_failed() {
  local dir="$1" why="$2" log="$3"
  echo "pg: $why in $dir:" >&2
  pg_print_log "$dir" "$log"
  pg_stop "$dir" || true
}

# A new cluster in DIR/data, started on a free port; DIR is made, or must be empty, or must be
# a leftover of an earlier pg_start (then its server is stopped and the cluster made anew).
pg_start() {
  local dir bin port opts attempt out
  if [ $# -ne 1 ]; then
    echo "usage: pg_start DIR" >&2
    return 2
  fi
  dir=$(pg_abs_dir "$1") || return
  bin=$(pg_bindir) || return
  # The socket is DIR/.s.PGSQL.PORT, and socket paths are at most 107 bytes.
  if [ ${#dir} -gt 90 ]; then
    echo "pg: $dir is too long for a Unix socket path; use a shorter DIR" >&2
    return 2
  fi
  if [ -e "$dir/$PG_MARKER" ]; then
    pg_stop "$dir" || return
  elif [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "pg: $dir is not empty and not a dir of pg_start; refusing to use it" >&2
    return 2
  fi
  mkdir -p "$dir" || return
  touch "$dir/$PG_MARKER" || return
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres: "$dir" || return
    chmod 0755 "$dir" || return
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "pg: the postgres user cannot reach $dir (is a parent dir private, like /root?)" >&2
      rm -rf "$dir"
      return 1
    fi
  fi
  # C collation: the same ordering on every machine, whatever locales it has.
  if ! (cd "$dir" && pg_as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync \
        -E UTF8 --locale=C >"$dir/initdb.log" 2>&1); then
    pg_start_failed "$dir" "initdb failed" initdb.log
    return 1
  fi
  # Two pg_starts at once can be given the same free port: the loser tries another.
  for attempt in 1 2 3 4 5; do
    port=$(pg_free_port)
    opts=$(pg_server_opts "$dir" "$port")
    rm -f "$dir/log"
    if out=$(pg_ctl_in "$dir" start -w -t 60 -l "$dir/log" -o "$opts" 2>&1); then
      break
    fi
    if [ "$attempt" = 5 ] || ! grep -q 'could not bind\|could not create lock file' "$dir/log" 2>/dev/null; then
      echo "$out" >&2
      pg_start_failed "$dir" "the server failed to start" log
      return 1
    fi
    echo "pg: port $port was taken, trying another" >&2
  done
  echo "$port" >"$dir/port"
  export FRESHET_PG_DIR="$dir"
  export FRESHET_PG_PORT="$port"
  export FRESHET_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  PG_STARTED+=("$dir")
  echo "pg: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir/data, log $dir/log" >&2
}

# Crash-like but clean: what a server restart does to freshet's connections, same port.
pg_restart_fast() {
  local dir port
  dir=$(pg_abs_dir "${1:-}") || return
  if [ ! -f "$dir/port" ]; then
    echo "pg: $dir has no server of pg_start" >&2
    return 1
  fi
  port=$(cat "$dir/port")
  if ! pg_ctl_in "$dir" restart -m fast -w -t 60 -l "$dir/log" -o "$(pg_server_opts "$dir" "$port")" >/dev/null; then
    echo "pg: the server in $dir failed to restart:" >&2
    pg_print_log "$dir" log
    return 1
  fi
  echo "pg: restarted the server on 127.0.0.1:$port" >&2
}

# Whether process $1 runs. Not `kill -0`: it is true of a zombie, and the postmaster's parent
# is PID 1, which in a container may take a second or more to reap it.
pg_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat="${stat##*) }"
  [ "${stat:0:1}" != Z ]
}

# Safe in an EXIT trap: does nothing when there is nothing to stop, and only ever removes a
# dir that pg_start made.
pg_stop() {
  local dir pid tries=0
  [ -n "${1:-${FRESHET_PG_DIR:-}}" ] || return 0
  dir=$(pg_abs_dir "${1:-}") || return 0
  [ -d "$dir" ] || return 0
  if [ ! -e "$dir/$PG_MARKER" ]; then
    echo "pg: $dir is not a dir of pg_start; leaving it alone" >&2
    return 1
  fi
  pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
  # A postmaster that was killed leaves its postmaster.pid, and pg_ctl would wait in vain.
  if [ -n "$pid" ] && pg_alive "$pid"; then
    if ! pg_ctl_in "$dir" stop -m fast -w -t 30 >/dev/null 2>&1 &&
       ! pg_ctl_in "$dir" stop -m immediate -w -t 10 >/dev/null 2>&1 &&
       pg_alive "$pid"; then
      echo "pg: the server in $dir did not stop; killing $pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    # pg_ctl returns once postmaster.pid is gone, a moment before the postmaster itself is.
    while pg_alive "$pid" && [ $tries -lt 100 ]; do
      sleep 0.1
      tries=$((tries + 1))
    done
  fi
  rm -rf "$dir"
  if [ "${FRESHET_PG_DIR:-}" = "$dir" ]; then
    unset FRESHET_PG_DIR FRESHET_PG_PORT FRESHET_TEST_POSTGRES_URL
  fi
}

# Every server this shell started, for one trap when there are several: trap pg_stop_all EXIT
pg_stop_all() {
  local dir
  for dir in ${PG_STARTED[@]+"${PG_STARTED[@]}"}; do
    pg_stop "$dir" || true
  done
  PG_STARTED=()
}

# As a command: bash scripts/pg.sh start|restart|stop|url DIR
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  if [ $# -ne 2 ]; then
    echo "usage: $0 start|restart|stop|url DIR" >&2
    exit 2
  fi
  case "$1" in
    start) ensure_postgres; pg_start "$2"; echo "$FRESHET_TEST_POSTGRES_URL" ;;
    restart) pg_restart_fast "$2" ;;
    stop) pg_stop "$2" ;;
    url) pg_url "$2" ;;
    *) echo "usage: $0 start|restart|stop|url DIR" >&2; exit 2 ;;
  esac
fi
