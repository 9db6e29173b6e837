#!/usr/bin/env bash
# bench/sql_throughput.sh [N] [WORKERS]: end-to-end rate of 3-step sql jobs.
#
# Defines a sequence of three sql steps (each returns a small output, which
# the engine persists with the job's state and a step_history row), submits
# N events in one transaction, and times from that commit until every job is
# completed (the submits themselves are not timed).  Reported: jobs/s for the engine, and beside it the
# rate of a baseline measured in the same run on the same server: a plpgsql
# loop that claims the same number of rows with FOR UPDATE SKIP LOCKED in
# batches of 32 and does the same writes (three output updates and three
# history rows per job) in one transaction per batch.  Also reported: the
# rate of the N submits themselves (one statement, one transaction, client
# round trip included) beside one INSERT ... SELECT of the same payloads
# into a plain table, and the CPU time the workers used per job (from
# /proc: it does not depend on what else the machine is doing).
set -euo pipefail
n=${1:-4000}
workers=${2:-1}
. "$(dirname "$0")/lib.sh"
bench_prepare
bench_start_cluster "${PORT:-5492}" "orchestrator.workers = $workers"

bench_define_three
bench_define_loop_baseline

# worker_ticks: CPU time (user + system, clock ticks) the workers have used
worker_ticks() {
	local pid total=0 t
	for pid in $(psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'"); do
		t=$(awk '{print $14 + $15}' "/proc/$pid/stat")
		total=$((total + t))
	done
	echo "$total"
}

engine() {
	local t0 t1 s0 c0
	c0=$(worker_ticks)
	s0=$(date +%s.%N)
	psql -c "SELECT count(*) FROM generate_series(1, $n) i, orch_submit_event('three', 'bench', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', jsonb_build_object('i', i, 'r', '$RANDOM')) e WHERE e.outcome = 'accepted'" >/dev/null
	t0=$(date +%s.%N)  # the submits committed: the run starts
	echo "$s0" >"$dir/submit_start"
	for _ in $(seq 1 6000); do  # wait (bounded: 10 min) until every job is completed
		[ "$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status NOT IN ('completed')")" = 0 ] && break
		sleep 0.1
	done
	t1=$(date +%s.%N)
	echo "$(( $(worker_ticks) - c0 ))" >"$dir/worker_ticks"
	echo "$t0 $t1"
}

baseline() {
	local t0 t1 s0
	s0=$(date +%s.%N)
	psql -c "INSERT INTO base_jobs (state) SELECT jsonb_build_object('i', i, 'r', '$RANDOM') FROM generate_series(1, $n) i" >/dev/null
	t0=$(date +%s.%N)
	echo "$s0" >"$dir/insert_start"
	psql -c "CALL base_run()" >/dev/null
	t1=$(date +%s.%N)
	echo "$t0 $t1"
}

# alternate, so noise hits both; two rounds each
rates_e=() rates_b=() sub_e=() sub_b=() cpu_e=()
for round in 1 2; do
	read -r a b < <(engine); rates_e+=("$(echo "$n / ($b - $a)" | bc -l)")
	cpu_e+=("$(echo "$(cat "$dir/worker_ticks") * 1000000 / $(getconf CLK_TCK) / $n" | bc -l)")
	sub_e+=("$(echo "$n / ($a - $(cat "$dir/submit_start"))" | bc -l)")
	read -r a b < <(baseline); rates_b+=("$(echo "$n / ($b - $a)" | bc -l)")
	sub_b+=("$(echo "$n / ($a - $(cat "$dir/insert_start"))" | bc -l)")
done
median2() { echo "($1 + $2) / 2" | bc -l; }
e=$(median2 "${rates_e[@]}"); b=$(median2 "${rates_b[@]}")
se=$(median2 "${sub_e[@]}"); sb=$(median2 "${sub_b[@]}")
printf '%-44s %10s %10s %8s\n' "figure ($n jobs, $workers worker(s))" ours baseline ratio
printf '%-44s %10.0f %10.0f %8.2f\n' "3 sql steps end to end, jobs/s" "$e" "$b" "$(echo "$e / $b" | bc -l)"
printf '%-44s %10.0f %10.0f %8.2f\n' "submit in one transaction (vs INSERT), ev/s" "$se" "$sb" "$(echo "$se / $sb" | bc -l)"
printf '%-44s %10.0f\n' "workers' CPU per job, us" "$(median2 "${cpu_e[@]}")"
printf '%-44s %10.0f %10.0f\n' "  rounds (engine / baseline)" "${rates_e[0]}" "${rates_b[0]}"
printf '%-44s %10.0f %10.0f\n' "" "${rates_e[1]}" "${rates_b[1]}"
