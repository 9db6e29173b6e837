/*-------------------------------------------------------------------------
 *
 * replay.sql
 *	  Dead letters and replay: the failed jobs with their last error, the
 *	  same grouped by event type, step and kind of error, orch_retry_jobs,
 *	  which runs a filtered set of them again, and orch_fork_job, which
 *	  starts a new job from a step of an old one with an edited state.
 *
 * A job that fails (its step's retries used up, a stop policy, a budget
 * halt, too many reclaims) keeps its row, its state and its history; it is
 * a dead letter until an operator runs it again or it is removed.  Every
 * retry goes through orch_retry_job, so it follows the same rules (fencing
 * token bumped, approvals asked again, the attempt counters reset).
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/replay.sql
 *
 *-------------------------------------------------------------------------
 */

-- failed jobs are few among many finished ones: the dead-letter views and
-- orch_retry_jobs read them by this index, never the whole table
CREATE INDEX sequence_jobs_failed ON orchestrator.sequence_jobs (finished_at) WHERE status = 'failed';

CREATE FUNCTION orchestrator.error_class(p_error text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT pg_catalog.regexp_replace(
	         pg_catalog.regexp_replace(pg_catalog.left(p_error, 500),
	           '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<id>', 'g'),
	         '[0-9]+', 'N', 'g')
$$;
COMMENT ON FUNCTION orchestrator.error_class(text) IS 'An error message with its particulars (ids, numbers) replaced, so that errors of one kind group together';

CREATE VIEW orchestrator.dead_letters AS
	SELECT j.id AS job_id, j.org_id, j.user_id, j.event_type, j.sequence_version,
	       j.current_step AS step_index, d.steps->j.current_step->>'name' AS step,
	       j.last_error, orchestrator.error_class(j.last_error) AS error_class,
	       j.reclaims, j.created_at, j.finished_at AS failed_at
	FROM orchestrator.sequence_jobs j
	LEFT JOIN orchestrator.sequence_definitions d
	       ON d.event_type = j.event_type AND d.version = j.sequence_version
	WHERE j.status = 'failed';
COMMENT ON VIEW orchestrator.dead_letters IS 'Failed jobs, each with the step it failed at, its last error (redacted) and that error''s class; orch_retry_jobs runs them again';

CREATE VIEW orchestrator.dead_letter_groups AS
	SELECT l.event_type, l.step, l.error_class, count(*) AS jobs,
	       min(l.failed_at) AS first_failed, max(l.failed_at) AS last_failed,
	       (pg_catalog.array_agg(l.job_id ORDER BY l.failed_at DESC))[1:5] AS latest_jobs
	FROM orchestrator.dead_letters l
	GROUP BY l.event_type, l.step, l.error_class;
COMMENT ON VIEW orchestrator.dead_letter_groups IS 'Failed jobs grouped by event type, step and kind of error, with the first and last failure and the five latest jobs of each group';

/*
 * orch_retry_jobs(filter): runs again the failed jobs that match every key
 * of filter, oldest failure first, at most "limit" of them (default 1000),
 * each from the step it failed at, through orch_retry_job.  Returns how
 * many were put back.  Jobs another session has locked are left for a
 * later call.
 */
CREATE FUNCTION orch_retry_jobs(filter jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c_keys CONSTANT text[] := ARRAY['event_type', 'org_id', 'user_id', 'step', 'error', 'error_class',
	                                'failed_after', 'failed_before', 'limit'];
	v_key text;
	v_limit integer;
	v_after timestamptz;
	v_before timestamptz;
	v_org uuid;
	v_user uuid;
	v_id uuid;
	v_n integer := 0;
BEGIN
	IF filter IS NULL OR jsonb_typeof(filter) <> 'object' THEN
		RAISE EXCEPTION 'filter must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = format('Keys: %s; {} matches every failed job.', array_to_string(c_keys, ', '));
	END IF;
	FOR v_key IN SELECT jsonb_object_keys(filter) LOOP
		IF NOT v_key = ANY (c_keys) THEN
			RAISE EXCEPTION 'unknown filter key "%"', v_key
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = format('Keys: %s.', array_to_string(c_keys, ', '));
		END IF;
		IF v_key <> 'limit' AND jsonb_typeof(filter->v_key) <> 'string' THEN
			RAISE EXCEPTION 'filter key "%" must be a string', v_key USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	BEGIN
		v_limit := COALESCE((filter->>'limit')::integer, 1000);
		v_after := (filter->>'failed_after')::timestamptz;
		v_before := (filter->>'failed_before')::timestamptz;
		v_org := (filter->>'org_id')::uuid;
		v_user := (filter->>'user_id')::uuid;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'invalid filter: %', SQLERRM
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'limit is a number, failed_after and failed_before timestamps, org_id and user_id uuids.';
	END;
	IF v_limit NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'filter limit must be between 1 and 100000, not %', v_limit
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	FOR v_id IN
		SELECT j.id
		FROM orchestrator.sequence_jobs j
		LEFT JOIN orchestrator.sequence_definitions d
		       ON d.event_type = j.event_type AND d.version = j.sequence_version
		WHERE j.status = 'failed'
		  AND (filter->>'event_type' IS NULL OR j.event_type = filter->>'event_type')
		  AND (v_org IS NULL OR j.org_id = v_org)
		  AND (v_user IS NULL OR j.user_id = v_user)
		  AND (filter->>'step' IS NULL OR d.steps->j.current_step->>'name' = filter->>'step')
		  AND (filter->>'error' IS NULL OR strpos(lower(j.last_error), lower(filter->>'error')) > 0)
		  AND (filter->>'error_class' IS NULL OR orchestrator.error_class(j.last_error) = filter->>'error_class')
		  AND (v_after IS NULL OR j.finished_at >= v_after)
		  AND (v_before IS NULL OR j.finished_at < v_before)
		ORDER BY j.finished_at, j.id
		LIMIT v_limit
		FOR UPDATE OF j SKIP LOCKED
	LOOP
		PERFORM @extschema@.orch_retry_job(v_id);
		v_n := v_n + 1;
	END LOOP;
	RETURN v_n;
END
$$;
COMMENT ON FUNCTION orch_retry_jobs(jsonb) IS 'Runs again the failed jobs matching a filter (event_type, org_id, user_id, step, error substring, error_class, failed_after, failed_before, limit), each from the step it failed at; returns how many';

CREATE FUNCTION orchestrator.check_json_depth(p_value jsonb, p_what text) RETURNS void
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_check_json_depth_sql';
COMMENT ON FUNCTION orchestrator.check_json_depth(jsonb, text) IS 'Raises 54J01 when a value nests deeper than orchestrator.max_json_depth; p_what names it in the message';

/*
 * orch_fork_job(job_id, from_step, state_patch): a new job, linked to the
 * old one, that starts at from_step with the old job's state edited by
 * state_patch.  The old job is left as it is, whatever its status.
 *   outputs   merged into the state's outputs, step by step (a step's
 *             output replaced, the others kept)
 *   event     {"payload": ...} only: the event's payload replaced
 *   any other key set at the state's top level (context, your own keys),
 *             but not the keys the engine keeps
 * Transcripts are stripped from the patch as from every payload, and its
 * nesting is bounded by orchestrator.max_json_depth.
 */
CREATE FUNCTION orch_fork_job(job_id uuid, from_step text, state_patch jsonb DEFAULT '{}') RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c_engine CONSTANT text[] := ARRAY['execution_metadata', 'current_step', 'steps_completed', 'pending_approvals',
	                                  'approvals', 'queued_followups', 'cost_accumulated', 'started_at'];
	v_job orchestrator.sequence_jobs;
	v_patch jsonb;
	v_steps jsonb;
	v_idx integer;
	v_state jsonb;
	v_key text;
BEGIN
	IF job_id IS NULL OR from_step IS NULL THEN
		RAISE EXCEPTION 'job_id and from_step must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF state_patch IS NULL OR jsonb_typeof(state_patch) <> 'object' THEN
		RAISE EXCEPTION 'state_patch must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Give {} to fork with the state as it is.';
	END IF;
	FOR v_key IN SELECT jsonb_object_keys(state_patch) LOOP
		IF v_key = ANY (c_engine) THEN
			RAISE EXCEPTION 'state_patch may not set "%": the engine keeps it', v_key
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Patch outputs, the event''s payload, context or keys of your own.';
		END IF;
	END LOOP;
	IF state_patch ? 'outputs' AND jsonb_typeof(state_patch->'outputs') <> 'object' THEN
		RAISE EXCEPTION 'state_patch outputs must be an object of step outputs' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF state_patch ? 'event' AND (jsonb_typeof(state_patch->'event') <> 'object'
	                              OR (SELECT array_agg(k) FROM jsonb_object_keys(state_patch->'event') k) <> ARRAY['payload']) THEN
		RAISE EXCEPTION 'state_patch event may hold only "payload"' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The event''s type, source, org and user are the job''s; fork edits its payload only.';
	END IF;
	PERFORM orchestrator.check_json_depth(state_patch, 'state_patch');
	v_patch := orchestrator.without_transcripts(state_patch);

	-- a step of this transaction's batch may hold the job's newest writes
	PERFORM orchestrator.write_held_job(orch_fork_job.job_id);
	SELECT * INTO v_job FROM orchestrator.sequence_jobs j WHERE j.id = orch_fork_job.job_id FOR SHARE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = 'undefined_object';
	END IF;
	SELECT d.steps INTO v_steps FROM orchestrator.sequence_definitions d
	WHERE d.event_type = v_job.event_type AND d.version = v_job.sequence_version;
	v_idx := orchestrator.step_index(v_job.event_type, v_job.sequence_version, v_steps, from_step);

	-- the new job asks every approval again, from the step it starts at
	v_state := (v_job.context - 'approvals')
	           || jsonb_build_object('current_step', v_idx, 'pending_approvals', '[]'::jsonb);
	IF v_patch ? 'outputs' THEN
		v_state := jsonb_set(v_state, '{outputs}', COALESCE(v_state->'outputs', '{}') || (v_patch->'outputs'));
	END IF;
	IF v_patch ? 'event' THEN
		v_state := jsonb_set(v_state, '{event,payload}', v_patch->'event'->'payload');
	END IF;
	v_state := v_state || (v_patch - 'outputs' - 'event');
	RETURN orchestrator.fork_job(v_job.id, v_idx, from_step, v_state,
	                             format('at step "%s" by %s', from_step, session_user));
END
$$;
COMMENT ON FUNCTION orch_fork_job(uuid, text, jsonb) IS 'Starts a new job, linked to the old one, at a step of it with its state edited (outputs, the event''s payload, context); returns the new job''s id';
