--
-- stats: orchestrator.stats, the metrics view, and that it reads only
-- indexes and a bounded slice of the history
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
\set quincy '00000000-0000-0000-0000-0000000000a2'

CREATE FUNCTION public.st_noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
SELECT orch_define_sequence('st_run', '[{"name": "one", "kind": "sql", "function": "st_noop"},
                                        {"name": "two", "kind": "sql", "function": "st_noop"}]');
SELECT orch_define_sequence('st_gate', '[{"name": "gate", "kind": "sql", "function": "st_noop", "requires_approval": true}]');

-- three jobs run; one waits for a rep; one is deferred by quiet hours
SELECT count(*) AS accepted FROM generate_series(1, 3) n,
	LATERAL orch_submit_event('st_run', 'test:stats', :'org_a', :'ada', jsonb_build_object('n', n)) s
WHERE s.outcome = 'accepted';
SELECT job_id AS gated FROM orch_submit_event('st_gate', 'test:stats', :'org_a', :'ada', '{}') \gset
DELETE FROM orchestrator.slack_user_preferences WHERE user_id = :'quincy';
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, quiet_hours_start, quiet_hours_end)
VALUES (:'quincy', :'org_a', 'UTC', ((now() AT TIME ZONE 'UTC') - interval '1 hour')::time,
        ((now() AT TIME ZONE 'UTC') + interval '1 hour')::time);
SELECT outcome FROM orch_submit_event('st_run', 'test:stats', :'org_a', :'quincy', '{"n": 4}');
SELECT test_wait_for($$SELECT count(*) = 3 FROM orchestrator.sequence_jobs WHERE event_type = 'st_run' AND status = 'completed'$$);
SELECT test_wait_job(:'gated', '{awaiting_approval}');

-- jobs by status and type: the waiting and the deferred ones, not the finished
SELECT labels->>'status' AS status, value FROM orchestrator.stats
WHERE metric = 'jobs' AND labels->>'event_type' IN ('st_run', 'st_gate') ORDER BY 1;
-- a deferred job is not due: it does not age the queue
SELECT value = 0 AS nothing_due_waits FROM orchestrator.stats WHERE metric = 'oldest_due_pending_seconds';
-- step durations per step: three quantiles each, in order
SELECT labels->>'step' AS step, labels->>'kind' AS kind,
       array_agg(labels->>'quantile' ORDER BY (labels->>'quantile')::float8) AS quantiles,
       bool_and(value >= 0) AS non_negative,
       min(value) FILTER (WHERE labels->>'quantile' = '0.5') <= min(value) FILTER (WHERE labels->>'quantile' = '0.95')
         AND min(value) FILTER (WHERE labels->>'quantile' = '0.95') <= min(value) FILTER (WHERE labels->>'quantile' = '0.99')
         AS ordered
FROM orchestrator.stats WHERE metric = 'step_duration_ms' AND labels->>'event_type' = 'st_run'
GROUP BY 1, 2 ORDER BY 1;
SELECT value > 0 AS steps_ran FROM orchestrator.stats WHERE metric = 'steps_per_second';
-- earlier tests met 429s, quiet hours and the notification rate
SELECT count(*) > 0 AS has_deferrals, bool_and(value >= 1) AS counted
FROM orchestrator.stats WHERE metric = 'deferrals';
SELECT value >= 1 AS failed_counted FROM orchestrator.stats WHERE metric = 'jobs_failed';
-- one row per worker, none with requests in flight now
SELECT count(*) AS workers, sum(value) AS in_flight FROM orchestrator.stats WHERE metric = 'http_in_flight';

-- cheap to scrape: with sequential scans off, no part of it needs one of
-- the engine's tables (each is read through an index or the bounded sample)
CREATE FUNCTION public.st_seq_scans(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	plan jsonb;
BEGIN
	SET LOCAL enable_seqscan = off;
	EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan;
	RETURN (SELECT string_agg(DISTINCT p->>'Relation Name', ', ')
	        FROM jsonb_path_query(plan, 'strict $.**') p
	        WHERE jsonb_typeof(p) = 'object' AND p->>'Node Type' = 'Seq Scan'
	          AND p->>'Relation Name' IN ('sequence_jobs', 'step_history', 'event_log'));
END $$;
SELECT st_seq_scans('SELECT * FROM orchestrator.stats') AS seq_scans;
-- (the check sees one: job_counts counts every job)
SELECT st_seq_scans('SELECT * FROM orchestrator.job_counts') AS job_counts_seq_scans;

SELECT has_table_privilege('orchestrator_admin', 'orchestrator.stats', 'SELECT') AS admin_reads,
       has_table_privilege('public', 'orchestrator.stats', 'SELECT') AS public_reads;
