#!/usr/bin/env bash
# bench/instructions.sh [N]: instructions the engine spends per job, counted
# by valgrind's callgrind: the same for the same build and input, whatever
# else the machine is doing, so two builds compare to within a fraction of
# a percent where wall-clock rates on a shared machine move by 10-20%.
#
# Builds and installs the extension, submits N + 300 jobs of three sql steps
# to a cluster with no workers, stops it, and runs the jobs in a
# single-user backend under callgrind, as a worker would: claim a batch of
# 20, run the batch (orchestrator.claim_jobs, orchestrator.run_claimed_jobs),
# commit, and again; once for 100 jobs and once for N + 100 on a fresh copy.
# The difference divided by N is the instructions per job, start-up excluded.
set -euo pipefail
n=${1:-200}
. "$(dirname "$0")/lib.sh"
bench_prepare valgrind
bench_start_cluster "${PORT:-5498}" "orchestrator.workers = 0" >/dev/null
bench_define_three
psql -c "SELECT count(*) FROM generate_series(1, $((n + 300))) i, orch_submit_event('three', 'bench', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', jsonb_build_object('i', i)) e" >/dev/null
psql -c "VACUUM ANALYZE" >/dev/null
orch_stop_cluster "$dir"
orch_as_postgres cp -a "$dir/data" "$dir/pristine"

# instructions JOBS: callgrind's total for claiming and running JOBS jobs
instructions() {
	rm -rf "$dir/data" && orch_as_postgres cp -a "$dir/pristine" "$dir/data"
	rm -f "$dir"/cg.*
	for _ in $(seq 1 $(($1 / 20))); do
		echo "SELECT orchestrator.run_claimed_jobs(array_agg(c.job_id), array_agg(c.fencing_token)) FROM orchestrator.claim_jobs(20) c;"
	done | orch_as_postgres valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
		"$($PG_CONFIG --bindir)/postgres" --single -D "$dir/data" \
		-c shared_preload_libraries=orchestrator -c orchestrator.workers=0 bench >/dev/null 2>"$dir/valgrind.log"
	grep -h '^summary:' "$dir"/cg.* | awk '{print $2}'
}
small=$(instructions 100)
large=$(instructions $((n + 100)))
printf '%-44s %12s\n' "figure ($n jobs of 3 sql steps)" instructions
printf '%-44s %12d\n' "per job, batches of 20, start-up excluded" $(((large - small) / n))
