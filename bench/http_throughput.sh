#!/usr/bin/env bash
# bench/http_throughput.sh [JOBS]: HTTP steps per second, next to wrk.
#
# Serves a static JSON answer from nginx on loopback, then, on the same
# machine and endpoint:
#   wrk     : wrk -t2 -c200 -d5s with a POST of a body of the same size the
#             engine sends (the baseline: what the endpoint and loopback allow);
#   engine  : JOBS jobs (default 5000) of a one-step http sequence, submitted
#             in one transaction; steps/s = JOBS / (last step finished - first
#             submit), with orchestrator.workers = 2 (BATCH sets batch_size).
# Prints a table with the ratio engine / wrk.
set -euo pipefail
jobs=${1:-5000}
. "$(dirname "$0")/lib.sh"
bench_prepare nginx-light wrk
bench_start_nginx "${NGINX_PORT:-18080}"

bench_start_cluster "${PORT:-5493}" "orchestrator.workers = 2" "max_connections = 50" "orchestrator.batch_size = ${BATCH:-32}"
bench_define_hit
bench_wrk_script "$dir/post.lua"
wrk_rps=$(wrk -t2 -c200 -d5s -s "$dir/post.lua" "$url" | awk '/Requests\/sec/ {print $2}')

run_engine() {  # prints steps/s
	psql -c "TRUNCATE orchestrator.sequence_jobs, orchestrator.step_history, orchestrator.event_log" >/dev/null
	psql -c "SELECT count(*) FROM generate_series(1, $jobs) g, LATERAL orch_submit_event('hit', 'bench',
		'00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', jsonb_build_object('i', g))" >/dev/null
	for _ in $(seq 1 1200); do  # poll (bounded) until every job is done
		[ "$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status IN ('pending', 'in_progress')")" = 0 ] && break
		sleep 0.1
	done
	psql -c "SELECT round($jobs / extract(epoch FROM max(finished_at) - min(created_at))::numeric, 0)
	         FROM orchestrator.sequence_jobs WHERE status = 'completed' HAVING count(*) = $jobs"
}
two=$(run_engine)
failed=$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status <> 'completed'")

printf '\n%-34s %12s %8s\n' "HTTP, static loopback endpoint" "requests/s" "ratio"
printf '%-34s %12s %8s\n' "wrk -t2 -c200 (baseline)" "$wrk_rps" "1.00"
printf '%-34s %12s %8s\n' "engine, 2 workers, $jobs steps" "$two" "$(awk -v a="$two" -v b="$wrk_rps" 'BEGIN {printf "%.2f", a / b}')"
echo "jobs not completed: $failed"
