/*-------------------------------------------------------------------------
 *
 * retention.sql
 *	  Retention (retention.c): finished jobs, their history and events, and
 *	  the other logs, removed in bounded batches once older than
 *	  orchestrator.retention, by the first worker or by orch_purge (pg_cron).
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/retention.sql
 *
 *-------------------------------------------------------------------------
 */

-- How far each log has been purged, in id order.
CREATE TABLE orchestrator.retention_cursors (
	log text PRIMARY KEY CHECK (log IN ('event_log', 'notification_log', 'signals')),
	through bigint NOT NULL DEFAULT 0,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO orchestrator.retention_cursors (log) VALUES ('event_log'), ('notification_log'), ('signals');
COMMENT ON TABLE orchestrator.retention_cursors IS 'How far each log has been purged: every row up to "through" (by id) that retention removes is gone';
COMMENT ON COLUMN orchestrator.retention_cursors.log IS 'event_log, notification_log or signals';
COMMENT ON COLUMN orchestrator.retention_cursors.through IS 'Highest id looked at and left behind only if it must stay';
COMMENT ON COLUMN orchestrator.retention_cursors.updated_at IS 'Last advance';

CREATE INDEX slack_pending_actions_job ON orchestrator.slack_pending_actions (job_id);

CREATE FUNCTION orchestrator.purge_jobs(p_cutoff timestamptz, p_batch integer) RETURNS integer
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'orch_purge_jobs_sql';
COMMENT ON FUNCTION orchestrator.purge_jobs(timestamptz, integer) IS 'Removes up to p_batch jobs finished before p_cutoff, with their history, events, fan-out records and approvals (job_state.c)';

/*
 * purge_log removes one chunk of a log, in id order from where the last
 * chunk ended: the rows of the next p_batch ids that are older than the
 * cutoff (and, in event_log, belong to no job that still exists: a job's
 * events go with it).
 * The cursor moves past the chunk only when all of it is older than the
 * cutoff, so each call reads one chunk and never the whole table.
 */
CREATE FUNCTION orchestrator.purge_log(p_log text, p_cutoff timestamptz, p_batch integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
	v_from bigint;
	v_last bigint;
	v_last_at timestamptz;
	n integer;
BEGIN
	SELECT c.through INTO v_from FROM orchestrator.retention_cursors c WHERE c.log = p_log FOR UPDATE;
	IF p_log = 'event_log' THEN
		SELECT max(x.id), max(x.created_at) INTO v_last, v_last_at
		FROM (SELECT e.id, e.created_at FROM orchestrator.event_log e WHERE e.id > v_from ORDER BY e.id LIMIT p_batch) x;
		DELETE FROM orchestrator.event_log e
		WHERE e.id > v_from AND e.id <= v_last AND e.created_at < p_cutoff
		  AND (e.job_id IS NULL OR NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j WHERE j.id = e.job_id));
	ELSIF p_log = 'notification_log' THEN
		SELECT max(x.id), max(x.sent_at) INTO v_last, v_last_at
		FROM (SELECT l.id, l.sent_at FROM orchestrator.notification_log l WHERE l.id > v_from ORDER BY l.id LIMIT p_batch) x;
		DELETE FROM orchestrator.notification_log l WHERE l.id > v_from AND l.id <= v_last AND l.sent_at < p_cutoff;
	ELSE
		SELECT max(x.id), max(x.sent_at) INTO v_last, v_last_at
		FROM (SELECT s.id, s.sent_at FROM orchestrator.signals s WHERE s.id > v_from ORDER BY s.id LIMIT p_batch) x;
		-- a signal sent to a job goes with the job; one sent to a key, once
		-- delivered or older than the retention
		DELETE FROM orchestrator.signals s WHERE s.id > v_from AND s.id <= v_last AND s.sent_at < p_cutoff
		  AND (s.key IS NOT NULL OR s.delivered_at IS NOT NULL
		       OR NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j WHERE j.id = s.job_id));
	END IF;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF v_last_at < p_cutoff THEN
		UPDATE orchestrator.retention_cursors c SET through = v_last, updated_at = now() WHERE c.log = p_log;
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION orchestrator.purge_log(text, timestamptz, integer) IS 'Removes one chunk of event_log, notification_log or signals older than the cutoff, in id order';

/*
 * purge: one batch of each kind, as one process at a time (others return
 * at once).  The workers call it (retention.c); orch_purge loops it.
 */
CREATE FUNCTION orchestrator.purge(p_retention interval, p_batch integer,
	OUT jobs integer, OUT events integer, OUT notifications integer, OUT signals integer)
LANGUAGE plpgsql
AS $$
DECLARE
	v_cutoff timestamptz := clock_timestamp() - p_retention;
BEGIN
	jobs := 0; events := 0; notifications := 0; signals := 0;
	IF p_retention IS NULL OR p_retention <= interval '0' THEN
		RETURN;
	END IF;
	IF NOT pg_try_advisory_xact_lock(pg_catalog.hashtextextended('orchestrator.purge', 0)) THEN
		RETURN;
	END IF;
	jobs := orchestrator.purge_jobs(v_cutoff, p_batch);
	events := orchestrator.purge_log('event_log', v_cutoff, p_batch);
	notifications := orchestrator.purge_log('notification_log', v_cutoff, p_batch);
	signals := orchestrator.purge_log('signals', v_cutoff, p_batch);
END
$$;
COMMENT ON FUNCTION orchestrator.purge(interval, integer) IS 'One bounded batch of retention: finished jobs and the logs older than p_retention (for the workers and orch_purge)';

CREATE FUNCTION orch_purge(retention interval DEFAULT NULL, max_batches integer DEFAULT 10) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_retention interval := COALESCE(retention, NULLIF(current_setting('orchestrator.retention')::interval, interval '0'));
	v_batch integer := current_setting('orchestrator.retention_batch')::integer;
	r record;
	v_total bigint := 0;
BEGIN
	IF v_retention IS NULL OR v_retention <= interval '0' THEN
		RAISE EXCEPTION 'no retention is set'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Set orchestrator.retention, or give orch_purge how long to keep finished jobs.';
	END IF;
	IF max_batches IS NULL OR max_batches < 1 THEN
		RAISE EXCEPTION 'max_batches must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR i IN 1 .. max_batches LOOP
		SELECT * INTO r FROM orchestrator.purge(v_retention, v_batch);
		v_total := v_total + r.jobs + r.events + r.notifications + r.signals;
		EXIT WHEN r.jobs < v_batch AND r.events = 0 AND r.notifications = 0 AND r.signals = 0;
	END LOOP;
	RETURN v_total;
END
$$;
COMMENT ON FUNCTION orch_purge(interval, integer) IS 'Removes finished jobs, their history and events, and old notifications and signals older than the retention, in up to max_batches bounded batches (for pg_cron when workers do not purge); returns rows removed';
