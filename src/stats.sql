/*-------------------------------------------------------------------------
 *
 * stats.sql
 *	  Metrics for scraping: orchestrator.stats, one row per metric and set
 *	  of labels, cheap enough to read every few seconds at any table size.
 *
 * Every part reads an index or a bounded slice, never a whole table:
 *   jobs by status and type    the active statuses only, through their
 *                              partial indexes (finished jobs are counted
 *                              by orchestrator.job_counts, a full scan)
 *   oldest due pending job     the first entry of the runnable index
 *   failed jobs                the failed index (replay.sql)
 *   steps: rate, duration      the last orchestrator.stats_sample (10,000)
 *   percentiles, deferrals     history rows, by a backward scan of the
 *                              primary key
 *   HTTP requests in flight    the workers' shared memory
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/stats.sql
 *
 *-------------------------------------------------------------------------
 */

-- jobs waiting for a rep are few among many: counted through this index
CREATE INDEX sequence_jobs_awaiting ON orchestrator.sequence_jobs (updated_at) WHERE status = 'awaiting_approval';

CREATE VIEW orchestrator.stats AS
	WITH recent AS MATERIALIZED (
		SELECT h.id, h.step_name, h.kind, h.outcome, h.error, h.started_at, h.finished_at, j.event_type
		FROM (SELECT * FROM orchestrator.step_history ORDER BY id DESC LIMIT 10000) h
		LEFT JOIN orchestrator.sequence_jobs j ON j.id = h.job_id),
	attempts AS (
		SELECT r.* FROM recent r
		WHERE r.kind NOT IN ('operator', 'engine', 'approval', 'context')
		  AND r.outcome IN ('succeeded', 'failed', 'retry_scheduled', 'skipped'))
	-- jobs by status and type, for the statuses that are not final
	SELECT 'jobs'::text AS metric, jsonb_build_object('status', j.status, 'event_type', j.event_type) AS labels,
	       count(*)::float8 AS value
	FROM orchestrator.sequence_jobs j
	WHERE j.status = 'pending'
	GROUP BY j.status, j.event_type
	UNION ALL
	SELECT 'jobs', jsonb_build_object('status', j.status, 'event_type', j.event_type), count(*)
	FROM orchestrator.sequence_jobs j
	WHERE j.status = 'in_progress'
	GROUP BY j.status, j.event_type
	UNION ALL
	SELECT 'jobs', jsonb_build_object('status', j.status, 'event_type', j.event_type), count(*)
	FROM orchestrator.sequence_jobs j
	WHERE j.status = 'awaiting_approval'
	GROUP BY j.status, j.event_type
	UNION ALL
	SELECT 'jobs_failed', '{}'::jsonb, count(*) FROM orchestrator.sequence_jobs j WHERE j.status = 'failed'
	UNION ALL
	-- how long the oldest job that is due has waited for a worker (0: none),
	-- read from the head of the claim order: with priorities in use, the
	-- oldest of the next 1,000 jobs to be claimed
	SELECT 'oldest_due_pending_seconds', '{}'::jsonb,
	       COALESCE(extract(epoch FROM pg_catalog.now() - min(d.run_at)), 0)::float8
	FROM (SELECT j.run_at FROM orchestrator.sequence_jobs j
	      WHERE j.status = 'pending' AND orchestrator.claim_order(j.run_at, j.priority) <= pg_catalog.now()
	        AND j.run_at <= pg_catalog.now()
	      ORDER BY orchestrator.claim_order(j.run_at, j.priority) LIMIT 1000) d
	UNION ALL
	-- step attempts per second over the last minute; when the sample covers
	-- less than a minute (over 10,000 history rows a minute), over the sample
	SELECT 'steps_per_second', '{}'::jsonb,
	       CASE WHEN s.n = 10000 AND s.oldest > pg_catalog.now() - interval '1 minute'
	            THEN s.attempts / GREATEST(extract(epoch FROM pg_catalog.now() - s.oldest), 0.001)
	            ELSE s.last_minute / 60.0 END
	FROM (SELECT (SELECT count(*) FROM recent) AS n, (SELECT min(r.finished_at) FROM recent r) AS oldest,
	             count(*) AS attempts,
	             count(*) FILTER (WHERE a.finished_at > pg_catalog.now() - interval '1 minute') AS last_minute
	      FROM attempts a) s
	UNION ALL
	-- step duration percentiles per event type, step and kind, over the sample
	SELECT 'step_duration_ms',
	       jsonb_build_object('event_type', a.event_type, 'step', a.step_name, 'kind', a.kind, 'quantile', q.quantile),
	       (pg_catalog.percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
	            ORDER BY extract(epoch FROM a.finished_at - a.started_at) * 1000))[q.i]
	FROM attempts a,
	     (VALUES (1, '0.5'), (2, '0.95'), (3, '0.99')) AS q(i, quantile)
	GROUP BY a.event_type, a.step_name, a.kind, q.i, q.quantile
	UNION ALL
	-- deferrals by reason (429, quiet hours, notification rate), over the sample
	SELECT 'deferrals', jsonb_build_object('reason', COALESCE(orchestrator.error_class(r.error), 'unknown')), count(*)
	FROM recent r WHERE r.outcome = 'deferred'
	GROUP BY orchestrator.error_class(r.error)
	UNION ALL
	-- HTTP requests in flight, per worker
	SELECT 'http_in_flight', jsonb_build_object('worker', w.worker, 'pid', w.pid), w.http_in_flight
	FROM orchestrator.worker_status() w;
COMMENT ON VIEW orchestrator.stats IS 'Metrics, one row per metric and labels (jobs by active status and type, failed jobs, oldest due pending age, steps per second, step duration p50/p95/p99 per step, deferrals by reason, HTTP requests in flight per worker); reads only indexes and the last 10,000 history rows';
