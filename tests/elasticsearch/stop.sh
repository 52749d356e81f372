#!/usr/bin/env bash
# Stops what tests/elasticsearch/start.sh started on DATA_DIR: every node, or only node N.
# SIGTERM first (the node closes cleanly), SIGKILL after 30 s. Data stays in DATA_DIR.
#
#   tests/elasticsearch/stop.sh DATA_DIR [N]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DATA_DIR [N]" >&2; exit 2; }
data=$1
if [ $# -ge 2 ]; then files=("$data/node-$2.pid"); else files=("$data"/node-*.pid); fi
for f in "${files[@]}"; do
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
done
