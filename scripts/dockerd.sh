#!/usr/bin/env bash
# Start or stop a private Docker engine for the Docker backend's tests.
#
#   eval "$(bash scripts/dockerd.sh start)"   # prints: export DOCKER_HOST=unix://.../docker.sock
#   bash scripts/dockerd.sh status
#   bash scripts/dockerd.sh stop
#
# Idempotent: `start` reuses an engine that already answers on the socket, `stop` is a
# no-op when none runs. As root it installs Debian's docker.io (and docker-compose, which
# validates the compose files) with apt-get when they are missing.
#
# The engine runs without a bridge network, iptables rules or IP forwarding: containers use
# host networking and bind to 127.0.0.1 only. Its files live under MAGICAF_DOCKERD_DIR
# (default /tmp/magicaf-dockerd): docker.sock, dockerd.pid, dockerd.log, data/, exec/.
set -euo pipefail

DIR="${MAGICAF_DOCKERD_DIR:-/tmp/magicaf-dockerd}"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
export DOCKER_HOST="unix://$SOCK"

say() { echo "dockerd.sh: $*" >&2; }

answers() {
    # The engine answers /_ping on its socket.
    python3 - "$SOCK" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
sys.exit(0 if b"OK" in s.recv(4096) else 1)
EOF
}

install_if_missing() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        say "missing ${missing[*]}. Fix: sudo apt-get install -y ${missing[*]}"
        command -v dockerd >/dev/null 2>&1 || exit 1
        return 0
    fi
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

engine_pid() {
    [ -f "$PIDFILE" ] && cat "$PIDFILE" 2>/dev/null || true
}

start() {
    if answers; then
        say "engine already answers on $SOCK"
        echo "export DOCKER_HOST=$DOCKER_HOST"
        return 0
    fi
    install_if_missing
    if [ "$(id -u)" != 0 ]; then
        say "dockerd needs root. Fix: run this script as root (or use an existing engine)."
        exit 1
    fi
    mkdir -p "$DIR/data" "$DIR/exec"
    local stale
    stale="$(engine_pid)"
    if [ -n "$stale" ] && kill -0 "$stale" 2>/dev/null; then
        say "a dockerd (pid $stale) holds $PIDFILE but does not answer: stopping it"
        stop
        mkdir -p "$DIR/data" "$DIR/exec"
    fi
    rm -f "$SOCK" "$PIDFILE"
    setsid dockerd --host "unix://$SOCK" --data-root "$DIR/data" --exec-root "$DIR/exec" \
        --pidfile "$PIDFILE" --bridge=none --iptables=false --ip6tables=false \
        --ip-forward=false --ip-masq=false >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 300); do
        if answers; then
            say "engine up on $SOCK (pid $(engine_pid), log $LOG)"
            echo "export DOCKER_HOST=$DOCKER_HOST"
            return 0
        fi
        sleep 0.1
    done
    say "dockerd did not answer within 30 s; last log lines:"
    tail -n 20 "$LOG" >&2 || true
    exit 1
}

stop() {
    local pid
    pid="$(engine_pid)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        say "no engine running under $DIR"
        rm -f "$SOCK" "$PIDFILE"
        return 0
    fi
    # Containers first (the engine would otherwise wait for them), then the engine.
    if answers; then
        local ids
        ids="$(DOCKER_HOST="$DOCKER_HOST" docker ps -q 2>/dev/null || true)"
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            DOCKER_HOST="$DOCKER_HOST" docker kill $ids >/dev/null 2>&1 || true
        fi
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "dockerd (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # dockerd started its own containerd; it exits with dockerd. Wait for the socket to go.
    for _ in $(seq 1 50); do
        [ -S "$SOCK" ] || break
        sleep 0.1
    done
    rm -f "$SOCK" "$PIDFILE"
    say "engine stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
    if answers; then
        echo "running: DOCKER_HOST=$DOCKER_HOST (pid $(engine_pid))"
    else
        echo "not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
