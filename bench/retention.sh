#!/usr/bin/env bash
# bench/retention.sh [TOTAL] [CHUNK] [WORKERS]: table and index sizes, and
# the claim's cost, as TOTAL 3-step jobs pass through with retention on.
#
# The cluster runs with orchestrator.retention = 1s, so the first worker
# removes each finished job (with its history and events) a second after
# it ends.  Jobs are submitted CHUNK at a time; after each chunk has run,
# the script prints the jobs so far, the rows and sizes (heap and indexes)
# of sequence_jobs, step_history and event_log, and the workers' CPU per
# job over that chunk (clock ticks of 1/100 s from /proc: the claim and
# run's cost, steady whatever else the machine does).  With retention
# working, every column but the first stays flat: the baseline is the first
# chunk, measured in the same run.  Defaults: 1,000,000 jobs in chunks of
# 100,000, 2 workers.
set -euo pipefail
total=${1:-1000000}
chunk=${2:-100000}
workers=${3:-2}
. "$(dirname "$0")/lib.sh"
bench_prepare
bench_start_cluster "${PORT:-5497}" "orchestrator.workers = $workers
orchestrator.retention = '1s'
orchestrator.retention_batch = 5000
autovacuum_naptime = '5s'"
bench_define_three

worker_ticks() {
	local pid sum=0
	for pid in $(psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'"); do
		sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
	done
	echo "$sum"
}

printf '| jobs | sequence_jobs rows | heap + indexes | step_history rows | heap + indexes | event_log rows | heap + indexes | worker CPU per job |\n'
printf '|---|---|---|---|---|---|---|---|\n'
done_jobs=0
while [ "$done_jobs" -lt "$total" ]; do
	t0=$(worker_ticks)
	# submit the chunk in transactions of 5,000 (a submit per event, as an application would)
	for ((s = 0; s < chunk; s += 5000)); do
		psql -c "SELECT count(*) FROM generate_series(1, 5000) g,
			LATERAL orch_submit_event('three', 'bench', '00000000-0000-0000-0000-00000000000a',
				'00000000-0000-0000-0000-0000000000a1', jsonb_build_object('n', $done_jobs + $s + g))" >/dev/null
	done
	# bounded wait: every job of the chunk has ended (run, then removed or finished)
	for ((i = 0; i < 6000; i++)); do
		left=$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status IN ('pending', 'in_progress')")
		[ "$left" = 0 ] && break
		sleep 0.1
	done
	[ "$left" = 0 ] || orch_die "jobs still running after 10 minutes"
	t1=$(worker_ticks)
	done_jobs=$((done_jobs + chunk))
	# give retention and autovacuum their turn, as a running system would
	for ((i = 0; i < 600; i++)); do
		old=$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE finished_at < now() - interval '2 seconds'")
		[ "$old" = 0 ] && break
		sleep 0.1
	done
	psql -c "SELECT '| $done_jobs | ' ||
		(SELECT count(*) FROM orchestrator.sequence_jobs) || ' | ' ||
		pg_size_pretty(pg_total_relation_size('orchestrator.sequence_jobs')) || ' | ' ||
		(SELECT count(*) FROM orchestrator.step_history) || ' | ' ||
		pg_size_pretty(pg_total_relation_size('orchestrator.step_history')) || ' | ' ||
		(SELECT count(*) FROM orchestrator.event_log) || ' | ' ||
		pg_size_pretty(pg_total_relation_size('orchestrator.event_log')) || ' | ' ||
		round(($t1 - $t0) * 10000.0 / $chunk) || ' us |'"
done
