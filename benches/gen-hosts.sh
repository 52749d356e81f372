#!/usr/bin/env bash
# Writes N generated hosts (`hostname LEVEL` per line, the --hosts format) to stdout.
#   benches/gen-hosts.sh 10000 > /tmp/hosts-10k.txt
set -euo pipefail
n="${1:?usage: gen-hosts.sh N}"
levels=(FULL INCREMENTAL DIFFERENTIAL SYNTHETIC_FULL)
for ((i = 0; i < n; i++)); do
  printf 'bench-host-%06d %s\n' "$i" "${levels[i % 4]}"
done
