#!/usr/bin/env bash
# bench/wake_latency.sh [N]: commit-to-step-start latency with an idle worker.
#
# Submits N events one at a time (each in its own autocommit transaction,
# the payload carrying clock_timestamp() taken just before the commit), waits
# for each job to finish, then reports percentiles of
# step_history.started_at - t0: the commit, the latch wake-up, the claim
# transaction and the job load.  As a baseline measured in the same run on the
# same server it reports the same percentiles for a bare round trip
# (clock_timestamp() in two consecutive autocommit statements), so the ratio
# says what the engine adds on top of one client round trip.
set -euo pipefail
n=${1:-200}
. "$(dirname "$0")/lib.sh"
bench_prepare
bench_start_cluster "${PORT:-5491}" "orchestrator.workers = 1"
bench_define_ping

bench_psql <<'SQL'
CREATE TABLE rt (i int, t0 timestamptz, t1 timestamptz);
CREATE FUNCTION wait_done(i int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
	LOOP  -- poll until the job is finished or the deadline passes
		EXIT WHEN EXISTS (SELECT 1 FROM orchestrator.sequence_jobs
		                  WHERE trigger_payload->>'i' = i::text AND status = 'completed');
		IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'job % not done', i; END IF;
		PERFORM pg_sleep(0.005);
	END LOOP;
END $$;
SQL
# wait (bounded) until the worker sleeps on its latch
for _ in $(seq 1 100); do
	[ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND wait_event_type = 'Extension'")" = 1 ] && break
	sleep 0.1
done
{
	for i in $(seq 1 "$n"); do
		echo "SELECT outcome FROM orch_submit_event('ping', 'bench', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', jsonb_build_object('i', $i, 't0', clock_timestamp()));"
		echo "SELECT wait_done($i);"
		echo "INSERT INTO rt (i, t0) VALUES ($i, clock_timestamp());"
		echo "UPDATE rt SET t1 = clock_timestamp() WHERE i = $i;"
	done
} | bench_psql >/dev/null

bench_psql -P pager=off <<'SQL'
WITH engine AS (
	SELECT extract(epoch FROM h.started_at - (j.trigger_payload->>'t0')::timestamptz) * 1000 AS ms
	FROM orchestrator.sequence_jobs j JOIN orchestrator.step_history h ON h.job_id = j.id),
base AS (SELECT extract(epoch FROM t1 - t0) * 1000 AS ms FROM rt),
p AS (
	SELECT 'commit -> step start' AS what, count(*) AS n,
	       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
	       percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
	       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max FROM engine
	UNION ALL
	SELECT 'baseline: autocommit round trip', count(*),
	       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms),
	       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms) FROM base)
SELECT what, n, round(p50::numeric, 3) AS p50_ms, round(p95::numeric, 3) AS p95_ms,
       round(p99::numeric, 3) AS p99_ms, round(max::numeric, 3) AS max_ms,
       round((p50 / (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM base))::numeric, 2) AS p50_ratio
FROM p;
SQL
