#!/usr/bin/env bash
# Load generator for the prober's speed and memory targets (figures go to BENCHMARKS.md).
#
#   benches/run-bench.sh once [N]       run --once over N generated hosts (default 10000):
#                                       wall time, peak RSS, CPU, results, exit code
#   benches/run-bench.sh tracked [N]    service mode until N jobs (default 100000) are
#                                       tracked at once: peak RSS and CPU per tracked job,
#                                       CPU of steady polling, time of a graceful stop
#
# Builds the release binary first. Needs GNU time (/usr/bin/time) for `once`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-once}"
cargo build --release --locked -q
bin=target/release/iaso-probe
mkdir -p target/bench

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

case "$mode" in
once)
  n="${2:-10000}"
  hosts=target/bench/hosts-$n.txt
  benches/gen-hosts.sh "$n" > "$hosts"
  rm -rf target/bench/journal
  set +e
  /usr/bin/time -v "$bin" run --once --no-progress --config benches/run-10k.toml --hosts "$hosts" \
    > target/bench/once.out 2> target/bench/once.err
  rc=$?
  set -e
  results=$(cat target/bench/journal/results-*.ndjson | wc -l)
  launches=$(cat target/bench/journal/results-*.ndjson | grep -c '"action":"backup.launch"')
  ends=$(cat target/bench/journal/results-*.ndjson | grep -c '"action":"job.end"')
  echo "hosts=$n exit=$rc results=$results backup.launch=$launches job.end=$ends"
  grep -E "Elapsed|Maximum resident|User time|System time" target/bench/once.err
  tail -4 target/bench/once.out
  ;;
tracked)
  n="${2:-100000}"
  hosts=target/bench/hosts-$n.txt
  benches/gen-hosts.sh "$n" > "$hosts"
  rm -rf target/bench/journal-tracked
  "$bin" simulate --port 18080 --bind 127.0.0.1 --simulator-config benches/sim-tracked.toml \
    > target/bench/sim.log 2>&1 &
  sim=$!
  trap 'kill $sim 2>/dev/null || true' EXIT
  for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:18080/api/v1/alive && break; sleep 0.2; done
  "$bin" run --no-progress --config benches/run-tracked.toml --hosts "$hosts" \
    > target/bench/tracked.out 2> target/bench/tracked.err &
  probe=$!
  base_rss=0
  t0=$(date +%s.%N)
  launched=0
  while [ "$launched" -lt "$n" ]; do
    sleep 2
    kill -0 $probe || { echo "prober exited early"; cat target/bench/tracked.err; exit 1; }
    launched=$(cat target/bench/journal-tracked/results-*.ndjson 2>/dev/null | grep -c '"action":"backup.launch"' || true)
    [ "$base_rss" = 0 ] && base_rss=$(awk '/VmRSS/{print $2}' /proc/$probe/status)
  done
  t1=$(date +%s.%N)
  ticks_launch=$(cpu_ticks $probe)
  rss_launch=$(awk '/VmRSS/{print $2}' /proc/$probe/status)
  # Steady state: every job is polled about twice a minute.
  sleep 60
  ticks_steady=$(cpu_ticks $probe)
  hwm=$(awk '/VmHWM/{print $2}' /proc/$probe/status)
  rss=$(awk '/VmRSS/{print $2}' /proc/$probe/status)
  ts0=$(date +%s.%N)
  kill -TERM $probe
  wait $probe || true
  ts1=$(date +%s.%N)
  handed=$(python3 -c "import json;print(len(json.load(open('target/bench/journal-tracked/tracked-jobs.json'))['jobs']))" 2>/dev/null || echo 0)
  polls=$(cat target/bench/journal-tracked/results-*.ndjson | grep -c '"action":"job.status"' || true)
  python3 - <<PY
n=$n; hz=$hz
print(f"tracked jobs: {n} launched in {$t1-$t0:.1f} s (first run starts at a random point of its first minute)")
print(f"RSS: {$base_rss/1024:.1f} MiB before launches, {$rss_launch/1024:.1f} MiB all launched, {$rss/1024:.1f} MiB after 60 s of polling, peak {$hwm/1024:.1f} MiB")
print(f"memory per tracked job: {($rss-$base_rss)*1024/n:.0f} bytes (RSS growth / jobs)")
print(f"CPU to launch and start tracking: {$ticks_launch/hz:.1f} s = {$ticks_launch/hz/n*1e3:.2f} ms/job")
print(f"CPU of 60 s steady polling: {($ticks_steady-$ticks_launch)/hz:.1f} s ({($ticks_steady-$ticks_launch)/hz/60*100:.0f}% of one core)")
print(f"job.status results in the journal: {$polls}")
print(f"graceful stop (SIGTERM to exit, {$handed} jobs handed over): {$ts1-$ts0:.1f} s")
PY
  ;;
*)
  echo "usage: $0 once [N] | tracked [N]" >&2
  exit 2
  ;;
esac
