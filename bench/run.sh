#!/usr/bin/env bash
# bench/run.sh [--quick] [--no-build] [--out FILE] [--only LIST]: the
# engine's headline figures, each beside a baseline measured in the same run
# on the same machine, printed as one GitHub markdown table (figure | ours |
# baseline | ratio | target | met) for bench/RESULTS.md.
#
# Measured, in the table's order (bench/README.md#runsh says how):
#   1. submit: pgbench -c2 of orch_submit_event vs a 1-row INSERT of the same
#      payload into a plain table (bigserial key)
#   2. 3 sql steps end to end, jobs/s, with 1 and with 2 workers, vs
#      graphile-worker (batched settings, and defaults), pg-boss, and the
#      plpgsql SKIP LOCKED loop of sql_throughput.sh
#   3. 1 http step per job against a local nginx vs wrk -t2 -c200, and vs
#      pg_net's published 400 requests/s
#   4. commit of a submit -> its first step starts, p50 / p99, vs INSERT +
#      NOTIFY -> a LISTENing client
#   5. 1 and 2 again, on a fresh cluster whose tables were VACUUM ANALYZEd
#      while empty (autovacuum off until the figure is done)
#   6. the cost of a submit and of claiming and running 3-step jobs with
#      1,000,000 finished jobs in the tables vs with 10,000 (--quick: 100,000)
#   7. batch submit: orch_submit_events of N events vs one INSERT ... SELECT
#   8. growth of the workers' resident memory after warm-up, over the largest
#      run
#   9. CPU ticks of idle workers vs the checkpointer's
#
# Engine and baseline alternate (ours, baseline, ours, baseline...: 2 rounds
# with --quick, 3 without) and the table gives the medians, so machine noise
# hits both.  Runs as root on Debian 12 from the top of the tree: installs
# the Debian packages it needs (nginx-light, wrk; pgbench comes with
# postgresql-15), graphile-worker, pg-boss and pg from npm into
# /var/cache/orch-bench/node (outside the tree; needs node >= 18 and npm),
# builds and installs the extension (not with --no-build), and runs one
# throwaway cluster at a time on PORT (5496), nginx on NGINX_PORT (18090).
# --quick takes 3 to 4 minutes on a 2-core machine, the full run about 15.
#
# Options:
#   --quick       smaller runs, 2 rounds (under 5 minutes)
#   --no-build    use the extension installed in the server; do not build
#   --out FILE    also write the table to FILE
#   --only LIST   run only these figures (their numbers in the list above,
#                 e.g. 1,2,5)
set -euo pipefail

usage() { sed -n '2,5p;/^# Options/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
quick=0 build=1 out= only=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--no-build) build=0 ;;
	--out) [ $# -ge 2 ] || usage; out=$2; shift ;;
	--out=*) out=${1#--out=} ;;
	--only) [ $# -ge 2 ] || usage; only=$2; shift ;;
	--only=*) only=${1#--only=} ;;
	*) usage ;;
	esac
	shift
done
[ -z "$out" ] || out=$(realpath -m "$out")
[ "$build" = 1 ] || export BENCH_NO_BUILD=1
. "$(dirname "$0")/lib.sh"

if [ "$quick" = 1 ]; then
	rounds=2 t_pgbench=5 n_three=2000 n_http=3000 t_wrk=3 n_wake=200 n_batch=5000
	n_rss=20000 t_idle=10 n_small=10000 n_big=100000 n_claim=2000
else
	rounds=3 t_pgbench=15 n_three=10000 n_http=10000 t_wrk=10 n_wake=900 n_batch=20000
	n_rss=1000000 t_idle=60 n_small=10000 n_big=1000000 n_claim=5000
fi
node_dir=/var/cache/orch-bench/node
org=00000000-0000-0000-0000-00000000000a
usr=00000000-0000-0000-0000-0000000000a1
started=$SECONDS

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- setup

# node_packages: graphile-worker, pg-boss and pg under $node_dir, unless
# there already.  The majors are pinned so the drivers in bench/node/ keep
# working: graphile-worker 0.18 and pg-boss 11+ need Node.js 22.
node_packages() {
	local pkgs="graphile-worker@0.17 pg-boss@10 pg@8" have
	command -v node >/dev/null && command -v npm >/dev/null || orch_die "node and npm are needed (Node.js 18 or later)"
	have=$(node -e "
		const v = (p) => { try { return require('$node_dir/node_modules/' + p + '/package.json').version } catch (e) { return '' } };
		console.log(v('graphile-worker').startsWith('0.17.') && v('pg-boss').startsWith('10.') && v('pg').startsWith('8.') ? 'yes' : 'no')")
	if [ "$have" != yes ]; then
		log "installing $pkgs into $node_dir"
		mkdir -p "$node_dir"
		npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error $pkgs >/dev/null
	fi
	export NODE_PATH="$node_dir/node_modules"
}

# node_run SCRIPT ARGS...: a driver from bench/node/ against the cluster
node_run() {
	PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=bench node "$src/bench/node/$1" "${@:2}"
}

# wait_workers N: until N workers sleep on their latch (bounded: 10 s)
wait_workers() {
	local i
	for i in $(seq 1 200); do
		[ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND wait_event_type = 'Extension'")" = "$1" ] && return 0
		sleep 0.05
	done
	orch_die "$1 worker(s) did not start: $(tail -5 "$dir/server.log")"
}

# set_workers N: restart the cluster with orchestrator.workers = N
set_workers() {
	psql -c "ALTER SYSTEM SET orchestrator.workers = $1" >/dev/null
	orch_as_postgres pg_ctl -D "$dir/data" -l "$dir/server.log" -m fast -w restart >/dev/null
	wait_workers "$1"
	workers_now=$1
}
# ensure_workers N: the same, unless the cluster already has N workers
ensure_workers() { [ "$workers_now" = "$1" ] || set_workers "$1"; }

# want N: whether figure N is to be run (--only)
want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

# new_cluster [CONF...]: a fresh cluster (initdb) in $dir with the schema
# every figure uses: sequences "three", "ping" and "hit", the baselines'
# tables, graphile-worker's and pg-boss's schemas.  No workers.
new_cluster() {
	orch_stop_cluster "$dir"
	rm -rf "$dir/data"
	bench_start_cluster "${PORT:-5496}" "max_connections = 200" "shared_buffers = 1GB" \
		"max_wal_size = 8GB" "checkpoint_timeout = 30min" "orchestrator.workers = 0" "$@" >/dev/null
	workers_now=0
	bench_define_three
	bench_define_ping
	bench_define_hit
	bench_define_loop_baseline
	psql >/dev/null <<'SQL'
CREATE TABLE plain_events (id bigserial PRIMARY KEY, payload jsonb NOT NULL);
CREATE TABLE notify_events (id bigserial PRIMARY KEY, payload jsonb NOT NULL);
CREATE TABLE app_state (id int PRIMARY KEY, state jsonb NOT NULL DEFAULT '{}');
CREATE TABLE app_history (id bigserial PRIMARY KEY, job_id int, step text, output jsonb, at timestamptz DEFAULT clock_timestamp());
-- the wake-up figure's wait: until no job is pending or running (bounded)
CREATE FUNCTION wait_idle() RETURNS void LANGUAGE plpgsql AS $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
	LOOP
		EXIT WHEN NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs WHERE status = 'pending')
			AND NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs WHERE status = 'in_progress');
		IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'jobs not done after 30 s'; END IF;
		PERFORM pg_sleep(0.002);
	END LOOP;
END $$;
SQL
	node_run graphile.js migrate
	node_run pgboss.js migrate
}

# ---------------------------------------------------------------- helpers

# median V...: the median, or n/a if any value is not a number
median() {
	printf '%s\n' "$@" | sort -g | awk '!/^[0-9]+(\.[0-9]+)?$/ {bad = 1} {v[NR] = $1}
		END {if (bad || NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# calc EXPR: awk arithmetic on numbers, n/a if any operand is n/a
calc() { case $1 in *n/a*) echo n/a ;; *) awk "BEGIN {print $1}" ;; esac; }
thousands() { echo "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
int() { case $1 in n/a) echo n/a ;; *) printf '%.0f' "$1" ;; esac; }
dec() { case $1 in n/a) echo n/a ;; *) printf "%.${2:-2}f" "$1" ;; esac; }
# yes_if EXPR: yes if the awk condition holds, no otherwise (or on n/a)
yes_if() { case $1 in *n/a*) echo no ;; *) awk "BEGIN {print ($1) ? \"yes\" : \"no\"}" ;; esac; }

declare -A table
notes=()
# result KEY FIGURE OURS BASELINE RATIO TARGET MET
result() { table[$1]="| $2 | $3 | $4 | $5 | $6 | $7 |"; }

reset_engine() {
	psql -c "TRUNCATE orchestrator.sequence_jobs, orchestrator.step_history, orchestrator.event_log CASCADE" >/dev/null
}
engine_idle="NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs WHERE status = 'pending')
	AND NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs WHERE status = 'in_progress')"

# ours_e2e N EVENT_TYPE: jobs/s of N jobs submitted in one statement, from
# its commit until none is pending or running; all N must have completed
ours_e2e() {
	E2E_N=$1 E2E_SUBMIT="SELECT count(*) FROM generate_series(1, $1) i, orch_submit_event('$2', 'bench', '$org', '$usr',
		jsonb_build_object('i', i, 'r', random())) e WHERE e.outcome = 'accepted'" \
	E2E_DONE=$engine_idle \
	E2E_CHECK="(SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'completed' AND event_type = '$2') = $1" \
	node_run e2e.js || echo failed
}

# three_ours: 3-step jobs/s on emptied tables
three_ours() { reset_engine; ours_e2e "$n_three" three; }
three_graphile() {  # MODE
	psql -c "TRUNCATE app_state, app_history" >/dev/null
	node_run graphile.js "$1" "$n_three" || echo failed
}
three_pgboss() {
	psql -c "TRUNCATE app_state, app_history, pgboss.job" >/dev/null
	node_run pgboss.js "$n_three" || echo failed
}
three_loop() {
	psql -c "TRUNCATE base_jobs, base_history" >/dev/null
	E2E_N=$n_three E2E_SUBMIT="INSERT INTO base_jobs (state) SELECT jsonb_build_object('i', i, 'r', random()) FROM generate_series(1, $n_three) i" \
	E2E_RUN="CALL base_run()" E2E_DONE=true E2E_CHECK="(SELECT count(*) FROM base_history) = 3 * $n_three" \
	node_run e2e.js || echo failed
}

# pgbench_tps SCRIPT: transactions/s of pgbench -c2 -j2 running SCRIPT
pgbench_tps() {
	{ orch_as_postgres pgbench -n -c2 -j2 -T "$t_pgbench" -f "$1" -h "$dir" -p "$port" bench 2>&1 || true; } |
		awk '/^tps = / {print $3; found = 1} END {if (!found) print "failed"}'
}

# timed_ms SQL: the milliseconds psql's \timing gives for one statement (its
# round trip and commit), or "failed" (the error is kept in $dir/timed.err)
timed_ms() {
	{ printf '\\timing on\n%s;\n' "$1" | bench_psql -At 2>"$dir/timed.err" || true; } |
		awk '/^Time: / {print $2; found = 1} END {if (!found) print "failed"}'
}
submit_scripts() {
	cat >"$dir/submit.sql" <<SQL
\set r random(1, 9000000000000000)
SELECT outcome FROM orch_submit_event('three', 'bench', '$org', '$usr', jsonb_build_object('r', :r));
SQL
	cat >"$dir/insert.sql" <<'SQL'
\set r random(1, 9000000000000000)
INSERT INTO plain_events (payload) VALUES (jsonb_build_object('r', :r));
SQL
}

# empty_tables [vacuum]: truncate the engine's tables and plain_events
# (with "vacuum", VACUUM ANALYZE the database while they are empty), and
# checkpoint, so each pgbench run starts alike
empty_tables() {
	reset_engine
	psql -c "TRUNCATE plain_events" >/dev/null
	[ "${1:-}" != vacuum ] || psql -c "VACUUM ANALYZE" >/dev/null
	psql -c "CHECKPOINT" >/dev/null
}

# submit_rounds [vacuum]: sets $sub_ours and $sub_base, the medians of the
# alternating pgbench runs (workers must be 0: nothing runs the jobs)
submit_rounds() {
	local r o=() b=() bad
	for r in $(seq 1 "$rounds"); do
		empty_tables "${1:-}"
		o+=("$(pgbench_tps "$dir/submit.sql")")
		bad=$(psql -c "SELECT count(*) FROM orchestrator.event_log WHERE outcome <> 'accepted'")
		[ "$bad" = 0 ] || notes+=("submit round $r: $bad events were not accepted (duplicates?)")
		empty_tables "${1:-}"
		b+=("$(pgbench_tps "$dir/insert.sql")")
		log "   round $r: ours ${o[-1]}, INSERT ${b[-1]}"
	done
	sub_ours=$(median "${o[@]}") sub_base=$(median "${b[@]}")
}

# percentile P FILE: nearest-rank percentile of the numbers in FILE
percentile() { sort -g "$2" | awk -v p="$1" '{v[NR] = $1} END {i = int(p * NR + 0.999999); if (i < 1) i = 1; print NR ? v[i] : "n/a"}'; }

# worker_pids: the orchestrator workers' process ids
worker_pids() { psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' ORDER BY pid"; }
# ticks PID: CPU time (user + system, clock ticks) the process has used
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# worker_ticks: the same, summed over the workers
worker_ticks() { local p t=0; for p in $(worker_pids); do t=$((t + $(ticks "$p"))); done; echo "$t"; }

# ---------------------------------------------------------------- figures

# 1. submit: pgbench -c2 of orch_submit_event vs a 1-row INSERT
fig_submit() {
	log "1. submit vs INSERT, pgbench -c2 -T$t_pgbench, $rounds rounds"
	ensure_workers 0
	submit_rounds
	local o=$sub_ours b=$sub_base ratio
	ratio=$(calc "$o / $b")
	result 1 "submit: pgbench -c2, tx/s (vs 1-row INSERT into a plain table)" "$(int "$o")" "$(int "$b")" \
		"$(dec "$ratio")" "≥ 0.7" "$(yes_if "$ratio >= 0.7")"
}

# 7. batch submit: orch_submit_events of N events vs one INSERT ... SELECT
fig_batch_submit() {
	log "7. batch submit of $n_batch events"
	ensure_workers 0
	local r o=() b=() ms exists or br
	local ours="SELECT count(*) FROM orch_submit_events('three', 'bench', '$org', array_fill('$usr'::uuid, ARRAY[$n_batch]),
		(SELECT array_agg(jsonb_build_object('i', i, 'r', random())) FROM generate_series(1, $n_batch) i))"
	local base="INSERT INTO plain_events (payload) SELECT jsonb_build_object('i', i, 'r', random()) FROM generate_series(1, $n_batch) i"
	exists=$(psql -c "SELECT to_regprocedure('orch_submit_events(text,text,uuid,uuid[],jsonb[],text[])') IS NOT NULL")
	for r in $(seq 1 "$rounds"); do
		or=n/a
		if [ "$exists" = t ]; then
			empty_tables
			ms=$(timed_ms "$ours")
			or=$(calc "$n_batch * 1000 / ${ms/failed/n/a}")
			o+=("$or")
			[ "$ms" != failed ] || notes+=("batch submit, round $r: $(head -c 300 "$dir/timed.err" | tr '\n' ' ')")
		fi
		empty_tables
		ms=$(timed_ms "$base")
		br=$(calc "$n_batch * 1000 / ${ms/failed/n/a}")
		b+=("$br")
		log "   round $r: ours $or, INSERT ... SELECT $br"
	done
	local om bm ratio
	bm=$(median "${b[@]}")
	if [ "$exists" = t ]; then om=$(median "${o[@]}"); else om=n/a; notes+=("orch_submit_events(text, text, uuid, uuid[], jsonb[], text[]) does not exist in this build"); fi
	ratio=$(calc "$om / $bm")
	result 7 "batch submit of $n_batch events, events/s: orch_submit_events (vs one INSERT … SELECT)" "$(int "$om")" "$(int "$bm")" \
		"$(dec "$ratio")" "≥ 0.5" "$(yes_if "$ratio >= 0.5")"
}

# 2. 3 sql steps end to end, with 1 and 2 workers, vs four baselines
fig_three() {
	log "2. 3 sql steps end to end, $n_three jobs, $rounds rounds"
	local r o1=() o2=() gb=() gd=() pb=() lp=()
	for r in $(seq 1 "$rounds"); do
		set_workers 1
		o1+=("$(three_ours)"); gb+=("$(three_graphile batched)"); gd+=("$(three_graphile defaults)")
		set_workers 2
		o2+=("$(three_ours)"); pb+=("$(three_pgboss)"); lp+=("$(three_loop)")
		log "   round $r: ours 1 worker ${o1[-1]}, graphile batched ${gb[-1]}, defaults ${gd[-1]}; ours 2 workers ${o2[-1]}, pg-boss ${pb[-1]}, loop ${lp[-1]}"
	done
	local m1 m2 b name target key w m ratio
	m1=$(median "${o1[@]}") m2=$(median "${o2[@]}")
	for b in gb gd pb lp; do
		case $b in
		gb) name="graphile-worker $gw_version, batched settings" target=1.0 m=$(median "${gb[@]}") ;;
		gd) name="graphile-worker $gw_version, defaults" target=2.0 m=$(median "${gd[@]}") ;;
		pb) name="pg-boss $boss_version, batches of 100" target=2.0 m=$(median "${pb[@]}") ;;
		lp) name="plpgsql SKIP LOCKED loop" target= m=$(median "${lp[@]}") ;;
		esac
		for w in 1 2; do
			key="2$b$w"
			[ "$w" = 1 ] && ours=$m1 || ours=$m2
			ratio=$(calc "$ours / $m")
			if [ -n "$target" ]; then
				result "$key" "3 sql steps end to end, $w worker$([ "$w" = 1 ] || echo s), jobs/s (vs $name)" "$(int "$ours")" "$(int "$m")" \
					"$(dec "$ratio")" "≥ $target" "$(yes_if "$ratio >= $target")"
			else
				result "$key" "3 sql steps end to end, $w worker$([ "$w" = 1 ] || echo s), jobs/s (vs $name)" "$(int "$ours")" "$(int "$m")" \
					"$(dec "$ratio")" "—" "—"
			fi
		done
	done
}

# 4. commit of a submit -> its first step starts, vs INSERT + NOTIFY -> LISTEN
fig_wake() {
	log "4. commit -> first step start, $n_wake events (workers = 1)"
	ensure_workers 1
	local half=$((n_wake / rounds)) r i
	: >"$dir/wake_ours"; : >"$dir/wake_base"
	for r in $(seq 1 "$rounds"); do
		reset_engine
		wait_workers 1
		{
			for i in $(seq 1 "$half"); do
				echo "SELECT outcome FROM orch_submit_event('ping', 'bench', '$org', '$usr', jsonb_build_object('i', $i, 't0', clock_timestamp()));"
				echo "SELECT wait_idle();"
			done
		} | bench_psql >/dev/null
		psql -c "SELECT extract(epoch FROM min(h.started_at) - (j.trigger_payload->>'t0')::timestamptz) * 1000
			FROM orchestrator.sequence_jobs j JOIN orchestrator.step_history h ON h.job_id = j.id
			GROUP BY j.id, j.trigger_payload" >>"$dir/wake_ours"
		psql -c "TRUNCATE notify_events" >/dev/null
		node_run listen_latency.js "$half" >>"$dir/wake_base"
	done
	local o50 o99 b50 b99
	o50=$(percentile 0.5 "$dir/wake_ours") o99=$(percentile 0.99 "$dir/wake_ours")
	b50=$(percentile 0.5 "$dir/wake_base") b99=$(percentile 0.99 "$dir/wake_base")
	result 4 "commit of a submit → its first step starts, 1 idle worker, p50 / p99 ms, $((half * rounds)) events (vs INSERT + NOTIFY → a LISTENing client)" \
		"$(dec "$o50") / $(dec "$o99")" "$(dec "$b50") / $(dec "$b99")" \
		"$(dec "$(calc "$o50 / $b50")" 1) / $(dec "$(calc "$o99 / $b99")" 1)" "p99 ≤ 2 ms" "$(yes_if "$o99 <= 2")"
}

# 3. 1 http step per job vs wrk against the same nginx endpoint and body
fig_http() {
	log "3. http steps, $n_http jobs vs wrk -t2 -c200 -d${t_wrk}s (workers = 2)"
	ensure_workers 2
	bench_wrk_script "$dir/post.lua"
	local r o=() w=() m b ratio
	for r in $(seq 1 "$rounds"); do
		reset_engine
		o+=("$(ours_e2e "$n_http" hit)")
		w+=("$(wrk -t2 -c200 -d"${t_wrk}s" -s "$dir/post.lua" "$url" | awk '/Requests\/sec/ {print $2}')")
		log "   round $r: ours ${o[-1]}, wrk ${w[-1]}"
	done
	m=$(median "${o[@]}") b=$(median "${w[@]}")
	ratio=$(calc "$m / $b")
	result 3a "1 http step per job to a local nginx, 2 workers, steps/s (vs wrk -t2 -c200, same endpoint and body)" \
		"$(int "$m")" "$(int "$b")" "$(dec "$ratio")" "≥ 0.5" "$(yes_if "$ratio >= 0.5")"
	ratio=$(calc "$m / 400")
	result 3b "1 http step per job, steps/s (vs pg_net's published 400 requests/s)" \
		"$(int "$m")" "400" "$(dec "$ratio" 1)" "≥ 10 (4 000/s)" "$(yes_if "$m >= 4000")"
}

# rss_kb PID: "private shared" resident kB (VmRSS less RssShmem, and RssShmem)
rss_kb() { awk '/^VmRSS:/ {r = $2} /^RssShmem:/ {s = $2} END {print r - s, s}' "/proc/$1/status"; }

# 8. worker RSS: after the first 10% of the largest run's jobs, and at its end
fig_rss() {
	log "8. worker memory over $n_rss jobs (workers = 2)"
	ensure_workers 2
	reset_engine
	local pids p i warm=() end=() growth=0 g before=0 after=0 shm0=0 shm1=0 a b s t
	pids=$(worker_pids)
	# submitted in batches of 5 000 while the workers run them; the sample
	# after the first 10% are done
	for i in $(seq 0 5000 $((n_rss - 1))); do
		psql -c "SELECT count(*) FROM orch_submit_events('three', 'bench', '$org',
			(SELECT array_agg('$usr'::uuid) FROM generate_series($((i + 1)), $((i + 5000 < n_rss ? i + 5000 : n_rss)))),
			(SELECT array_agg(jsonb_build_object('i', i, 'r', random()) ORDER BY i)
			 FROM generate_series($((i + 1)), $((i + 5000 < n_rss ? i + 5000 : n_rss))) i))" >/dev/null
		if [ ${#warm[@]} = 0 ] && [ "$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'completed'")" -ge $((n_rss / 10)) ]; then
			for p in $pids; do warm+=("$(rss_kb "$p")"); done
		fi
	done
	for i in $(seq 1 6000); do  # until 10% of the jobs are done, if not yet (bounded: 5 min)
		[ ${#warm[@]} = 0 ] || break
		if [ "$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'completed'")" -ge $((n_rss / 10)) ]; then
			for p in $pids; do warm+=("$(rss_kb "$p")"); done
		fi
		sleep 0.05
	done
	for i in $(seq 1 12000); do  # until all are done (bounded: 20 min)
		[ "$(psql -c "SELECT $engine_idle")" = t ] && break
		sleep 0.1
	done
	i=0
	for p in $pids; do
		end+=("$(rss_kb "$p")")
		read -r a s <<<"${warm[$i]}"; read -r b t <<<"${end[$i]}"
		g=$(calc "($b - $a) * 100 / $a")
		growth=$(awk -v g="$g" -v m="$growth" 'BEGIN {print (g > m ? g : m)}')
		before=$((before + a)) after=$((after + b)) shm0=$((shm0 + s)) shm1=$((shm1 + t))
		i=$((i + 1))
	done
	local done_jobs; done_jobs=$(psql -c "SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'completed'")
	[ "$done_jobs" = "$n_rss" ] || notes+=("worker memory run: $done_jobs of $n_rss jobs completed")
	result 8 "worker RSS growth after warm-up, 2 workers, from 10% of $n_rss 3-step jobs to their end (VmRSS less shared memory)" \
		"+$(dec "$growth" 1)% ($(dec "$(calc "$before / 1024")" 1) → $(dec "$(calc "$after / 1024")" 1) MB)" "—" "—" "< 5%" "$(yes_if "$growth < 5")"
	notes+=("worker memory: shared memory the workers touched (RssShmem, in VmRSS but not a leak) went from $(dec "$(calc "$shm0 / 1024")" 1) to $(dec "$(calc "$shm1 / 1024")" 1) MB")
}

# 9. idle CPU of the workers vs the checkpointer
fig_idle() {
	log "9. idle CPU over ${t_idle}s (workers = 2)"
	ensure_workers 2
	# one job first, so the workers have done real work
	psql -c "SELECT outcome FROM orch_submit_event('ping', 'bench', '$org', '$usr', jsonb_build_object('r', random()))" -c "SELECT wait_idle()" >/dev/null
	psql -c "CHECKPOINT" >/dev/null
	wait_workers 2
	local pids ckpt p w0=0 w1=0 c0 c1 v0=0 v1=0 k0 k1
	# wakeups PID: the times the process was woken (voluntary context switches)
	wakeups() { awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/status"; }
	pids=$(worker_pids)
	ckpt=$(psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
	# the interval starts once the workers have settled: 3 s without a
	# wake-up (a look again a second after the last job, when the other
	# worker held it, is the end of the work, not idling; bounded: 30 s)
	local quiet=0 before now
	before=$(for p in $pids; do wakeups "$p"; done | awk '{s += $1} END {print s}')
	for i in $(seq 1 300); do
		sleep 0.1
		now=$(for p in $pids; do wakeups "$p"; done | awk '{s += $1} END {print s}')
		if [ "$now" = "$before" ]; then quiet=$((quiet + 1)); else quiet=0 before=$now; fi
		[ "$quiet" -ge 30 ] && break
	done
	for p in $pids; do w0=$((w0 + $(ticks "$p"))) v0=$((v0 + $(wakeups "$p"))); done
	c0=$(ticks "$ckpt") k0=$(wakeups "$ckpt")
	sleep "$t_idle"  # the measured interval
	for p in $pids; do w1=$((w1 + $(ticks "$p"))) v1=$((v1 + $(wakeups "$p"))); done
	c1=$(ticks "$ckpt") k1=$(wakeups "$ckpt")
	local w=$((w1 - w0)) c=$((c1 - c0))
	result 9 "idle CPU of 2 workers in ${t_idle} s, clock ticks of 1/$(getconf CLK_TCK) s, and wake-ups (vs the checkpointer)" \
		"$w ($((v1 - v0)) wake-ups)" "$c ($((k1 - k0)) wake-ups)" \
		"$([ "$c" = 0 ] && echo — || dec "$(calc "$w / $c")")" "0, or ≤ checkpointer" "$(yes_if "$w == 0 || $w <= $c")"
}

# 5. submit and 3 sql steps on a fresh cluster whose tables were VACUUM
# ANALYZEd empty (and are again before each run); autovacuum stays off
# so nothing analyzes them with data in until the figure is done
fig_after_vacuum() {
	log "5. after VACUUM ANALYZE of the empty tables: fresh cluster"
	new_cluster "autovacuum = off"
	psql -c "VACUUM ANALYZE" >/dev/null
	submit_rounds vacuum
	local o=$sub_ours b=$sub_base ratio
	ratio=$(calc "$o / $b")
	result 5a "after VACUUM ANALYZE of the empty tables: submit, pgbench -c2, tx/s (vs 1-row INSERT)" "$(int "$o")" "$(int "$b")" \
		"$(dec "$ratio")" "≥ 0.7" "$(yes_if "$ratio >= 0.7")"
	ensure_workers 2
	local r o2=() gb=()
	for r in $(seq 1 "$rounds"); do
		reset_engine; psql -c "VACUUM ANALYZE" >/dev/null
		o2+=("$(ours_e2e "$n_three" three)")
		psql -c "TRUNCATE app_state, app_history" >/dev/null; psql -c "VACUUM ANALYZE" >/dev/null
		gb+=("$(node_run graphile.js batched "$n_three" || echo failed)")
		log "   round $r: ours 2 workers ${o2[-1]}, graphile batched ${gb[-1]}"
	done
	o=$(median "${o2[@]}") b=$(median "${gb[@]}")
	ratio=$(calc "$o / $b")
	result 5b "after VACUUM ANALYZE of the empty tables: 3 sql steps, 2 workers, jobs/s (vs graphile-worker batched)" \
		"$(int "$o")" "$(int "$b")" "$(dec "$ratio")" "≥ 1.0" "$(yes_if "$ratio >= 1.0")"
	psql -c "ALTER SYSTEM SET autovacuum = on" -c "SELECT pg_reload_conf()" >/dev/null
}

# load_finished N: the engine's tables emptied, then N completed 3-step
# jobs (each with its three step_history rows and its event_log row),
# copied from a real one in tmpl_* (every column but the ids and times),
# then VACUUM ANALYZE and a checkpoint
load_finished() {
	reset_engine
	psql -c "CALL load_finished($1)" -c "VACUUM ANALYZE orchestrator.sequence_jobs, orchestrator.step_history, orchestrator.event_log" \
		-c "CHECKPOINT" >/dev/null
}
define_loader() {
	# one real finished job to copy
	reset_engine
	ensure_workers 1
	psql -c "SELECT outcome FROM orch_submit_event('three', 'bench', '$org', '$usr', '{\"r\": 0}')" -c "SELECT wait_idle()" >/dev/null
	psql >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS tmpl_jobs, tmpl_history, tmpl_events;
CREATE TABLE tmpl_jobs AS SELECT * FROM orchestrator.sequence_jobs WHERE status = 'completed';
CREATE TABLE tmpl_history AS SELECT * FROM orchestrator.step_history;
CREATE TABLE tmpl_events AS SELECT * FROM orchestrator.event_log;
-- a select list for TBL: every column from alias t, but those OVERRIDES names
CREATE FUNCTION load_cols(tbl regclass, overrides jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(coalesce(overrides->>attname, 't.' || quote_ident(attname)), ', ' ORDER BY attnum)
	FROM pg_attribute WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped $$;
CREATE PROCEDURE load_finished(n int) LANGUAGE plpgsql AS $$
DECLARE
	history_ids text := format('nextval(%L)', pg_get_serial_sequence('orchestrator.step_history', 'id'));
	event_ids text := format('nextval(%L)', pg_get_serial_sequence('orchestrator.event_log', 'id'));
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS load_ids (g int, id uuid, at timestamptz);
	TRUNCATE load_ids;
	INSERT INTO load_ids SELECT g, gen_random_uuid(), now() - interval '1 day' - g * interval '10 ms' FROM generate_series(1, n) g;
	EXECUTE format('INSERT INTO orchestrator.sequence_jobs SELECT %s FROM tmpl_jobs t, load_ids l',
		load_cols('orchestrator.sequence_jobs', jsonb_build_object('id', 'l.id',
			'trigger_payload', 'jsonb_build_object(''r'', l.g)',
			'context', 'jsonb_set(t.context, ''{event,payload}'', jsonb_build_object(''r'', l.g))',
			'created_at', 'l.at', 'run_at', 'l.at', 'updated_at', 'l.at', 'started_at', 'l.at', 'finished_at', 'l.at')));
	EXECUTE format('INSERT INTO orchestrator.step_history SELECT %s FROM tmpl_history t, load_ids l',
		load_cols('orchestrator.step_history', jsonb_build_object('id', history_ids,
			'job_id', 'l.id', 'started_at', 'l.at', 'finished_at', 'l.at')));
	EXECUTE format('INSERT INTO orchestrator.event_log SELECT %s FROM tmpl_events t, load_ids l',
		load_cols('orchestrator.event_log', jsonb_build_object('id', event_ids,
			'job_id', 'l.id', 'created_at', 'l.at', 'run_at', 'l.at', 'dedupe_hash', 'gen_random_uuid()')));
END $$;
SQL
	[ "$(psql -c "SELECT count(*) FROM tmpl_jobs")" = 1 ] || orch_die "no finished job to copy for the scale figure"
}

# 6. submit and claim cost with n_big finished jobs vs n_small
fig_scale() {
	log "6. scale: $n_big vs $n_small finished jobs"
	define_loader
	local r size sub_s=() sub_b=() cl_s=() cl_b=() cpu_s=() cpu_b=() s c t0 cpu
	for r in 1 2; do
		for size in "$n_small" "$n_big"; do
			log "   round $r: loading $size finished jobs"
			load_finished "$size"
			ensure_workers 1
			t0=$(worker_ticks)
			c=$(E2E_N=$n_claim E2E_SUBMIT="SELECT count(*) FROM generate_series(1, $n_claim) i, orch_submit_event('three', 'bench', '$org', '$usr',
				jsonb_build_object('i', i, 'r', random())) e WHERE e.outcome = 'accepted'" E2E_DONE=$engine_idle \
				E2E_CHECK="(SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'completed') = $size + $n_claim" \
				node_run e2e.js || echo failed)
			cpu=$(calc "($(worker_ticks) - $t0) * 1000000 / $(getconf CLK_TCK) / $n_claim")
			ensure_workers 0
			s=$(pgbench_tps "$dir/submit.sql")
			log "   round $r, $size finished: claim $c jobs/s ($(int "$cpu") us of worker CPU a job), submit $s tx/s"
			if [ "$size" = "$n_small" ]; then cl_s+=("$c") sub_s+=("$s") cpu_s+=("$cpu"); else cl_b+=("$c") sub_b+=("$s") cpu_b+=("$cpu"); fi
		done
	done
	local big small ob bb ratio
	big=$(thousands "$n_big") small=$(thousands "$n_small")
	ob=$(median "${sub_b[@]}") bb=$(median "${sub_s[@]}")
	ratio=$(calc "$bb / $ob")
	result 6a "submit with $big finished jobs in the tables$([ "$quick" = 1 ] && echo " (--quick size)"), pgbench -c2 tx/s (vs with $small; ratio = cost ratio)" \
		"$(int "$ob")" "$(int "$bb")" "$(dec "$ratio")" "≤ 1.1" "$(yes_if "$ratio <= 1.1")"
	ob=$(median "${cl_b[@]}") bb=$(median "${cl_s[@]}")
	ratio=$(calc "$bb / $ob")
	result 6b "claim and run $n_claim 3-step jobs with $big finished jobs in the tables$([ "$quick" = 1 ] && echo " (--quick size)"), 1 worker, jobs/s (vs with $small; ratio = cost ratio)" \
		"$(int "$ob")" "$(int "$bb")" "$(dec "$ratio")" "≤ 1.1" "$(yes_if "$ratio <= 1.1")"
	notes+=("claim with $big finished jobs: the worker used $(int "$(median "${cpu_b[@]}")") us of CPU a job, with $small $(int "$(median "${cpu_s[@]}")") (median; clock ticks of 1/$(getconf CLK_TCK) s, steadier than the rate on a busy machine)")
}

# print_table: the header line, the table and the notes, to standard
# output and to --out FILE
print_table() {
	local k n mins
	mins=$(awk -v s=$((SECONDS - started)) 'BEGIN {printf "%.1f", s / 60}')
	{
		echo "### bench/run.sh$([ "$quick" = 1 ] && echo " --quick")"
		echo
		echo "$(date -u +%Y-%m-%d), commit $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$src" diff --quiet HEAD -- src sql 2>/dev/null || echo ' (with uncommitted changes)')$([ "$build" = 1 ] || echo ' (--no-build: the extension installed before the run)'),"\
			"$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), PostgreSQL $(postgres --version | awk '{print $3}'),"\
			"graphile-worker ${gw_version:-?}, pg-boss ${boss_version:-?}, node $(node --version); $rounds rounds, medians; took $mins min."
		echo
		echo "| figure | ours | baseline | ratio | target | met |"
		echo "|---|---|---|---|---|---|"
		for k in 1 2gb1 2gb2 2gd1 2gd2 2pb1 2pb2 2lp1 2lp2 3a 3b 4 5a 5b 6a 6b 7 8 9; do
			want "${k:0:1}" || continue
			echo "${table[$k]:-| figure $k: not measured | n/a | n/a | n/a | | no |}"
		done
		if [ ${#notes[@]} -gt 0 ]; then
			echo
			for n in "${notes[@]}"; do echo "- $n"; done
		fi
	} >"$dir/table.md"
	cat "$dir/table.md"
	[ -z "$out" ] || cp "$dir/table.md" "$out"
}

# finish STATUS: on the way out; if a figure failed, the table so far
finish() {
	if [ "$1" != 0 ] && [ -n "$current" ]; then
		notes+=("the run stopped in $current (exit status $1; the messages above say why): the figures not measured say n/a")
		print_table
	fi
	bench_cleanup
}

# ---------------------------------------------------------------- run

bench_prepare nginx-light wrk
current=
trap 'finish $?' EXIT
node_packages
gw_version=$(node -p "require('$node_dir/node_modules/graphile-worker/package.json').version")
boss_version=$(node -p "require('$node_dir/node_modules/pg-boss/package.json').version")
bench_start_nginx "${NGINX_PORT:-18090}"
log "cluster 1 (fresh)"
new_cluster
submit_scripts

for fig in 1:fig_submit 7:fig_batch_submit 2:fig_three 4:fig_wake 3:fig_http 8:fig_rss 9:fig_idle \
	5:fig_after_vacuum 6:fig_scale; do
	want "${fig%%:*}" || continue
	current="figure ${fig%%:*}"
	"${fig#*:}"
done
current=
print_table
