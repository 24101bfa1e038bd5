#!/usr/bin/env bash
# Time from a fresh clone to the first delivered mail: clone this repository into a
# temporary folder, run the README's first command (`make up`: `make setup`, then
# `mailgate up`) there with its own MAILGATE_HOME, send one mail with swaks as soon as smtp-server answers, and stop when
# `mailgate sink` (the default smarthost, 127.0.0.1:2526) prints it.
#
#     bash bench/first_mail.sh            # prints setup, start and delivery times
#
# What is already on the machine counts as it is (Debian packages, pip's cache, the
# Kafka jars in ~/.cache/mailgate): run it on a new machine for the cold figure.
# Needs the default ports free: 2525 (smtp-server), 2526 (the sink), 9092/9093 (Kafka).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
export MAILGATE_HOME="$work/home"
up_pid=""
stop() {  # Ctrl-C, as a person would: mailgate up stops its services and its broker
  [ -n "$up_pid" ] && kill -INT "$up_pid" 2>/dev/null && timeout 90 tail --pid="$up_pid" -f /dev/null
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"
}
trap stop EXIT
now() { date +%s%N; }
secs() { printf '%d.%d' $(( $1 / 1000000000 )) $(( $1 % 1000000000 / 100000000 )); }

for port in 2525 2526 9092 9093; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: stop what listens there (a running gateway?) and try again" >&2; exit 2
  fi
done

t0=$(now)
git clone -q "$src" "$work/mailgate"
cd "$work/mailgate"
make setup >"$work/setup.log" 2>&1 || { tail -20 "$work/setup.log"; exit 1; }
t_setup=$(now)
.venv/bin/mailgate sink >"$work/sink.log" 2>&1 &
.venv/bin/mailgate up >"$work/up.log" 2>&1 &  # what `make up` runs after setup
up_pid=$!
until swaks --server 127.0.0.1:2525 --from bench@outside.test --to alice@example.com \
        --h-Subject "first mail" --quit-after RCPT >/dev/null 2>&1; do
  sleep 0.2
  [ $(( $(now) - t0 )) -gt 600000000000 ] && { echo "smtp-server not up in 600 s"; tail -20 "$work/up.log"; exit 1; }
done
t_listen=$(now)
swaks --server 127.0.0.1:2525 --from bench@outside.test --to alice@example.com --h-Subject "first mail" \
  >"$work/swaks.log" 2>&1 || { cat "$work/swaks.log"; exit 1; }
until grep -q "alice@example.com" "$work/sink.log"; do
  sleep 0.05
  [ $(( $(now) - t0 )) -gt 900000000000 ] && { echo "no delivery in 900 s"; tail -20 "$work/up.log"; exit 1; }
done
t_done=$(now)
echo "fresh clone + make setup:           $(secs $(( t_setup - t0 ))) s"
echo "mailgate up until smtp-server answers: $(secs $(( t_listen - t_setup ))) s"
echo "first mail accepted -> delivered:     $(secs $(( t_done - t_listen ))) s"
echo "fresh clone to the first delivered mail: $(secs $(( t_done - t0 ))) s"
