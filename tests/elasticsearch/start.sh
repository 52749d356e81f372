#!/usr/bin/env bash
# Starts a real Elasticsearch for iaso-probe's tests: 1 (default) or 3 nodes on 127.0.0.1,
# node n's HTTP on PORT+n-1, one JVM per node. Waits for yellow, prints one pid per line
# (node 1 first) and returns; the JVMs keep running until tests/elasticsearch/stop.sh DATA_DIR.
#
#   tests/elasticsearch/start.sh PORT DATA_DIR [NODES] [-E key=value]...
#
# -E key=value is a node setting for every node, e.g. -E http.max_content_length=2kb
# -E thread_pool.write.size=1 -E thread_pool.write.queue_size=1 (the fault tests use these).
# Environment: ES_TRANSPORT_PORT (node n's transport port is ES_TRANSPORT_PORT+n-1; default
# PORT+100), ES_HEAP (default 512m), ES_WATCH_PID (the node exits once that process is gone),
# ES_START_TIMEOUT_SECS (default 180).
# Logs: DATA_DIR/node-N.log; pids: DATA_DIR/node-N.pid. Restarting on the same DATA_DIR keeps
# every document. The first run resolves Elasticsearch from Maven Central into ~/.m2; later
# runs are offline.
set -euo pipefail

usage() { echo "usage: $0 PORT DATA_DIR [NODES] [-E key=value]..." >&2; exit 2; }
[ $# -ge 2 ] || usage
port=$1 data=$2; shift 2
nodes=1
if [ $# -gt 0 ] && [[ $1 != -* ]]; then nodes=$1; shift; fi
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    -E) [ $# -ge 2 ] || usage; extra+=("$2"); shift 2 ;;
    -E*) extra+=("${1#-E}"); shift ;;
    *) usage ;;
  esac
done
[[ $port =~ ^[0-9]+$ ]] || usage
[[ $nodes =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] || usage
command -v java >/dev/null || { echo "start.sh: java not found (Java 17+ is needed)" >&2; exit 3; }

here=$(cd "$(dirname "$0")" && pwd)
build=$here/target
mkdir -p "$build" "$data"
data=$(cd "$data" && pwd)

# Class path: resolved once (Maven, online the first time), then reused offline.
if [ ! -s "$build/classpath.txt" ] || [ "$here/pom.xml" -nt "$build/classpath.txt" ]; then
  command -v mvn >/dev/null || { echo "start.sh: mvn not found (Maven is needed the first time)" >&2; exit 3; }
  mvn -q -B -f "$here/pom.xml" dependency:build-classpath -Dmdep.outputFile="$build/classpath.txt" \
    >"$build/maven.log" 2>&1 || { echo "start.sh: resolving Elasticsearch failed, see $build/maven.log" >&2; tail -5 "$build/maven.log" >&2; exit 3; }
fi
cp=$(cat "$build/classpath.txt")
sources=$(find "$here/src/main/java" -name '*.java')
stamp=$build/classes/.built
if [ ! -e "$stamp" ] || [ -n "$(find "$here/src/main/java" -newer "$stamp" -name '*.java')" ]; then
  rm -rf "$build/classes" && mkdir -p "$build/classes"
  # shellcheck disable=SC2086
  javac -nowarn -d "$build/classes" -cp "$cp" $sources
  touch "$stamp"
fi

tport=${ES_TRANSPORT_PORT:-$((port + 100))}
seeds=() masters=()
for n in $(seq 1 "$nodes"); do seeds+=("127.0.0.1:$((tport + n - 1))"); masters+=("node-$n"); done
pids=()
for n in $(seq 1 "$nodes"); do
  if [ -s "$data/node-$n.pid" ] && kill -0 "$(cat "$data/node-$n.pid")" 2>/dev/null; then
    echo "start.sh: node $n of $data already runs as pid $(cat "$data/node-$n.pid")" >&2; exit 4
  fi
  settings=(cluster.name=iaso-test "node.name=node-$n" "http.port=$((port + n - 1))"
            "transport.port=$((tport + n - 1))" network.host=127.0.0.1
            action.destructive_requires_name=false
            # the test machine's disk is shared and often above 90 %: never refuse shards for it
            cluster.routing.allocation.disk.threshold_enabled=false)
  if [ "$nodes" -eq 1 ]; then
    settings+=(discovery.type=single-node)
  else
    settings+=("discovery.seed_hosts=$(IFS=,; echo "${seeds[*]}")" "cluster.initial_master_nodes=$(IFS=,; echo "${masters[*]}")")
  fi
  # setsid: the node is not in the caller's process group, so it is stopped by pid only.
  ES_WATCH_PID=${ES_WATCH_PID:-} setsid java -Xms"${ES_HEAP:-512m}" -Xmx"${ES_HEAP:-512m}" \
    -XX:+UseSerialGC -Djava.awt.headless=true -Dlog4j2.disable.jmx=true \
    -cp "$build/classes:$cp" org.elasticsearch.node.TestNode "$data/node-$n" \
    "${settings[@]}" "${extra[@]}" >>"$data/node-$n.log" 2>&1 </dev/null &
  echo $! >"$data/node-$n.pid"
  pids+=($!)
done

deadline=$((SECONDS + ${ES_START_TIMEOUT_SECS:-180}))
url="http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&wait_for_nodes=$nodes&timeout=2s"
until curl -sf -m 5 "$url" >/dev/null 2>&1; do
  for n in $(seq 1 "$nodes"); do
    if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
      echo "start.sh: node $n exited during start-up; last lines of $data/node-$n.log:" >&2
      tail -20 "$data/node-$n.log" >&2; "$here/stop.sh" "$data" >/dev/null 2>&1 || true; exit 5
    fi
  done
  if [ $SECONDS -ge $deadline ]; then
    echo "start.sh: not yellow after ${ES_START_TIMEOUT_SECS:-180}s; see $data/node-*.log" >&2
    "$here/stop.sh" "$data" >/dev/null 2>&1 || true; exit 6
  fi
  sleep 0.5
done
printf '%s\n' "${pids[@]}"
