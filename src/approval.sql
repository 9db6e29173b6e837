/*-------------------------------------------------------------------------
 *
 * approval.sql
 *	  Approval gates (approval.c): HITL patterns, pending actions, the Slack
 *	  message, and the rep's decision applied once.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/approval.sql
 *
 *-------------------------------------------------------------------------
 */

-- Approval gates (HITL)
--
-- A step with requires_approval stops the job before it runs: a pending
-- action row holds what is needed to resume, a Slack message rendered from
-- a HITL pattern goes to the user (the internal event
-- orchestrator:approval_request), and the job waits in awaiting_approval.
-- orch_resolve_approval, or a slack_approval_received event, resumes it.

CREATE TABLE orchestrator.hitl_patterns (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
	pattern jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.hitl_patterns IS 'HITL message patterns: how an approval request is shown in Slack (written by orch_define_hitl_pattern)';
COMMENT ON COLUMN orchestrator.hitl_patterns.name IS 'Name a step''s approval.pattern refers to';
COMMENT ON COLUMN orchestrator.hitl_patterns.pattern IS '{"title": text with {{key}} placeholders filled from the draft, "fields": [{"label", "path" (jsonpath over the draft)}], "actions": subset of approve, edit, skip, cancel}';
COMMENT ON COLUMN orchestrator.hitl_patterns.updated_at IS 'Last change';

INSERT INTO orchestrator.hitl_patterns (name, pattern) VALUES
('email_draft', '{"title": "Approve email to {{to}}: {{subject}}",
  "fields": [{"label": "To", "path": "$.to"}, {"label": "Subject", "path": "$.subject"}, {"label": "Body", "path": "$.body"}],
  "actions": ["approve", "edit", "skip", "cancel"]}'),
('crm_update', '{"title": "Approve deal stage change: {{deal_name}} {{from_stage}} -> {{to_stage}}",
  "fields": [{"label": "Deal", "path": "$.deal_name"}, {"label": "From", "path": "$.from_stage"}, {"label": "To", "path": "$.to_stage"}, {"label": "Why", "path": "$.reason"}],
  "actions": ["approve", "edit", "skip", "cancel"]}'),
('task_creation', '{"title": "Create tasks from the meeting?",
  "fields": [{"label": "Tasks", "path": "$.tasks[*].title"}],
  "actions": ["approve", "edit", "skip", "cancel"]}'),
('generic', '{"title": "Approve step {{step}}?", "fields": [], "actions": ["approve", "skip", "cancel"]}');

CREATE TABLE orchestrator.slack_pending_actions (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	job_id uuid NOT NULL,
	step_index integer NOT NULL,
	step_name text NOT NULL,
	effect text,
	pattern text NOT NULL,
	draft_step text,
	draft jsonb,
	message jsonb NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'approved', 'edited', 'skipped', 'cancelled', 'superseded', 'expired')),
	modifications jsonb,
	resolved_by text,
	resolved_via text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	resolved_at timestamptz,
	expires_at timestamptz,
	on_timeout text CHECK (on_timeout IN ('skip', 'cancel', 'fail'))
);
CREATE INDEX slack_pending_actions_expiring ON orchestrator.slack_pending_actions (expires_at)
	WHERE status = 'pending' AND expires_at IS NOT NULL;
CREATE UNIQUE INDEX slack_pending_actions_open ON orchestrator.slack_pending_actions (job_id, step_index)
	WHERE status = 'pending';
CREATE INDEX slack_pending_actions_user ON orchestrator.slack_pending_actions (user_id, created_at)
	WHERE status = 'pending';
COMMENT ON TABLE orchestrator.slack_pending_actions IS 'Approval requests: one per approval gate a job reached, with everything needed to resume it';
COMMENT ON COLUMN orchestrator.slack_pending_actions.id IS 'pending_action_id, carried by the Slack buttons';
COMMENT ON COLUMN orchestrator.slack_pending_actions.org_id IS 'Organisation';
COMMENT ON COLUMN orchestrator.slack_pending_actions.user_id IS 'The user who must approve (or an administrator)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.job_id IS 'The paused job (sequence_job_id)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.step_index IS 'The gated step (resume_step), 0-based';
COMMENT ON COLUMN orchestrator.slack_pending_actions.step_name IS 'The gated step''s name';
COMMENT ON COLUMN orchestrator.slack_pending_actions.effect IS 'email_send, deal_stage_change or task_create when the engine recognised one (always gated)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.pattern IS 'HITL pattern the message was rendered from';
COMMENT ON COLUMN orchestrator.slack_pending_actions.draft_step IS 'Earlier step whose output is the draft; an edit is applied to that output';
COMMENT ON COLUMN orchestrator.slack_pending_actions.draft IS 'The draft as shown to the user';
COMMENT ON COLUMN orchestrator.slack_pending_actions.message IS 'The Slack message sent: text and Block Kit blocks with the action buttons';
COMMENT ON COLUMN orchestrator.slack_pending_actions.status IS 'pending, then approved | edited | skipped | cancelled, superseded when the job moved on without it, or expired (unanswered, on_timeout fail)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.modifications IS 'The user''s edits (action edit)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.resolved_by IS 'Who resolved it: the user id, or the administrator role';
COMMENT ON COLUMN orchestrator.slack_pending_actions.resolved_via IS 'orch_resolve_approval, slack_approval_received, or timeout';
COMMENT ON COLUMN orchestrator.slack_pending_actions.created_at IS 'When the job reached the gate';
COMMENT ON COLUMN orchestrator.slack_pending_actions.resolved_at IS 'When it was resolved';
COMMENT ON COLUMN orchestrator.slack_pending_actions.expires_at IS 'When it expires unanswered (the step''s approval.timeout, else orchestrator.approval_timeout); NULL: never';
COMMENT ON COLUMN orchestrator.slack_pending_actions.on_timeout IS 'What expiry does: skip the step, cancel the job, or fail the step (then on_failure decides)';

/*
 * guarded_effect recognises the steps the seed always gates, whatever the
 * definition says: an email send, a deal-stage change, a task creation.  A
 * step is recognised by its "effect" field, or by its name, function,
 * endpoint or the endpoint's URL matching (case-insensitively)
 * email-send / send-email, deal-stage, create-task(s) / task-creation,
 * with "-", "_", "." or nothing between the words.
 */
CREATE FUNCTION orchestrator.guarded_effect(p_step jsonb) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_names text;
BEGIN
	IF p_step->>'effect' IN ('email_send', 'deal_stage_change', 'task_create') THEN
		RETURN p_step->>'effect';
	END IF;
	v_names := concat_ws(' ', p_step->>'name', p_step->>'function', p_step->>'endpoint',
		(SELECT e.url FROM orchestrator.endpoints e WHERE e.name = p_step->>'endpoint'));
	IF v_names ~* '(email[-_.]?send|send[-_.]?(an[-_.]?)?e?mail)' THEN
		RETURN 'email_send';
	ELSIF v_names ~* 'deal[-_.]?stage' THEN
		RETURN 'deal_stage_change';
	ELSIF v_names ~* '(create[-_.]?tasks?|tasks?[-_.]?creat)' THEN
		RETURN 'task_create';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION orchestrator.guarded_effect(jsonb) IS 'email_send, deal_stage_change or task_create when a step is one the engine always gates behind approval, else NULL';

/*
 * render_approval builds the Slack message for a pending action from its
 * HITL pattern: a header from the title ({{key}} filled from the draft,
 * {{step}} the step's name), one field per pattern field (its jsonpath over
 * the draft), and one button per action, each carrying the
 * slack_approval_received payload as its value.
 */
CREATE FUNCTION orchestrator.render_approval(p_pattern jsonb, p_draft jsonb, p_id uuid, p_job_id uuid,
	p_step_index integer, p_step_name text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_title text := COALESCE(p_pattern->>'title', 'Approve step {{step}}?');
	v_key text;
	v_fields jsonb := '[]';
	v_field jsonb;
	v_val text;
	v_buttons jsonb := '[]';
	v_action text;
BEGIN
	v_title := replace(v_title, '{{step}}', p_step_name);
	FOR v_key IN SELECT (regexp_matches(v_title, '\{\{([A-Za-z0-9_]+)\}\}', 'g'))[1] LOOP
		v_title := replace(v_title, '{{' || v_key || '}}', COALESCE(p_draft->>v_key, '?'));
	END LOOP;
	FOR v_field IN SELECT value FROM jsonb_array_elements(COALESCE(p_pattern->'fields', '[]')) LOOP
		SELECT string_agg(CASE WHEN jsonb_typeof(x) = 'string' THEN x #>> '{}' ELSE x::text END, E'\n')
		INTO v_val
		FROM jsonb_path_query(COALESCE(p_draft, '{}'), (v_field->>'path')::jsonpath, '{}', true) AS x;
		v_fields := v_fields || jsonb_build_array(jsonb_build_object('type', 'mrkdwn',
			'text', format('*%s*%s%s', v_field->>'label', E'\n', COALESCE(v_val, '-'))));
	END LOOP;
	FOR v_action IN SELECT value #>> '{}' FROM jsonb_array_elements(COALESCE(p_pattern->'actions', '["approve", "skip", "cancel"]')) LOOP
		v_buttons := v_buttons || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
			'type', 'button',
			'action_id', 'orch_' || v_action,
			'text', jsonb_build_object('type', 'plain_text', 'text', initcap(v_action)),
			'style', CASE v_action WHEN 'approve' THEN 'primary' WHEN 'cancel' THEN 'danger' END,
			'value', jsonb_build_object('action', v_action, 'pending_action_id', p_id,
			                            'sequence_job_id', p_job_id, 'resume_step', p_step_index)::text)));
	END LOOP;
	RETURN jsonb_build_object(
		'text', v_title,
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'header', 'text', jsonb_build_object('type', 'plain_text', 'text', left(v_title, 150))))
			|| CASE WHEN jsonb_array_length(v_fields) > 0
			        THEN jsonb_build_array(jsonb_build_object('type', 'section', 'fields', v_fields)) ELSE '[]' END
			|| jsonb_build_array(jsonb_build_object('type', 'actions', 'block_id', 'orch_approval:' || p_id,
			                                         'elements', v_buttons)));
END
$$;
COMMENT ON FUNCTION orchestrator.render_approval(jsonb, jsonb, uuid, uuid, integer, text) IS 'Renders a HITL pattern into a Slack message (text and Block Kit blocks with action buttons)';

/*
 * open_approval is called by the worker when a job reaches a gated step:
 * it records the pending action, renders its message and queues the Slack
 * delivery (orchestrator:approval_request), in the job's transaction.
 * Returns what the step history and state record about the gate.
 */
CREATE FUNCTION orchestrator.open_approval(p_job_id uuid, p_step_index integer, p_step jsonb, p_state jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_id uuid := gen_random_uuid();
	v_effect text := orchestrator.guarded_effect(p_step);
	v_pattern_name text;
	v_pattern jsonb;
	v_draft_step text := p_step->'approval'->>'draft';
	v_draft jsonb;
	v_message jsonb;
	v_timeout interval;
BEGIN
	v_pattern_name := COALESCE(p_step->'approval'->>'pattern',
		CASE v_effect WHEN 'email_send' THEN 'email_draft' WHEN 'deal_stage_change' THEN 'crm_update'
		              WHEN 'task_create' THEN 'task_creation' ELSE 'generic' END);
	SELECT h.pattern INTO v_pattern FROM orchestrator.hitl_patterns h WHERE h.name = v_pattern_name;
	IF v_pattern IS NULL THEN
		RAISE EXCEPTION 'HITL pattern "%" of step "%" does not exist', v_pattern_name, p_step->>'name'
			USING ERRCODE = 'undefined_object', HINT = 'Define it with orch_define_hitl_pattern.';
	END IF;
	IF v_draft_step IS NOT NULL THEN
		v_draft := p_state->'outputs'->v_draft_step;
	END IF;
	v_message := orchestrator.render_approval(v_pattern, v_draft, v_id, p_job_id, p_step_index, p_step->>'name');
	-- unanswered, it expires: the step's timeout, else orchestrator.approval_timeout (0: never)
	v_timeout := COALESCE((p_step->'approval'->>'timeout')::interval,
	                      NULLIF(current_setting('orchestrator.approval_timeout')::interval, interval '0'));
	INSERT INTO orchestrator.slack_pending_actions
		(id, org_id, user_id, job_id, step_index, step_name, effect, pattern, draft_step, draft, message,
		 expires_at, on_timeout)
	VALUES (v_id, (p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid, p_job_id,
	        p_step_index, p_step->>'name', v_effect, v_pattern_name, v_draft_step, v_draft, v_message,
	        clock_timestamp() + v_timeout,
	        CASE WHEN v_timeout IS NOT NULL
	             THEN COALESCE(p_step->'approval'->>'on_timeout', current_setting('orchestrator.approval_timeout_action')) END);
	PERFORM @extschema@.orch_submit_event('orchestrator:approval_request', 'orchestrator:approval',
		(p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid,
		jsonb_build_object('pending_action_id', v_id, 'sequence_job_id', p_job_id));
	RETURN jsonb_strip_nulls(jsonb_build_object('pending_action_id', v_id, 'step', p_step->>'name',
		'resume_step', p_step_index, 'pattern', v_pattern_name, 'effect', v_effect));
END
$$;
COMMENT ON FUNCTION orchestrator.open_approval(uuid, integer, jsonb, jsonb) IS 'Opens an approval gate: pending action, rendered Slack message, delivery queued; for the worker only';

-- The approval request's Slack message, sent by the built-in sequence below.
CREATE FUNCTION orchestrator.approval_message(p_state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT COALESCE((SELECT a.message FROM orchestrator.slack_pending_actions a
	                 WHERE a.id = (p_state->'event'->'payload'->>'pending_action_id')::uuid
	                   AND a.user_id = (p_state->'event'->>'user_id')::uuid AND a.status = 'pending'),
	                '{"text": "An approval request was withdrawn."}'::jsonb)
$$;
COMMENT ON FUNCTION orchestrator.approval_message(jsonb) IS 'The rendered Slack message of the pending action an orchestrator:approval_request event names';

INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
VALUES ('orchestrator:approval_request', 1,
	'[{"name": "notify-approval", "kind": "notify", "endpoint": "slack", "function": "orchestrator.approval_message",
	   "scope": "service", "on_failure": "retry", "retry": {"attempts": 5, "backoff_ms": 30000}}]',
	CURRENT_USER::regrole);

/*
 * withdraw_approvals supersedes the approval a job waits for (it was
 * cancelled or is run again); the caller clears state.pending_approvals in
 * the job's transition.
 */
CREATE FUNCTION orchestrator.withdraw_approvals(p_job_id uuid) RETURNS void
LANGUAGE sql VOLATILE
AS $$
	UPDATE orchestrator.slack_pending_actions a SET status = 'superseded', resolved_at = pg_catalog.clock_timestamp()
	WHERE a.job_id = p_job_id AND a.status = 'pending';
$$;
COMMENT ON FUNCTION orchestrator.withdraw_approvals(uuid) IS 'Supersedes the approval a job waits for in slack_pending_actions (orch_cancel_job, orch_retry_job)';

/*
 * resolve_approval applies an approval decision.  The pending action's row
 * lock serialises concurrent decisions; the second finds it resolved and
 * changes nothing (outcome duplicate).  approve and edit put the job back to
 * pending at the gated step, with the decision recorded in state.approvals
 * (edit first merges the modifications into the draft step's output); skip
 * records the step as skipped and moves on; cancel cancels the job.
 */
CREATE FUNCTION orchestrator.resolve_approval(p_id uuid, p_action text, p_modifications jsonb,
	p_acting_user uuid, p_admin boolean, p_via text,
	OUT outcome text, OUT job_id uuid, OUT reason text)
RETURNS record
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_pa orchestrator.slack_pending_actions;
	v_job orchestrator.sequence_jobs;
	v_status text;
	v_by text;
	v_ctx jsonb;
	v_steps integer;
BEGIN
	IF p_id IS NULL OR p_action IS NULL THEN
		RAISE EXCEPTION 'pending_action_id and action must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF p_action NOT IN ('approve', 'edit', 'skip', 'cancel') AND NOT (p_action = 'expire' AND p_via = 'timeout') THEN
		RAISE EXCEPTION 'unrecognized approval action "%"', p_action
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use approve, edit, skip or cancel.';
	END IF;
	IF p_action = 'edit' AND jsonb_typeof(p_modifications) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'action edit needs the modifications as a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'For example ''{"subject": "New subject"}''; its keys replace those of the draft.';
	END IF;
	p_modifications := orchestrator.without_transcripts(p_modifications);
	-- lock the job, then the action: the order orch_cancel_job and
	-- orch_retry_job take them in, so racing them cannot deadlock
	PERFORM orchestrator.write_held_job((SELECT a.job_id FROM orchestrator.slack_pending_actions a WHERE a.id = p_id));
	SELECT * INTO v_job FROM orchestrator.sequence_jobs j
	WHERE j.id = (SELECT a.job_id FROM orchestrator.slack_pending_actions a WHERE a.id = p_id) FOR UPDATE;
	SELECT * INTO v_pa FROM orchestrator.slack_pending_actions a WHERE a.id = p_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pending action % does not exist', p_id USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT p_admin AND p_acting_user IS DISTINCT FROM v_pa.user_id THEN
		RAISE EXCEPTION 'pending action % belongs to another user', p_id
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Only the user it was sent to, or a member of orchestrator_admin, can resolve it.';
	END IF;
	job_id := v_pa.job_id;
	IF v_pa.status <> 'pending' THEN
		outcome := 'duplicate';
		reason := 'already ' || v_pa.status;
		RETURN;
	END IF;
	v_by := CASE WHEN p_acting_user IS NOT NULL THEN p_acting_user::text ELSE orchestrator.calling_role()::text END;

	IF v_job.id IS NULL OR v_job.status <> 'awaiting_approval' OR v_job.current_step <> v_pa.step_index THEN
		UPDATE orchestrator.slack_pending_actions a SET status = 'superseded', resolved_at = clock_timestamp(),
			resolved_by = v_by, resolved_via = p_via
		WHERE a.id = p_id;
		outcome := 'skipped';
		reason := 'job is ' || COALESCE(v_job.status, 'gone') || ', no longer waiting for this approval';
		RETURN;
	END IF;

	IF p_via IS DISTINCT FROM 'timeout'
	   AND NOT COALESCE((SELECT h.pattern->'actions' FROM orchestrator.hitl_patterns h WHERE h.name = v_pa.pattern),
	                    '["approve", "edit", "skip", "cancel"]') ? p_action THEN
		RAISE EXCEPTION 'action % is not offered by this approval request (pattern "%")', p_action, v_pa.pattern
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_action = 'edit' AND v_pa.draft_step IS NULL THEN
		RAISE EXCEPTION 'step "%" has no draft to edit', v_pa.step_name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Approve, skip or cancel it; a step offers edits when its "approval" names the draft step.';
	END IF;

	v_status := CASE p_action WHEN 'approve' THEN 'approved' WHEN 'edit' THEN 'edited'
	                          WHEN 'skip' THEN 'skipped' WHEN 'expire' THEN 'expired' ELSE 'cancelled' END;
	UPDATE orchestrator.slack_pending_actions a
	SET status = v_status, modifications = p_modifications, resolved_by = v_by, resolved_via = p_via,
	    resolved_at = clock_timestamp()
	WHERE a.id = p_id;

	v_ctx := v_job.context
		|| jsonb_build_object(
			'pending_approvals', '[]'::jsonb,	-- a job waits at one gate at a time
			'approvals', COALESCE(v_job.context->'approvals', '{}') || jsonb_build_object(v_pa.step_name,
				jsonb_strip_nulls(jsonb_build_object('action', p_action, 'pending_action_id', p_id,
					'resolved_by', v_by, 'resolved_at', clock_timestamp(), 'modifications', p_modifications))));
	IF p_action = 'edit' AND v_pa.draft_step IS NOT NULL THEN
		v_ctx := jsonb_set(v_ctx, ARRAY['outputs', v_pa.draft_step],
			COALESCE(v_ctx->'outputs'->v_pa.draft_step, '{}') || p_modifications);
	END IF;

	SELECT jsonb_array_length(d.steps) INTO v_steps FROM orchestrator.sequence_definitions d
	WHERE d.event_type = v_job.event_type AND d.version = v_job.sequence_version;

	-- approve and edit run the gated step; skip moves past it; cancel ends
	-- the job; expire (on_timeout fail) runs the step, which then fails
	IF NOT orchestrator.transition_job(v_job.id, 'awaiting_approval',
		CASE WHEN p_action = 'cancel' THEN 'cancelled'
		     WHEN p_action = 'skip' AND v_pa.step_index + 1 >= v_steps THEN 'completed'
		     ELSE 'pending' END,
		'approval', v_status, v_pa.step_index, v_pa.step_name,
		p_context => CASE WHEN p_action = 'skip'
		                  THEN v_ctx || jsonb_build_object('current_step', v_pa.step_index + 1) ELSE v_ctx END,
		p_current_step => CASE WHEN p_action = 'skip' THEN v_pa.step_index + 1 END,
		p_attempts => CASE WHEN p_action = 'skip' THEN 0 END,
		p_new_token => p_action = 'cancel',
		p_output => jsonb_strip_nulls(jsonb_build_object('pending_action_id', p_id, 'action', p_action,
		                                                 'resolved_by', v_by, 'via', p_via,
		                                                 'modifications', p_modifications))) THEN
		RAISE EXCEPTION 'job % moved on while its approval was being resolved', v_job.id
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	outcome := 'resolved';
	reason := v_status;
END
$$;
COMMENT ON FUNCTION orchestrator.resolve_approval(uuid, text, jsonb, uuid, boolean, text) IS 'Applies an approval decision once (row-locked); for orch_resolve_approval and slack_approval_received only';

/*
 * orch_resolve_approval: the rep's decision on a pending action.  Only the
 * user the approval was sent to (request.jwt.claims "sub", as PostgREST
 * sets it) or an administrator may resolve it; resolving twice, or two
 * resolutions racing, executes nothing twice (outcome duplicate).
 */
CREATE FUNCTION orch_resolve_approval(pending_action_id uuid, action text, modifications jsonb DEFAULT NULL,
	OUT outcome text, OUT job_id uuid, OUT reason text)
RETURNS record
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_user uuid := orchestrator.caller_user_id();
	v_admin boolean := orchestrator.caller_is_admin();
BEGIN
	IF NOT v_admin AND v_user IS NULL THEN
		RAISE EXCEPTION 'cannot tell which user is resolving pending action %', pending_action_id
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Call it with request.jwt.claims set to the user''s claims (PostgREST does), or as a member of orchestrator_admin.';
	END IF;
	SELECT r.outcome, r.job_id, r.reason INTO outcome, job_id, reason
	FROM orchestrator.resolve_approval(pending_action_id, action, modifications, v_user, v_admin,
	                                   'orch_resolve_approval') r;
END
$$;
COMMENT ON FUNCTION orch_resolve_approval(uuid, text, jsonb) IS
'Resolves an approval gate: approve, edit (modifications merged into the draft), skip or cancel; returns resolved, or duplicate when already resolved';

/*
 * approval_received is what orch_submit_event does with a
 * slack_approval_received event: the event's user is the one who clicked.
 */
CREATE FUNCTION orchestrator.approval_received(p_payload jsonb, p_user_id uuid,
	OUT outcome text, OUT job_id uuid, OUT reason text)
RETURNS record
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_id uuid;
	r record;
BEGIN
	IF jsonb_typeof(p_payload->'pending_action_id') IS DISTINCT FROM 'string'
	   OR (p_payload->>'pending_action_id') !~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$'
	   OR jsonb_typeof(p_payload->'action') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a slack_approval_received payload needs "pending_action_id" (a uuid) and "action"'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The Slack button''s value carries both: {"action": "approve", "pending_action_id": "...", "sequence_job_id": "...", "resume_step": 3}.';
	END IF;
	v_id := (p_payload->>'pending_action_id')::uuid;
	-- the button's other fields must describe the same gate
	IF EXISTS (SELECT 1 FROM orchestrator.slack_pending_actions a WHERE a.id = v_id
	           AND ((p_payload ? 'sequence_job_id' AND p_payload->>'sequence_job_id' IS DISTINCT FROM a.job_id::text)
	                OR (p_payload ? 'resume_step' AND p_payload->>'resume_step' IS DISTINCT FROM a.step_index::text))) THEN
		RAISE EXCEPTION 'the payload''s sequence_job_id or resume_step does not match pending action %', v_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Send the value of the Slack button as it is.';
	END IF;
	SELECT * INTO r FROM orchestrator.resolve_approval(v_id, p_payload->>'action', p_payload->'user_modifications',
		p_user_id, false, 'slack_approval_received');
	job_id := r.job_id;
	reason := r.reason;
	outcome := CASE r.outcome WHEN 'resolved' THEN 'accepted' ELSE r.outcome END;
END
$$;
COMMENT ON FUNCTION orchestrator.approval_received(jsonb, uuid) IS 'Resolves the approval a slack_approval_received event carries; for orch_submit_event only';

CREATE FUNCTION orch_define_hitl_pattern(name text, pattern jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_f jsonb;
BEGIN
	IF name IS NULL OR pattern IS NULL THEN
		RAISE EXCEPTION 'name and pattern must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid HITL pattern name "%"', name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 100 letters, digits, "_", ".", ":" or "-".';
	END IF;
	IF jsonb_typeof(pattern) <> 'object' OR jsonb_typeof(pattern->'title') IS DISTINCT FROM 'string'
	   OR pattern - 'title' - 'fields' - 'actions' <> '{}'::jsonb THEN
		RAISE EXCEPTION 'a HITL pattern is an object with "title" (text) and optional "fields" and "actions"'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'For example {"title": "Send {{subject}}?", "fields": [{"label": "Body", "path": "$.body"}], "actions": ["approve", "edit", "skip", "cancel"]}.';
	END IF;
	IF pattern ? 'fields' THEN
		IF jsonb_typeof(pattern->'fields') <> 'array' THEN
			RAISE EXCEPTION 'field "fields" of a HITL pattern must be an array' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR v_f IN SELECT value FROM jsonb_array_elements(pattern->'fields') LOOP
			IF jsonb_typeof(v_f->'label') IS DISTINCT FROM 'string' THEN
				RAISE EXCEPTION 'each field of a HITL pattern needs a "label"' USING ERRCODE = 'invalid_parameter_value';
			END IF;
			PERFORM orchestrator.validate_jsonpath(name, 'fields.path', v_f->'path');
			IF v_f->'path' IS NULL THEN
				RAISE EXCEPTION 'each field of a HITL pattern needs a "path"' USING ERRCODE = 'invalid_parameter_value';
			END IF;
		END LOOP;
	END IF;
	IF pattern ? 'actions' AND (jsonb_typeof(pattern->'actions') <> 'array'
	    OR jsonb_array_length(pattern->'actions') = 0
	    OR EXISTS (SELECT 1 FROM jsonb_array_elements(pattern->'actions') a
	               WHERE a #>> '{}' IS NULL OR a #>> '{}' NOT IN ('approve', 'edit', 'skip', 'cancel'))) THEN
		RAISE EXCEPTION 'field "actions" of a HITL pattern must list some of approve, edit, skip, cancel'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO orchestrator.hitl_patterns AS h (name, pattern) VALUES (orch_define_hitl_pattern.name, orch_define_hitl_pattern.pattern)
	ON CONFLICT ON CONSTRAINT hitl_patterns_pkey DO UPDATE SET pattern = excluded.pattern, updated_at = now();
END
$$;
COMMENT ON FUNCTION orch_define_hitl_pattern(text, jsonb) IS 'Defines (or replaces) a HITL pattern: how an approval request is rendered in Slack';

/*
 * expire_approvals resolves the approval requests nobody answered in time
 * (expires_at passed), oldest first, at most 100 a call, each as its
 * on_timeout says: skip the step, cancel the job, or fail the step (the
 * job runs it, and it fails: on_failure decides).  The user is told with
 * a Slack notice (orchestrator:approval_expired).  Run by the workers once
 * a second; returns how many expired.
 */
CREATE FUNCTION orchestrator.expire_approvals() RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v record;
	r record;
	n integer := 0;
BEGIN
	FOR v IN SELECT a.id, a.org_id, a.user_id, a.job_id, a.step_name, a.on_timeout, a.created_at, a.expires_at
	         FROM orchestrator.slack_pending_actions a
	         WHERE a.status = 'pending' AND a.expires_at <= clock_timestamp()
	         ORDER BY a.expires_at LIMIT 100 LOOP
		BEGIN
			SELECT * INTO r FROM orchestrator.resolve_approval(v.id,
				CASE v.on_timeout WHEN 'fail' THEN 'expire' ELSE v.on_timeout END, NULL, NULL, true, 'timeout');
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'orchestrator could not expire approval request %: %', v.id, SQLERRM;
			CONTINUE;
		END;
		CONTINUE WHEN r.outcome <> 'resolved';
		n := n + 1;
		PERFORM @extschema@.orch_submit_event('orchestrator:approval_expired', 'orchestrator:approval',
			v.org_id, v.user_id,
			jsonb_build_object('pending_action_id', v.id, 'sequence_job_id', v.job_id, 'step', v.step_name,
			                   'on_timeout', v.on_timeout,
			                   'waited', date_trunc('second', v.expires_at - v.created_at)::text,
			                   'event_type', (SELECT j.event_type FROM orchestrator.sequence_jobs j WHERE j.id = v.job_id)));
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION orchestrator.expire_approvals() IS 'Resolves unanswered approval requests past expires_at as their on_timeout says, and tells each user; for the workers';

CREATE FUNCTION orchestrator.approval_expired_message(p_state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object(
		'text', format('Nobody answered the approval for step %s of workflow %s within %s: %s.',
		               p->>'step', p->>'event_type', p->>'waited', what),
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('*Approval expired* for step `%s` of workflow %s after %s: %s.', p->>'step', p->>'event_type',
				       p->>'waited', what))),
			jsonb_build_object('type', 'context', 'elements', jsonb_build_array(jsonb_build_object('type', 'mrkdwn',
				'text', format('job %s', p->>'sequence_job_id'))))))
	FROM (SELECT p_state->'event'->'payload' AS p) s,
	     LATERAL (SELECT CASE s.p->>'on_timeout' WHEN 'skip' THEN 'the step was skipped'
	                                             WHEN 'cancel' THEN 'the workflow was cancelled'
	                                             ELSE 'the step failed' END AS what) w
$$;
COMMENT ON FUNCTION orchestrator.approval_expired_message(jsonb) IS 'The Slack message of an orchestrator:approval_expired event';

INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
VALUES ('orchestrator:approval_expired', 1,
	'[{"name": "notify-expired", "kind": "notify", "endpoint": "slack", "function": "orchestrator.approval_expired_message",
	   "scope": "service", "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 60000}}]',
	CURRENT_USER::regrole);
