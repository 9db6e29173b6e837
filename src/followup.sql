/*-------------------------------------------------------------------------
 *
 * followup.sql
 *	  Events a step queues (followup.c): follow-ups, and the failure notice of
 *	  a halted sequence.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/followup.sql
 *
 *-------------------------------------------------------------------------
 */

/*
 * map_payload builds an event's payload from a template: string values
 * starting "$" are read from the state, "@" from the item; the rest are
 * kept.  For follow-ups and fan-out children (wait.sql).
 */
CREATE FUNCTION orchestrator.map_payload(p_template jsonb, p_state jsonb, p_item jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
	v_payload jsonb := '{}';
	v_kv record;
	v_val jsonb;
BEGIN
	FOR v_kv IN SELECT key, value FROM jsonb_each(COALESCE(p_template, '{}')) LOOP
		v_val := v_kv.value;
		IF jsonb_typeof(v_val) = 'string' AND (v_val #>> '{}') ~ '^\$' THEN
			v_val := jsonb_path_query_first(p_state, (v_val #>> '{}')::jsonpath, '{}', true);
		ELSIF jsonb_typeof(v_val) = 'string' AND (v_val #>> '{}') ~ '^@' THEN
			v_val := jsonb_path_query_first(p_item, ('$' || substr(v_val #>> '{}', 2))::jsonpath, '{}', true);
		END IF;
		v_payload := v_payload || jsonb_build_object(v_kv.key, COALESCE(v_val, 'null'::jsonb));
	END LOOP;
	RETURN v_payload;
END
$$;
COMMENT ON FUNCTION orchestrator.map_payload(jsonb, jsonb, jsonb) IS 'An event payload from a template: "$..." values read from the state, "@..." from the item (follow-ups, fan-out children)';

/*
 * queue_followups turns a finished step's "followups" into events: for each
 * item its jsonpath for_each selects in the state (once when absent), one
 * event of the follow-up's type for the job's org and user, with a payload
 * whose string values starting "$" are read from the state and "@" from the
 * item.  Each goes through orch_submit_event with the job as parent, in the
 * step's transaction: chain depth (at most 3), dedupe and quiet hours apply,
 * and a refused one is logged and creates nothing.  Returns what happened.
 */
CREATE FUNCTION orchestrator.queue_followups(p_job_id uuid, p_step jsonb, p_state jsonb, p_output jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_fu jsonb;
	v_item jsonb;
	v_payload jsonb;
	r record;
	v_out jsonb := '[]';
BEGIN
	-- selectors see the state with this step's output in it
	p_state := jsonb_set(p_state, '{outputs}', (p_state->'outputs') || jsonb_build_object(p_step->>'name', p_output));
	FOR v_fu IN SELECT value FROM jsonb_array_elements(COALESCE(p_step->'followups', '[]')) LOOP
		FOR v_item IN
			SELECT i FROM jsonb_path_query(p_state, (v_fu->>'for_each')::jsonpath, '{}', true) AS i WHERE v_fu ? 'for_each'
			UNION ALL SELECT 'null'::jsonb WHERE NOT v_fu ? 'for_each'
		LOOP
			v_payload := orchestrator.map_payload(v_fu->'payload', p_state, v_item);
			SELECT * INTO r FROM @extschema@.orch_submit_event(v_fu->>'type', 'orchestrator:chain',
				(p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid, v_payload, p_job_id);
			v_out := v_out || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
				'type', v_fu->>'type', 'source', 'orchestrator:chain', 'payload', v_payload,
				'parent_job_id', p_job_id, 'outcome', r.outcome, 'job_id', r.job_id, 'reason', r.reason)));
		END LOOP;
	END LOOP;
	RETURN v_out;
END
$$;
COMMENT ON FUNCTION orchestrator.queue_followups(uuid, jsonb, jsonb, jsonb) IS 'Queues a step''s follow-up events (chain depth at most 3); for the worker only';

/*
 * failure_notice: the seed's on_failure stop, "halt the entire sequence and
 * notify the user via Slack with error context".  Queued in the failing
 * job's transaction as the internal event orchestrator:failure_notice, sent
 * by the built-in sequence below.  Not for the engine's own events, and not
 * for a budget halt (that has its own notice).
 */
CREATE FUNCTION orchestrator.failure_notice(p_job_id uuid, p_state jsonb, p_step_name text, p_error text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	PERFORM @extschema@.orch_submit_event('orchestrator:failure_notice', 'orchestrator:failure',
		(p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid,
		jsonb_build_object('failed_job_id', p_job_id, 'event_type', p_state->'event'->>'type',
		                   'step', p_step_name, 'error', left(orchestrator.redact(p_error), 500)));
END
$$;
COMMENT ON FUNCTION orchestrator.failure_notice(uuid, jsonb, text, text) IS 'Queues the Slack notice for a sequence halted by a failing step; for the worker only';

CREATE FUNCTION orchestrator.failure_message(p_state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object(
		'text', format('Workflow %s stopped at step %s: %s',
		               p_state->'event'->'payload'->>'event_type', p_state->'event'->'payload'->>'step',
		               p_state->'event'->'payload'->>'error'),
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('*Workflow %s stopped* at step `%s`', p_state->'event'->'payload'->>'event_type',
				       p_state->'event'->'payload'->>'step'))),
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('>%s', p_state->'event'->'payload'->>'error'))),
			jsonb_build_object('type', 'context', 'elements', jsonb_build_array(jsonb_build_object('type', 'mrkdwn',
				'text', format('job %s', p_state->'event'->'payload'->>'failed_job_id'))))))
$$;
COMMENT ON FUNCTION orchestrator.failure_message(jsonb) IS 'The Slack message of an orchestrator:failure_notice event';

INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
VALUES ('orchestrator:failure_notice', 1,
	'[{"name": "notify-failure", "kind": "notify", "endpoint": "slack", "function": "orchestrator.failure_message",
	   "scope": "service", "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 60000}}]',
	CURRENT_USER::regrole);
