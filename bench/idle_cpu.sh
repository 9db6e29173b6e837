#!/usr/bin/env bash
# bench/idle_cpu.sh [SECONDS]: CPU used by idle workers.
#
# Starts a throwaway cluster with 2 workers and the extension installed, runs
# one job so the workers have done real work, then reads utime+stime of each
# worker from /proc before and after SECONDS (default 60) of idleness, and
# the number of times each was woken (voluntary context switches).  As a
# baseline in the same run it reports the same for the checkpointer, a
# process that PostgreSQL itself keeps idle.
set -euo pipefail
secs=${1:-60}
. "$(dirname "$0")/lib.sh"
bench_prepare
bench_start_cluster "${PORT:-5492}" "orchestrator.workers = 2"
bench_define_ping

psql <<'SQL'
SELECT outcome FROM orch_submit_event('ping', 'bench', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}');
SQL
for _ in $(seq 1 300); do  # poll until the job is done (bounded)
	[ "$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'completed'")" = 1 ] && break
	sleep 0.1
done
pids=$(psql -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type IN ('orchestrator worker', 'checkpointer')")

sample() {  # pid -> "ticks voluntary_switches"
	local t v
	t=$(awk '{print $14 + $15}' "/proc/$1/stat")
	v=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/status")
	echo "$t $v"
}
declare -A before
for p in $pids; do before[$p]=$(sample "$p"); done
sleep "$secs"
hz=$(getconf CLK_TCK)
printf '%-22s %8s %14s %12s\n' process pid cpu_ms_in_${secs}s wakeups
for p in $pids; do
	read -r t0 v0 <<<"${before[$p]}"
	read -r t1 v1 <<<"$(sample "$p")"
	name=$(tr '\0' ' ' <"/proc/$p/cmdline" | sed 's/^postgres: //; s/ *$//')
	printf '%-22s %8s %14s %12s\n' "${name:0:22}" "$p" $(( (t1 - t0) * 1000 / hz )) $((v1 - v0))
done
