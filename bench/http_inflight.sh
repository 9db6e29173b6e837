#!/usr/bin/env bash
# bench/http_inflight.sh [N] [DELAY_MS]: how many HTTP requests one worker
# keeps in flight at once.  Submits N jobs (default 1000) of a one-step http
# sequence against the stand-in server answering after DELAY_MS (default
# 2000), with orchestrator.workers = 1 and orchestrator.max_inflight = N, and
# reports the stand-in's own count of requests being handled at once, the
# wall time for all N, and the worker's own figure from its shutdown log.
set -euo pipefail
n=${1:-1000}
delay=${2:-2000}
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"
[ "$(id -u)" = 0 ] || orch_die "run as root"
orch_install_packages
orch_build_install "$src"
dir=$(mktemp -d /tmp/orch-bench.XXXXXX); chown postgres "$dir"
trap 'orch_stop_standin; orch_stop_cluster "$dir"; rm -rf "$dir"' EXIT
orch_start_standin "$dir" "$src"
port=${PORT:-5495}
orch_start_cluster "$dir" "$port" bench "orchestrator.workers = 1" "orchestrator.max_inflight = $n" "orchestrator.batch_size = 1000"
psql() { orch_as_postgres psql -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d bench "$@"; }
ctl="http://127.0.0.1:$ORCH_STANDIN_PORT/_control"
curl -s -X POST "$ctl/behave" -d "{\"path\": \"/functions/v1/slow\", \"mode\": \"ok\", \"delay_ms\": $delay}" >/dev/null
psql <<SQL
CREATE EXTENSION orchestrator;
INSERT INTO orchestrator.orgs (id, name) VALUES ('00000000-0000-0000-0000-00000000000a', 'Bench');
INSERT INTO orchestrator.users (id, org_id) VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a');
SELECT orch_define_endpoint('slow', 'http://127.0.0.1:$ORCH_STANDIN_PORT/functions/v1/slow', 60000, '{}');
SELECT orch_define_sequence('slow', '[{"name": "call", "kind": "http", "endpoint": "slow"}]');
SQL
start=$(date +%s.%N)
psql -c "SELECT count(*) FROM generate_series(1, $n) g, LATERAL orch_submit_event('slow', 'bench',
	'00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', jsonb_build_object('i', g))" >/dev/null
for _ in $(seq 1 1200); do  # poll (bounded) until every job is done
	[ "$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status <> 'completed'")" = 0 ] && break
	sleep 0.1
done
end=$(date +%s.%N)
stats=$(curl -s "$ctl/stats")
outcome=$(psql -c "SELECT string_agg(status || ': ' || n, ', ') FROM (SELECT status, count(*) n FROM orchestrator.sequence_jobs GROUP BY 1) s")
errors=$(psql -c "SELECT string_agg(DISTINCT last_error, '; ') FROM orchestrator.sequence_jobs WHERE last_error IS NOT NULL")
orch_stop_cluster "$dir"
echo "jobs: $n, endpoint delay: ${delay} ms, workers: 1"
echo "jobs by status: $outcome${errors:+ (errors: $errors)}"
echo "stand-in stats: $stats"
echo "wall time for all: $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f s", b - a}')"
grep -o "The most HTTP requests it had in flight at once was [0-9]*" "$dir/server.log" | tail -1
