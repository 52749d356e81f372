#!/usr/bin/env bash
# Load generator for the prober's speed and memory targets (figures go to BENCHMARKS.md).
#
#   benches/run-bench.sh once [N]       run --once over N generated hosts (default 10000):
#                                       wall time, peak RSS, CPU, results, exit code
#   benches/run-bench.sh tracked [N]    run --once over N hosts until N jobs (default 100000) are
#                                       tracked at once: peak RSS and CPU per tracked job,
#                                       CPU of steady polling, time of a graceful stop
#                                       (1M: see BENCHMARKS.md for the quota and interval)
#   benches/run-bench.sh polls [N]      the status endpoint of one simulator process, first
#                                       driven by wrk (64 connections: the loopback ceiling),
#                                       and by the prober tracking N jobs (default 20000)
#                                       polled every 250 ms, limiter lifted, in alternated
#                                       rounds: req/s, polls/s, CPU µs per request/poll, RSS
#                                       per job, the ratios, per round and their medians
#                                       (BENCH_ROUNDS: rounds, default 3; BENCH_SECS: length
#                                       of each measurement, default 10)
#
# Builds the release binary first (BENCH_BIN=path measures that binary instead). Needs GNU time (/usr/bin/time) for `once` and `tracked`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-once}"
# BENCH_BIN: measure another build (e.g. an older commit's, for a before/after of one hour).
if [ -n "${BENCH_BIN:-}" ]; then
  bin="$BENCH_BIN"
else
  cargo build --release --locked -q
  bin=target/release/iaso-probe
fi
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
  # Room for every job (the file's bound is 200,000).
  export IASO_PROBE_ENVIRONMENTS__BENCH__JOBS__MAX_TRACKED_JOBS=$(( n > 200000 ? n : 200000 ))
  "$bin" simulate --port 18080 --bind 127.0.0.1 --simulator-config benches/sim-tracked.toml \
    > target/bench/sim.log 2>&1 &
  sim=$!
  # Wait for the simulator to exit: a next run binds the same port at once.
  trap 'kill $sim 2>/dev/null && wait $sim 2>/dev/null; true' EXIT
  for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:18080/api/v1/alive && break; sleep 0.2; done
  # Under GNU time: its maximum RSS covers the whole run, the stop (the handoff file) too.
  /usr/bin/time -f %M -o target/bench/tracked.maxrss \
    "$bin" run --once --no-progress --config benches/run-tracked.toml --hosts "$hosts" \
    > target/bench/tracked.out 2> target/bench/tracked.err &
  timer=$!
  probe=
  for _ in $(seq 50); do probe=$(pgrep -P $timer || true); [ -n "$probe" ] && break; sleep 0.1; done
  base_rss=0
  t0=$(date +%s.%N)
  launched=0
  while [ "$launched" -lt "$n" ]; do
    sleep $(( n > 200000 ? 10 : 2 ))
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
  wait $timer || true
  ts1=$(date +%s.%N)
  maxrss=$(tail -1 target/bench/tracked.maxrss)
  handed=$(python3 -c "import json;print(len(json.load(open('target/bench/journal-tracked/tracked-jobs.json'))['jobs']))" 2>/dev/null || echo 0)
  polls=$(cat target/bench/journal-tracked/results-*.ndjson | grep -c '"action":"job.status"' || true)
  python3 - <<PY
n=$n; hz=$hz
print(f"tracked jobs: {n} launched in {$t1-$t0:.1f} s (first run starts at a random point of its first minute)")
print(f"RSS: {$base_rss/1024:.1f} MiB before launches, {$rss_launch/1024:.1f} MiB all launched, {$rss/1024:.1f} MiB after 60 s of polling, peak {$hwm/1024:.1f} MiB before the stop, {$maxrss/1024:.1f} MiB over the whole run (stop included)")
print(f"memory per tracked job: {($rss-$base_rss)*1024/n:.0f} bytes (RSS growth / jobs)")
print(f"CPU to launch and start tracking: {$ticks_launch/hz:.1f} s = {$ticks_launch/hz/n*1e3:.2f} ms/job")
print(f"CPU of 60 s steady polling: {($ticks_steady-$ticks_launch)/hz:.1f} s ({($ticks_steady-$ticks_launch)/hz/60*100:.0f}% of one core)")
print(f"job.status results in the journal: {$polls}")
print(f"graceful stop (SIGTERM to exit, {$handed} jobs handed over): {$ts1-$ts0:.1f} s")
PY
  ;;
polls)
  command -v wrk >/dev/null || { echo "polls needs wrk (Debian: apt-get install wrk)" >&2; exit 2; }
  n="${2:-20000}"
  secs="${BENCH_SECS:-10}"
  rounds="${BENCH_ROUNDS:-3}"
  port=18081
  url=http://127.0.0.1:$port
  hosts=target/bench/hosts-$n.txt
  benches/gen-hosts.sh "$n" > "$hosts"
  rm -rf target/bench/journal-polls
  "$bin" simulate --port $port --bind 127.0.0.1 --simulator-config benches/sim-polls.toml \
    > target/bench/sim-polls.log 2>&1 &
  sim=$!
  probe=
  # A prober left stopped by a round would never see the TERM.
  trap 'kill -CONT $probe 2>/dev/null || true; kill $sim $probe 2>/dev/null; wait $sim 2>/dev/null; true' EXIT
  for _ in $(seq 50); do curl -fs -o /dev/null $url/api/v1/alive && break; sleep 0.2; done
  status_requests() {
    curl -fsS $url/_sim/counters | python3 -c 'import json,sys;print(json.load(sys.stdin)["endpoints"].get("job_status",{}).get("requests",0))'
  }
  # wrk polls one real job (a login and a launch first), as the prober does.
  token=$(curl -fsS -H 'Content-Type: application/json' -d '{"username":"probe","password":"bench-secret"}' \
    $url/api/v1/auth/token | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
  job=$(curl -fsS -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
    -d '{"hostname":"wrk-host","backupLevel":"FULL"}' $url/api/v1/backups \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobId"])')
  cat > target/bench/poll.lua <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"jobId":"$job","hostname":"wrk-host"}'
LUA

  "$bin" run --once --no-progress --config benches/run-polls.toml --hosts "$hosts" \
    > target/bench/polls.out 2> target/bench/polls.err &
  probe=$!
  sleep 0.5
  base_rss=$(awk '/VmRSS/{print $2}' /proc/$probe/status)
  launched=0
  while [ "$launched" -lt "$n" ]; do
    sleep 1
    kill -0 $probe || { echo "prober exited early"; cat target/bench/polls.err; exit 1; }
    launched=$(cat target/bench/journal-polls/results-*.ndjson 2>/dev/null | grep -c '"action":"backup.launch"' || true)
  done
  sleep 3 # every job past its first poll
  # Rounds: the prober polls alone for $secs, then it is stopped (SIGSTOP) while wrk drives
  # the same simulator for $secs, then it goes on (SIGCONT, 2 s to settle). Both are measured
  # in every round, so a slower or faster spell of the machine shows in both.
  : > target/bench/rounds.txt
  for round in $(seq "$rounds"); do
    p0=$(cpu_ticks $probe); s2=$(cpu_ticks $sim); c2=$(status_requests)
    sleep "$secs"
    p1=$(cpu_ticks $probe); s3=$(cpu_ticks $sim); c3=$(status_requests)
    kill -STOP $probe
    sleep 0.5 # the simulator answers what was in flight
    s0=$(cpu_ticks $sim)
    /usr/bin/time -f "%U %S" -o target/bench/wrk.time \
      wrk -t1 -c64 -d${secs}s -s target/bench/poll.lua $url/api/v1/jobs/status > target/bench/wrk.out
    s1=$(cpu_ticks $sim)
    kill -CONT $probe
    wrk_n=$(awk '/requests in/{print $1}' target/bench/wrk.out)
    read -r wrk_user wrk_sys < target/bench/wrk.time
    echo "$round $wrk_n $wrk_user $wrk_sys $((s1 - s0)) $((c3 - c2)) $((p1 - p0)) $((s3 - s2))" >> target/bench/rounds.txt
    sleep 2
  done
  rss=$(awk '/VmRSS/{print $2}' /proc/$probe/status)
  ts0=$(date +%s.%N)
  kill -TERM $probe
  wait $probe || true
  ts1=$(date +%s.%N)
  probe=
  python3 - <<PY
import statistics
hz=$hz; secs=$secs; n=$n
rows=[]
for line in open("target/bench/rounds.txt"):
    r, wrk_n, wu, ws, wsim, polls, pticks, psim = line.split()
    wrk_n, polls = int(wrk_n), int(polls)
    wrk_cpu = float(wu) + float(ws)
    row = dict(wrk_rps=wrk_n/secs, wrk_us=wrk_cpu/wrk_n*1e6, wrk_sim=int(wsim)/hz/wrk_n*1e6,
               pps=polls/secs, us=int(pticks)/hz/polls*1e6, cores=int(pticks)/hz/secs,
               sim=int(psim)/hz/polls*1e6)
    row["ratio"] = row["pps"]/row["wrk_rps"]
    row["cpu_ratio"] = row["us"]/row["wrk_us"]
    rows.append(row)
    print(f"round {r}: wrk (64 connections) {row['wrk_rps']:,.0f} req/s, {row['wrk_us']:.1f} µs per request "
          f"(simulator {row['wrk_sim']:.1f}); iaso-probe {row['pps']:,.0f} polls/s, CPU {row['us']:.1f} µs per poll "
          f"({row['cores']:.2f} cores; simulator {row['sim']:.1f}); ratio {row['ratio']:.2f}")
med = lambda k: statistics.median(r[k] for r in rows)
print(f"wrk (64 connections, {len(rows)} rounds of {secs} s, median): {med('wrk_rps'):,.0f} req/s; wrk CPU {med('wrk_us'):.1f} µs per request; "
      f"simulator {med('wrk_sim'):.1f} µs per request")
print(f"iaso-probe ({n} jobs every 250 ms, {len(rows)} rounds of {secs} s, median): {med('pps'):,.0f} polls/s; CPU {med('us'):.1f} µs per poll "
      f"({med('cores'):.2f} cores); simulator {med('sim'):.1f} µs per request")
print(f"RSS: {$base_rss/1024:.1f} MiB before launches, {$rss/1024:.1f} MiB tracking {n}: {($rss-$base_rss)*1024/n:.0f} bytes per job")
print(f"ratio polls/s : wrk req/s = {med('ratio'):.2f}; CPU per poll : wrk CPU per request = {med('cpu_ratio'):.1f} (medians of the rounds)")
print(f"graceful stop of {n} jobs: {$ts1-$ts0:.1f} s")
PY
  ;;
*)
  echo "usage: $0 once [N] | tracked [N] | polls [N]" >&2
  exit 2
  ;;
esac
