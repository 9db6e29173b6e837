/*-------------------------------------------------------------------------
 *
 * operate.sql
 *	  The operator's API (operate.c): cancel, retry, a job's timeline, the
 *	  views over jobs, steps and events, and the engine's claim and run as SQL
 *	  for tests and tools.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/operate.sql
 *
 *-------------------------------------------------------------------------
 */

CREATE FUNCTION orchestrator.claim_jobs(max integer, OUT job_id uuid, OUT fencing_token bigint)
RETURNS SETOF record
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'orch_claim_jobs_sql';
COMMENT ON FUNCTION orchestrator.claim_jobs(integer) IS 'Claims up to max runnable jobs for the calling session exactly as a worker does (for tests and tools)';

CREATE FUNCTION orchestrator.reclaim_expired() RETURNS integer
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_reclaim_expired_sql';
COMMENT ON FUNCTION orchestrator.reclaim_expired() IS 'Returns jobs whose lease lapsed to pending exactly as a worker does (for tests and tools)';

CREATE FUNCTION orchestrator.write_held_job(job_id uuid) RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'orch_write_held_job_sql';
COMMENT ON FUNCTION orchestrator.write_held_job(uuid) IS 'Writes now what the calling session''s running batch holds for a job (its step results), so SQL about to read or move the job sees it as it is';

CREATE FUNCTION orchestrator.run_claimed_job(job_id uuid, fencing_token bigint) RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'orch_run_claimed_job_sql';
COMMENT ON FUNCTION orchestrator.run_claimed_job(uuid, bigint) IS 'Runs a job claimed with orchestrator.claim_jobs in the calling session, under its fencing token (for tests and tools)';

CREATE FUNCTION orchestrator.run_claimed_jobs(job_ids uuid[], fencing_tokens bigint[]) RETURNS integer
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'orch_run_claimed_jobs_sql';
COMMENT ON FUNCTION orchestrator.run_claimed_jobs(uuid[], bigint[]) IS 'Runs a batch of jobs claimed with orchestrator.claim_jobs in the calling session exactly as a worker runs its batch, their transitions written together at the end; returns how many it ran (for tests, tools and bench/instructions.sh)';

-- Operator API

CREATE FUNCTION orch_cancel_job(job_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_job orchestrator.sequence_jobs;
BEGIN
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'job_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- a step of this transaction's batch may hold the job's newest writes
	PERFORM orchestrator.write_held_job(orch_cancel_job.job_id);
	SELECT * INTO v_job FROM orchestrator.sequence_jobs j WHERE j.id = orch_cancel_job.job_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = 'undefined_object';
	END IF;
	IF v_job.status IN ('completed', 'failed', 'cancelled') THEN
		RAISE EXCEPTION 'job % is already %', job_id, v_job.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Only pending, in_progress and awaiting_approval jobs can be cancelled; use orch_retry_job to run a finished job again.';
	END IF;
	-- an approval the job was waiting for is withdrawn: a late click changes nothing
	PERFORM orchestrator.withdraw_approvals(v_job.id);
	-- and a signal or sleep it was waiting in is over
	DELETE FROM orchestrator.waits w WHERE w.job_id = v_job.id;
	IF NOT orchestrator.transition_job(v_job.id, v_job.status, 'cancelled', 'operator', 'cancelled',
		v_job.current_step, p_context => v_job.context || '{"pending_approvals": []}'::jsonb,
		p_new_token => true, p_note => format('cancelled by %s (was %s)', session_user, v_job.status)) THEN
		RAISE EXCEPTION 'job % changed while being cancelled', v_job.id
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	RETURN true;
END
$$;
COMMENT ON FUNCTION orch_cancel_job(uuid) IS 'Cancels a pending, running or paused job; a worker still holding its lease has its writes discarded';

/*
 * step_index: the 0-based index of the step named p_step in p_steps, the
 * steps of sequence p_type version p_version; 42704 when it has none.
 */
CREATE FUNCTION orchestrator.step_index(p_type text, p_version integer, p_steps jsonb, p_step text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
	v_idx integer;
BEGIN
	SELECT s.ord - 1 INTO v_idx FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS s(step, ord)
	WHERE s.step->>'name' = p_step;
	IF v_idx IS NULL THEN
		RAISE EXCEPTION 'sequence "%" version % has no step "%"', p_type, p_version, p_step
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN v_idx;
END
$$;
COMMENT ON FUNCTION orchestrator.step_index(text, integer, jsonb, text) IS 'The index of a named step in a sequence version''s steps; 42704 when there is none (orch_retry_job, orch_fork_job)';

CREATE FUNCTION orch_retry_job(job_id uuid, from_step text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_job orchestrator.sequence_jobs;
	v_steps jsonb;
	v_idx integer;
BEGIN
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'job_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- a step of this transaction's batch may hold the job's newest writes
	PERFORM orchestrator.write_held_job(orch_retry_job.job_id);
	SELECT * INTO v_job FROM orchestrator.sequence_jobs j WHERE j.id = orch_retry_job.job_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = 'undefined_object';
	END IF;
	IF v_job.status = 'completed' AND from_step IS NULL THEN
		RAISE EXCEPTION 'job % is completed', job_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Name the step to run again from with from_step.';
	END IF;
	IF v_job.status = 'in_progress' AND v_job.lease_expires_at > clock_timestamp() THEN
		RAISE EXCEPTION 'job % is running under a live lease', job_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Retry a job that is failed, cancelled, completed, pending or whose lease has expired.';
	END IF;
	SELECT d.steps INTO v_steps FROM orchestrator.sequence_definitions d
	WHERE d.event_type = v_job.event_type AND d.version = v_job.sequence_version;
	IF from_step IS NULL THEN
		v_idx := LEAST(v_job.current_step, jsonb_array_length(v_steps) - 1);
	ELSE
		v_idx := orchestrator.step_index(v_job.event_type, v_job.sequence_version, v_steps, from_step);
	END IF;
	-- a job run again asks again: earlier decisions and open requests lapse,
	-- and its signal and sleep steps wait afresh
	PERFORM orchestrator.withdraw_approvals(v_job.id);
	DELETE FROM orchestrator.waits w WHERE w.job_id = v_job.id;
	IF NOT orchestrator.transition_job(v_job.id, v_job.status, 'pending', 'operator', 'retry_requested',
		v_idx, v_steps->v_idx->>'name',
		p_context => (v_job.context - 'approvals')
		             || jsonb_build_object('current_step', v_idx, 'pending_approvals', '[]'::jsonb),
		p_current_step => v_idx, p_attempts => 0, p_reclaims => 0, p_new_token => true, p_clear_error => true,
		p_note => format('retry requested by %s (was %s)', session_user, v_job.status)) THEN
		RAISE EXCEPTION 'job % changed while being retried', v_job.id
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	RETURN true;
END
$$;
COMMENT ON FUNCTION orch_retry_job(uuid, text) IS 'Puts a failed, cancelled, stuck or completed job back to pending, from the named step (default: where it stopped)';

CREATE FUNCTION orch_job_timeline(job_id uuid)
RETURNS TABLE (at timestamptz, entry text, step text, attempt integer, detail jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT t.at, t.entry, t.step, t.attempt, t.detail FROM (
		SELECT e.created_at AS at, 0 AS ord, e.id AS seq, 'event ' || e.outcome AS entry, NULL::text AS step,
		       NULL::integer AS attempt,
		       jsonb_strip_nulls(jsonb_build_object('type', e.event_type, 'source', e.event_source,
		                                            'reason', e.reason, 'run_at', e.run_at)) AS detail
		FROM orchestrator.event_log e
		WHERE e.job_id = orch_job_timeline.job_id AND e.outcome IN ('accepted', 'deferred')
		UNION ALL
		SELECT h.started_at, 1, h.id, 'step ' || h.outcome, h.step_name, h.attempt,
		       jsonb_strip_nulls(jsonb_build_object('kind', h.kind, 'output', h.output, 'error', h.error,
		           'duration_ms', round((extract(epoch FROM h.finished_at - h.started_at) * 1000)::numeric, 3)))
		FROM orchestrator.step_history h
		WHERE h.job_id = orch_job_timeline.job_id AND h.kind NOT IN ('operator', 'engine', 'approval')
		UNION ALL
		SELECT e.created_at, 1, e.id, 'follow-up ' || e.outcome, e.event_type, NULL,
		       jsonb_strip_nulls(jsonb_build_object('job_id', e.job_id, 'reason', e.reason))
		FROM orchestrator.event_log e
		WHERE e.parent_job_id = orch_job_timeline.job_id
		UNION ALL
		SELECT h.started_at, 1, h.id, 'approval ' || h.outcome, h.step_name, NULL, h.output
		FROM orchestrator.step_history h
		WHERE h.job_id = orch_job_timeline.job_id AND h.kind = 'approval'
		UNION ALL
		SELECT h.started_at, 1, h.id, h.kind || ' ' || h.outcome, h.step_name, NULL,
		       jsonb_strip_nulls(jsonb_build_object('note', h.error))
		FROM orchestrator.step_history h
		WHERE h.job_id = orch_job_timeline.job_id AND h.kind IN ('operator', 'engine')
		UNION ALL
		SELECT j.finished_at, 2, 0, 'job ' || j.status, NULL, NULL,
		       jsonb_build_object('execution_metadata', j.context->'execution_metadata')
		FROM orchestrator.sequence_jobs j
		WHERE j.id = orch_job_timeline.job_id AND j.status IN ('completed', 'failed', 'cancelled')
	) t
	ORDER BY t.ord = 2, t.at, t.ord, t.seq
$$;
COMMENT ON FUNCTION orch_job_timeline(uuid) IS 'One job''s life in order: the submit, each step attempt and context load, approval decisions, the follow-ups it queued, operator actions, the end with its audit metadata';

-- Views for operators

CREATE VIEW orchestrator.jobs AS
	SELECT j.id, j.org_id, j.user_id, j.event_type, j.event_source, j.status,
	       j.sequence_version, j.current_step,
	       jsonb_array_length(d.steps) AS step_count,
	       d.steps->j.current_step->>'name' AS current_step_name,
	       j.attempts, j.run_at, j.lease_owner, j.lease_expires_at, j.parent_job_id, j.chain_depth,
	       j.last_error, j.created_at, j.started_at, j.finished_at,
	       COALESCE(j.finished_at, pg_catalog.now()) - j.created_at AS age,
	       j.context->'execution_metadata' AS execution_metadata
	FROM orchestrator.sequence_jobs j
	LEFT JOIN orchestrator.sequence_definitions d
	       ON d.event_type = j.event_type AND d.version = j.sequence_version;
COMMENT ON VIEW orchestrator.jobs IS 'Jobs with their current step, lease and audit metadata';

CREATE VIEW orchestrator.steps AS
	SELECT h.id, h.job_id, h.org_id, j.event_type, h.step_index, h.step_name, h.kind, h.attempt,
	       h.outcome, h.error, h.output, h.started_at, h.finished_at,
	       round((extract(epoch FROM h.finished_at - h.started_at) * 1000)::numeric, 3) AS duration_ms,
	       h.worker_pid
	FROM orchestrator.step_history h
	LEFT JOIN orchestrator.sequence_jobs j ON j.id = h.job_id;
COMMENT ON VIEW orchestrator.steps IS 'Step attempts and operator actions, with durations';

CREATE VIEW orchestrator.service_scope_audit AS
	SELECT h.id, h.started_at, h.job_id, h.org_id, j.user_id, j.event_type, j.event_source,
	       h.step_name, h.outcome, h.attempt, d.created_by AS run_as
	FROM orchestrator.step_history h
	JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
	LEFT JOIN orchestrator.sequence_definitions d ON d.event_type = j.event_type AND d.version = j.sequence_version
	WHERE h.scope = 'service';
COMMENT ON VIEW orchestrator.service_scope_audit IS 'Every attempt of a service-scope step (org-wide work run without the user''s claims): the seed''s "documented and audited"';

CREATE VIEW orchestrator.events AS
	SELECT e.id, e.created_at, e.org_id, e.user_id, e.event_type, e.event_source, e.outcome,
	       e.reason, e.job_id, e.run_at, e.parent_job_id
	FROM orchestrator.event_log e;
COMMENT ON VIEW orchestrator.events IS 'Every submitted event and what became of it';

/*
 * stuck_jobs lists the jobs that will not move by themselves: leased to a
 * process that is gone (a worker's first pass reclaims those), leased to a
 * live process with the lease lapsed over a minute ago (a step running that
 * long holds its row, which the reclaim skips; or the worker hangs), or
 * waiting for an approval nobody can see (no open request, or its delivery
 * to Slack failed, was cancelled or was never queued).  The process list
 * is read once, and each kind of job found with one scan, so the view
 * costs a few scans of sequence_jobs whatever it finds: for a dashboard,
 * not for scraping every second.
 */
CREATE VIEW orchestrator.stuck_jobs AS
	WITH live AS MATERIALIZED (
		SELECT a.pid FROM pg_catalog.pg_stat_get_activity(NULL) a),
	delivered AS MATERIALIZED (
		SELECT d.trigger_payload->>'pending_action_id' AS pending_action_id
		FROM orchestrator.sequence_jobs d
		WHERE d.event_type = 'orchestrator:approval_request' AND d.status IN ('pending', 'in_progress', 'completed')),
	stuck AS (
		SELECT j.id, 'worker_gone'::text AS reason, j.updated_at AS since,
		       'leased to process ' || COALESCE(j.lease_owner::text, '?') || ', which no longer exists' AS detail
		FROM orchestrator.sequence_jobs j
		WHERE j.status = 'in_progress' AND NOT EXISTS (SELECT 1 FROM live WHERE live.pid = j.lease_owner)
		UNION ALL
		SELECT j.id, 'lease_expired', j.lease_expires_at,
		       'the lease of worker ' || j.lease_owner || ' lapsed over a minute ago: the worker is still running a long step of it, or hangs'
		FROM orchestrator.sequence_jobs j
		WHERE j.status = 'in_progress' AND j.lease_expires_at < pg_catalog.now() - interval '1 minute'
		  AND EXISTS (SELECT 1 FROM live WHERE live.pid = j.lease_owner)
		UNION ALL
		SELECT j.id, 'approval_unseen', j.updated_at,
		       CASE WHEN pa.id IS NULL THEN 'no open approval request'
		            ELSE 'the approval request ' || pa.id || ' never reached Slack' END
		FROM orchestrator.sequence_jobs j
		LEFT JOIN orchestrator.slack_pending_actions pa ON pa.job_id = j.id AND pa.status = 'pending'
		WHERE j.status = 'awaiting_approval'
		  AND (pa.id IS NULL
		       OR NOT EXISTS (SELECT 1 FROM delivered WHERE delivered.pending_action_id = pa.id::text)))
	SELECT j.id AS job_id, j.org_id, j.user_id, j.event_type, j.status, s.reason, s.since, s.detail
	FROM stuck s JOIN orchestrator.sequence_jobs j ON j.id = s.id;
COMMENT ON VIEW orchestrator.stuck_jobs IS 'Jobs that will not move by themselves: leased to a process that is gone, leased with the lease lapsed over a minute ago, or waiting for an approval nobody can see; with the reason, since when, and a detail';

CREATE FUNCTION orchestrator.worker_status(OUT worker integer, OUT pid integer, OUT http_in_flight integer)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_workers_sql';
COMMENT ON FUNCTION orchestrator.worker_status() IS 'The running orchestrator workers, from shared memory: number, process id, HTTP requests in flight';

CREATE VIEW orchestrator.workers AS
	SELECT w.worker, w.pid, w.http_in_flight, a.backend_start AS started_at, a.wait_event, a.query AS activity
	FROM orchestrator.worker_status() w
	LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid;
COMMENT ON VIEW orchestrator.workers IS 'The running orchestrator workers: number, process id, HTTP requests in flight, when each started and what it is doing';

CREATE VIEW orchestrator.job_counts AS
	SELECT j.event_type, j.status, count(*) AS jobs,
	       min(j.created_at) AS oldest, max(j.updated_at) AS last_change
	FROM orchestrator.sequence_jobs j
	GROUP BY j.event_type, j.status;
COMMENT ON VIEW orchestrator.job_counts IS 'Job counts per event type and status';
