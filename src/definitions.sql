/*-------------------------------------------------------------------------
 *
 * definitions.sql
 *	  Sequences as data: sequence_definitions and orch_define_sequence, with
 *	  the validation of every step field.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/definitions.sql
 *
 *-------------------------------------------------------------------------
 */

-- Definitions

CREATE TABLE orchestrator.sequence_definitions (
	event_type text NOT NULL,
	version integer NOT NULL,
	steps jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by regrole NOT NULL,
	PRIMARY KEY (event_type, version)
);
COMMENT ON TABLE orchestrator.sequence_definitions IS 'Versioned sequences: event type -> ordered steps; a job keeps the version it started with';
COMMENT ON COLUMN orchestrator.sequence_definitions.event_type IS 'Event type the sequence runs for';
COMMENT ON COLUMN orchestrator.sequence_definitions.version IS 'Version, 1 upwards; submit picks the highest';
COMMENT ON COLUMN orchestrator.sequence_definitions.steps IS 'Validated step array (see orch_define_sequence)';
COMMENT ON COLUMN orchestrator.sequence_definitions.created_at IS 'When this version was defined';
COMMENT ON COLUMN orchestrator.sequence_definitions.created_by IS 'Role that defined it (recorded by the engine, not the caller); the steps'' functions run as this role';

/*
 * resolve_state_function resolves the name of a function taking the state
 * (jsonb) in the current search_path: the function, its schema-qualified
 * name, and whether it returns a single jsonb value.  fn is NULL when no
 * such function exists.  Every definition that names a function (steps,
 * context sources) goes through it.
 */
CREATE FUNCTION orchestrator.resolve_state_function(p_name text,
	OUT fn regprocedure, OUT qualified text, OUT returns_jsonb boolean)
RETURNS record
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	BEGIN
		fn := pg_catalog.to_regprocedure(p_name || '(jsonb)');
	EXCEPTION WHEN OTHERS THEN
		fn := NULL;
	END;
	SELECT format('%I.%I', n.nspname, p.proname),
	       p.prorettype = 'jsonb'::regtype AND NOT p.proretset AND p.prokind = 'f'
	INTO qualified, returns_jsonb
	FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
	WHERE p.oid = fn;
END
$$;
COMMENT ON FUNCTION orchestrator.resolve_state_function(text) IS 'Resolves a step or context-source function name (f(jsonb)) in the current search_path: the function, its qualified name, whether it returns jsonb';

-- Definitions API

CREATE FUNCTION orchestrator.validate_jsonpath(p_step text, p_field text, p_path jsonb) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF p_path IS NULL THEN
		RETURN;
	END IF;
	IF jsonb_typeof(p_path) <> 'string' THEN
		RAISE EXCEPTION 'invalid step "%": field "%" must be a jsonpath string', p_step, p_field
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	BEGIN
		PERFORM (p_path #>> '{}')::jsonpath;
	EXCEPTION WHEN OTHERS THEN
		RAISE EXCEPTION 'invalid step "%": field "%" is not a valid jsonpath', p_step, p_field
			USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
	END;
END
$$;
COMMENT ON FUNCTION orchestrator.validate_jsonpath(text, text, jsonb) IS 'Raises an error naming the step and field when a jsonpath does not compile';

CREATE FUNCTION orchestrator.validate_int(p_step text, p_field text, p_value jsonb, p_min integer, p_max integer)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF p_value IS NULL THEN
		RETURN;
	END IF;
	IF jsonb_typeof(p_value) <> 'number' THEN
		RAISE EXCEPTION 'invalid step "%": field "%" must be a number', p_step, p_field
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF (p_value #>> '{}')::numeric <> trunc((p_value #>> '{}')::numeric)
	   OR (p_value #>> '{}')::numeric NOT BETWEEN p_min AND p_max THEN
		RAISE EXCEPTION 'invalid step "%": field "%" must be an integer between % and %', p_step, p_field, p_min, p_max
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;
COMMENT ON FUNCTION orchestrator.validate_int(text, text, jsonb, integer, integer) IS 'Raises an error naming the step and field unless an integer field is absent or a whole number in range';

/*
 * validate_step checks one step and returns it normalised: defaults filled in,
 * an sql step's function resolved to its regprocedure text.
 */
/*
 * validate_wait_step checks the fields of signal, sleep and fan_out steps
 * (wait.c), and that no other kind uses them.
 */
CREATE FUNCTION orchestrator.validate_wait_step(p_name text, p_kind text, p_step jsonb) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	v_field text;
	v_interval interval;
BEGIN
	FOREACH v_field IN ARRAY ARRAY['signal', 'key', 'timeout', 'on_timeout', 'for', 'until',
	                               'sequence', 'for_each', 'payload', 'on_child_failure'] LOOP
		IF p_step ? v_field AND NOT (p_kind = 'signal' AND v_field IN ('signal', 'key', 'timeout', 'on_timeout')
		                             OR p_kind = 'sleep' AND v_field IN ('for', 'until')
		                             OR p_kind = 'fan_out' AND v_field IN ('sequence', 'for_each', 'payload', 'on_child_failure')) THEN
			RAISE EXCEPTION 'invalid step "%": field "%" does not apply to kind %', p_name, v_field, p_kind
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'signal, key, timeout and on_timeout are for kind signal; for and until for kind sleep; sequence, for_each, payload and on_child_failure for kind fan_out.';
		END IF;
		IF p_step ? v_field AND v_field <> 'payload' AND jsonb_typeof(p_step->v_field) <> 'string' THEN
			RAISE EXCEPTION 'invalid step "%": field "%" must be a string', p_name, v_field
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF p_kind = 'fan_out' THEN
		IF NOT p_step ? 'sequence' OR NOT p_step ? 'for_each' THEN
			RAISE EXCEPTION 'invalid step "%": a fan_out step needs fields "sequence" (the event type its children run) and "for_each" (a jsonpath to the list)', p_name
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'For example "sequence": "enrich_contact", "for_each": "$.outputs.\"find-contacts\".contacts[*]", "payload": {"contact": "@"}.';
		END IF;
		IF (p_step->>'sequence') LIKE 'orchestrator:%' OR NOT EXISTS (
		    SELECT 1 FROM orchestrator.sequence_definitions d WHERE d.event_type = p_step->>'sequence') THEN
			RAISE EXCEPTION 'invalid step "%": sequence "%" in field "sequence" does not exist', p_name, p_step->>'sequence'
				USING ERRCODE = 'undefined_object', HINT = 'Define the children''s sequence first with orch_define_sequence.';
		END IF;
		PERFORM orchestrator.validate_jsonpath(p_name, 'for_each', p_step->'for_each');
		IF p_step ? 'payload' AND jsonb_typeof(p_step->'payload') <> 'object' THEN
			RAISE EXCEPTION 'invalid step "%": field "payload" must be an object', p_name
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Values starting with $ are read from the state, with @ from the item.';
		END IF;
		FOR v_field IN SELECT value #>> '{}' FROM jsonb_each(COALESCE(p_step->'payload', '{}'))
		               WHERE jsonb_typeof(value) = 'string' AND value #>> '{}' ~ '^[$@]' LOOP
			PERFORM orchestrator.validate_jsonpath(p_name, 'payload', to_jsonb('$' || substr(v_field, 2)));
		END LOOP;
		IF p_step ? 'on_child_failure' AND p_step->>'on_child_failure' NOT IN ('fail_fast', 'collect') THEN
			RAISE EXCEPTION 'invalid step "%": field "on_child_failure" must be fail_fast or collect', p_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	IF p_kind IN ('signal', 'sleep', 'fan_out') AND (p_step ? 'function' OR p_step ? 'scope') THEN
		RAISE EXCEPTION 'invalid step "%": field "%" does not apply to kind %', p_name,
			CASE WHEN p_step ? 'function' THEN 'function' ELSE 'scope' END, p_kind
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_kind = 'signal' THEN
		IF NOT p_step ? 'signal' OR p_step->>'signal' !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
			RAISE EXCEPTION 'invalid step "%": a signal step needs field "signal", a name of 1 to 100 of A-Z a-z 0-9 _ . : -', p_name
				USING ERRCODE = 'invalid_parameter_value', HINT = 'For example "signal": "prospect_replied".';
		END IF;
		PERFORM orchestrator.validate_jsonpath(p_name, 'key', p_step->'key');
		IF p_step ? 'on_timeout' AND (p_step->>'on_timeout' NOT IN ('fail', 'skip') OR NOT p_step ? 'timeout') THEN
			RAISE EXCEPTION 'invalid step "%": field "on_timeout" must be fail or skip, and needs field "timeout"', p_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	IF p_kind = 'sleep' AND (p_step ? 'for') = (p_step ? 'until') THEN
		RAISE EXCEPTION 'invalid step "%": a sleep step needs exactly one of fields "for" (an interval) and "until" (a jsonpath to a time in the state)', p_name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'For example "for": "2 days", or "until": "$.event.payload.meeting_start".';
	END IF;
	PERFORM orchestrator.validate_jsonpath(p_name, 'until', p_step->'until');
	FOREACH v_field IN ARRAY ARRAY['timeout', 'for'] LOOP
		CONTINUE WHEN NOT p_step ? v_field;
		BEGIN
			v_interval := (p_step->>v_field)::interval;
		EXCEPTION WHEN OTHERS THEN
			v_interval := NULL;
		END;
		IF v_interval IS NULL OR v_interval <= interval '0' OR v_interval > interval '1 year' THEN
			RAISE EXCEPTION 'invalid step "%": field "%" must be an interval over 0 and at most a year, not "%"', p_name, v_field,
				p_step->>v_field
				USING ERRCODE = 'invalid_parameter_value', HINT = 'For example "15 minutes" or "2 days".';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION orchestrator.validate_wait_step(text, text, jsonb) IS 'Validates the fields of a signal, sleep or fan_out step; errors name the step and field';

CREATE FUNCTION orchestrator.validate_step(p_step jsonb, p_index integer) RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
	v_name text;
	v_kind text;
	v_fn record;
	v_key text;
	v_on_failure text;
	v_fu jsonb;
	v_effect text;
	v_out jsonb := p_step;
BEGIN
	IF jsonb_typeof(p_step) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'invalid step at position %: a step must be a JSON object', p_index + 1
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_name := p_step->>'name';
	IF jsonb_typeof(p_step->'name') IS DISTINCT FROM 'string' OR v_name = '' THEN
		RAISE EXCEPTION 'invalid step at position %: field "name" must be a non-empty string', p_index + 1
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR v_key IN SELECT jsonb_object_keys(p_step) LOOP
		IF v_key NOT IN ('name', 'kind', 'function', 'endpoint', 'condition', 'requires_approval',
		                 'on_failure', 'retry', 'requires_context', 'ai', 'timeout_ms', 'expect',
		                 'followups', 'description', 'text', 'approval', 'effect', 'scope',
		                 'signal', 'key', 'timeout', 'on_timeout', 'for', 'until',
		                 'sequence', 'for_each', 'payload', 'on_child_failure') THEN
			RAISE EXCEPTION 'invalid step "%": unrecognized field "%"', v_name, v_key
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Known fields: name, kind, function, endpoint, text, condition, requires_approval, approval, effect, on_failure, retry, requires_context, ai, scope, timeout_ms, expect, followups, description; signal, key, timeout, on_timeout (kind signal); for, until (kind sleep); sequence, for_each, payload, on_child_failure (kind fan_out).';
		END IF;
	END LOOP;

	v_kind := p_step->>'kind';
	IF v_kind IS NULL THEN
		RAISE EXCEPTION 'invalid step "%": field "kind" is required', v_name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Supported kinds: sql, http, notify, signal, sleep, fan_out.';
	ELSIF v_kind NOT IN ('sql', 'http', 'notify', 'signal', 'sleep', 'fan_out') THEN
		RAISE EXCEPTION 'invalid step "%": unrecognized kind "%" in field "kind"', v_name, v_kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Supported kinds: sql, http, notify, signal, sleep, fan_out.';
	END IF;
	PERFORM orchestrator.validate_wait_step(v_name, v_kind, p_step);

	-- http and notify steps name an endpoint that exists (notify: "slack" by default)
	IF v_kind IN ('http', 'notify') THEN
		IF v_kind = 'notify' AND NOT p_step ? 'endpoint' THEN
			v_out := v_out || jsonb_build_object('endpoint', 'slack');
		END IF;
		IF jsonb_typeof(v_out->'endpoint') IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'invalid step "%": field "endpoint" is required for kind %', v_name, v_kind
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Name an endpoint defined with orch_define_endpoint.';
		END IF;
		IF NOT EXISTS (SELECT 1 FROM orchestrator.endpoints e WHERE e.name = v_out->>'endpoint') THEN
			RAISE EXCEPTION 'invalid step "%": endpoint "%" in field "endpoint" does not exist', v_name, v_out->>'endpoint'
				USING ERRCODE = 'undefined_object', HINT = 'Define it first with orch_define_endpoint.';
		END IF;
	ELSIF p_step ? 'endpoint' THEN
		RAISE EXCEPTION 'invalid step "%": field "endpoint" applies to kinds http and notify only', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_step ? 'text' AND (v_kind <> 'notify' OR jsonb_typeof(p_step->'text') <> 'string') THEN
		RAISE EXCEPTION 'invalid step "%": field "text" must be a string, and applies to kind notify only', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF v_kind = 'http' AND p_step ? 'function' THEN
		RAISE EXCEPTION 'invalid step "%": field "function" does not apply to kind http', v_name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'An http step posts the state to its endpoint.';
	END IF;
	IF v_kind = 'notify' AND NOT p_step ? 'function' AND NOT p_step ? 'text' THEN
		RAISE EXCEPTION 'invalid step "%": a notify step needs field "text" or field "function"', v_name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The function returns the message as {"text": ..., "blocks": [...]}.';
	END IF;

	IF v_kind = 'sql' OR (v_kind = 'notify' AND p_step ? 'function') THEN
		IF jsonb_typeof(p_step->'function') IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'invalid step "%": field "function" is required for kind %', v_name, v_kind
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Name a function taking the state as jsonb and returning jsonb.';
		END IF;
		v_fn := orchestrator.resolve_state_function(p_step->>'function');
		IF v_fn.fn IS NULL THEN
			RAISE EXCEPTION 'invalid step "%": function "%(jsonb)" in field "function" does not exist', v_name, p_step->>'function'
				USING ERRCODE = 'undefined_function',
				      HINT = 'The function must take one jsonb argument (the state) and return jsonb.';
		END IF;
		IF NOT v_fn.returns_jsonb THEN
			RAISE EXCEPTION 'invalid step "%": function "%" in field "function" must return jsonb', v_name, v_fn.fn
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'The function must take one jsonb argument (the state) and return a single jsonb value.';
		END IF;
		v_out := v_out || jsonb_build_object('function', v_fn.qualified);
	END IF;

	PERFORM orchestrator.validate_jsonpath(v_name, 'condition', p_step->'condition');
	PERFORM orchestrator.validate_jsonpath(v_name, 'expect', p_step->'expect');

	v_on_failure := COALESCE(p_step->>'on_failure', 'stop');
	IF v_on_failure NOT IN ('stop', 'continue', 'retry') THEN
		RAISE EXCEPTION 'invalid step "%": field "on_failure" must be stop, continue or retry, not "%"', v_name, v_on_failure
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_out := v_out || jsonb_build_object('on_failure', v_on_failure);

	IF p_step ? 'retry' THEN
		IF jsonb_typeof(p_step->'retry') <> 'object' THEN
			RAISE EXCEPTION 'invalid step "%": field "retry" must be an object with attempts and backoff_ms', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF (p_step->'retry') - 'attempts' - 'backoff_ms' <> '{}'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": field "retry" accepts only attempts and backoff_ms', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	PERFORM orchestrator.validate_int(v_name, 'retry.attempts', p_step->'retry'->'attempts', 1, 100);
	PERFORM orchestrator.validate_int(v_name, 'retry.backoff_ms', p_step->'retry'->'backoff_ms', 0, 86400000);
	v_out := v_out || jsonb_build_object('retry', jsonb_build_object(
		'attempts', COALESCE((p_step->'retry'->>'attempts')::int, CASE WHEN v_on_failure = 'retry' THEN 2 ELSE 1 END),
		'backoff_ms', COALESCE((p_step->'retry'->>'backoff_ms')::int, 1000)));

	-- approval gates: the seed's safeguards hold whatever the definition says
	IF p_step ? 'requires_approval' AND jsonb_typeof(p_step->'requires_approval') <> 'boolean' THEN
		RAISE EXCEPTION 'invalid step "%": field "requires_approval" must be true or false', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_step ? 'effect' AND (jsonb_typeof(p_step->'effect') <> 'string'
	    OR p_step->>'effect' NOT IN ('email_send', 'deal_stage_change', 'task_create', 'other')) THEN
		RAISE EXCEPTION 'invalid step "%": field "effect" must be email_send, deal_stage_change, task_create or other', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_effect := orchestrator.guarded_effect(v_out);
	IF v_effect IS NOT NULL THEN
		IF (p_step->'requires_approval') = 'false'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": % always requires approval; "requires_approval": false is rejected', v_name,
				CASE v_effect WHEN 'email_send' THEN 'an email send' WHEN 'deal_stage_change' THEN 'a deal-stage change'
				              ELSE 'task creation from detected intents' END
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = format('The engine recognises step "%s" as %s (see orchestrator.guarded_effect).', v_name, v_effect),
				      HINT = 'Remove "requires_approval": false; the seed''s approval gates cannot be turned off.';
		END IF;
		IF NOT p_step ? 'requires_approval' THEN
			RAISE NOTICE 'step "%" is recognised as %: requires_approval set to true', v_name, v_effect;
		END IF;
		v_out := v_out || jsonb_build_object('requires_approval', true, 'effect', v_effect);
	END IF;
	IF p_step ? 'approval' THEN
		IF jsonb_typeof(p_step->'approval') <> 'object'
		   OR (p_step->'approval') - 'pattern' - 'draft' - 'timeout' - 'on_timeout' <> '{}'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": field "approval" is an object with optional "pattern", "draft", "timeout" and "on_timeout"', v_name
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'For example {"pattern": "email_draft", "draft": "draft-email", "timeout": "2 days", "on_timeout": "skip"}.';
		END IF;
		IF p_step->'approval' ? 'timeout' THEN
			BEGIN
				v_effect := NULL;
				IF jsonb_typeof(p_step->'approval'->'timeout') <> 'string'
				   OR (p_step->'approval'->>'timeout')::interval <= interval '0' THEN
					v_effect := 'bad';
				END IF;
			EXCEPTION WHEN OTHERS THEN
				v_effect := 'bad';
			END;
			IF v_effect IS NOT NULL THEN
				RAISE EXCEPTION 'invalid step "%": field "approval.timeout" must be an interval over 0, not %', v_name,
					p_step->'approval'->'timeout'
					USING ERRCODE = 'invalid_parameter_value', HINT = 'For example "2 days".';
			END IF;
			v_effect := orchestrator.guarded_effect(v_out);
		END IF;
		IF p_step->'approval' ? 'on_timeout' AND (jsonb_typeof(p_step->'approval'->'on_timeout') <> 'string'
		    OR p_step->'approval'->>'on_timeout' NOT IN ('skip', 'cancel', 'fail')) THEN
			RAISE EXCEPTION 'invalid step "%": field "approval.on_timeout" must be skip, cancel or fail', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF (v_out->'requires_approval') IS DISTINCT FROM 'true'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": field "approval" needs "requires_approval": true', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF p_step->'approval' ? 'pattern' AND NOT EXISTS (SELECT 1 FROM orchestrator.hitl_patterns h
		                                                 WHERE h.name = p_step->'approval'->>'pattern') THEN
			RAISE EXCEPTION 'invalid step "%": HITL pattern "%" in field "approval.pattern" does not exist', v_name,
				p_step->'approval'->>'pattern'
				USING ERRCODE = 'undefined_object', HINT = 'Define it first with orch_define_hitl_pattern.';
		END IF;
		IF p_step->'approval' ? 'draft' AND jsonb_typeof(p_step->'approval'->'draft') <> 'string' THEN
			RAISE EXCEPTION 'invalid step "%": field "approval.draft" must name an earlier step', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	IF p_step ? 'followups' THEN
		IF jsonb_typeof(p_step->'followups') <> 'array' THEN
			RAISE EXCEPTION 'invalid step "%": field "followups" must be an array', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR v_fu IN SELECT value FROM jsonb_array_elements(p_step->'followups') LOOP
			IF jsonb_typeof(v_fu) <> 'object' OR jsonb_typeof(v_fu->'type') IS DISTINCT FROM 'string'
			   OR (v_fu->>'type') !~ '^[A-Za-z0-9_.:-]{1,100}$' OR (v_fu->>'type') LIKE 'orchestrator:%' THEN
				RAISE EXCEPTION 'invalid step "%": each entry of field "followups" needs a valid "type" (not one of the engine''s orchestrator: types)', v_name
					USING ERRCODE = 'invalid_parameter_value',
					      HINT = 'For example {"type": "proposal_generation", "for_each": "$.outputs.x[*]", "payload": {"phrase": "@.phrase"}}.';
			END IF;
			IF v_fu - 'type' - 'for_each' - 'payload' <> '{}'::jsonb THEN
				RAISE EXCEPTION 'invalid step "%": a follow-up accepts only type, for_each and payload', v_name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			PERFORM orchestrator.validate_jsonpath(v_name, 'followups.for_each', v_fu->'for_each');
			IF v_fu ? 'payload' AND jsonb_typeof(v_fu->'payload') <> 'object' THEN
				RAISE EXCEPTION 'invalid step "%": field "followups.payload" must be an object', v_name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			FOR v_key IN SELECT value #>> '{}' FROM jsonb_each(COALESCE(v_fu->'payload', '{}')) WHERE jsonb_typeof(value) = 'string'
			                                                                                 AND value #>> '{}' ~ '^[$@]' LOOP
				PERFORM orchestrator.validate_jsonpath(v_name, 'followups.payload', to_jsonb('$' || substr(v_key, 2)));
			END LOOP;
		END LOOP;
	END IF;
	IF p_step ? 'requires_context' THEN
		IF jsonb_typeof(p_step->'requires_context') <> 'array'
		   OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_step->'requires_context') c WHERE jsonb_typeof(c) <> 'string') THEN
			RAISE EXCEPTION 'invalid step "%": field "requires_context" must be an array of context source names', v_name
				USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ["apollo", "company_news"].';
		END IF;
		FOR v_key IN SELECT c #>> '{}' FROM jsonb_array_elements(p_step->'requires_context') c LOOP
			IF NOT EXISTS (SELECT 1 FROM orchestrator.context_sources s WHERE s.name = v_key AND s.tier = 3) THEN
				RAISE EXCEPTION 'invalid step "%": "%" in field "requires_context" is not a tier 3 context source', v_name, v_key
					USING ERRCODE = 'undefined_object',
					      HINT = 'Define it with orch_define_context_source(name, 3, ...); tier 2 sources load by themselves for contact and deal events.';
			END IF;
		END LOOP;
	END IF;
	IF p_step ? 'scope' AND (jsonb_typeof(p_step->'scope') <> 'string' OR p_step->>'scope' NOT IN ('user', 'service')) THEN
		RAISE EXCEPTION 'invalid step "%": field "scope" must be user or service', v_name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'user (the default) runs the function with the job''s user''s request.jwt.claims, so RLS applies; service is for org-wide work and is audited.';
	END IF;
	IF p_step ? 'scope' AND NOT p_step ? 'function' THEN
		RAISE EXCEPTION 'invalid step "%": field "scope" applies to steps that call a function', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_step ? 'description' AND jsonb_typeof(p_step->'description') <> 'string' THEN
		RAISE EXCEPTION 'invalid step "%": field "description" must be a string', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	PERFORM orchestrator.validate_int(v_name, 'timeout_ms', p_step->'timeout_ms', 1, 3600000);
	IF p_step ? 'ai' AND jsonb_typeof(p_step->'ai') <> 'boolean' THEN
		RAISE EXCEPTION 'invalid step "%": field "ai" must be true or false', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN v_out;
END
$$;
COMMENT ON FUNCTION orchestrator.validate_step(jsonb, integer) IS 'Validates one step definition and returns it with defaults filled in; errors name the step and field';

/*
 * store_sequence validates steps again (names already schema-qualified, so
 * this does not depend on anyone's search_path) and stores them as the next
 * version, recording the real caller as the role the steps run as.  It is
 * the only way into sequence_definitions: nobody can pick another role.
 */
CREATE FUNCTION orchestrator.store_sequence(p_event_type text, p_steps jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_steps jsonb := '[]';
	v_step jsonb;
	v_idx integer := 0;
	v_names text[] := '{}';
	v_version integer;
BEGIN
	IF p_event_type IS NULL OR p_steps IS NULL THEN
		RAISE EXCEPTION 'event_type and steps must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF p_event_type !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid event type "%"', p_event_type
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use 1 to 100 letters, digits, "_", ".", ":" or "-".';
	END IF;
	IF jsonb_typeof(p_steps) <> 'array' OR jsonb_array_length(p_steps) = 0 THEN
		RAISE EXCEPTION 'steps must be a non-empty JSON array'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR v_step IN SELECT value FROM jsonb_array_elements(p_steps) LOOP
		v_step := orchestrator.validate_step(v_step, v_idx);
		IF v_step->'approval' ? 'draft' AND NOT (v_step->'approval'->>'draft') = ANY (v_names) THEN
			RAISE EXCEPTION 'invalid step "%": field "approval.draft" names "%", which is not an earlier step', v_step->>'name',
				v_step->'approval'->>'draft'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'The draft is the output of a step that runs before the gated one.';
		END IF;
		IF (v_step->>'name') = ANY (v_names) THEN
			RAISE EXCEPTION 'invalid step "%": field "name" is not unique in the sequence', v_step->>'name'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		v_names := v_names || (v_step->>'name');
		v_steps := v_steps || jsonb_build_array(v_step);
		v_idx := v_idx + 1;
	END LOOP;

	-- serialise concurrent definitions of one event type
	PERFORM pg_advisory_xact_lock(1330795347, hashtext(p_event_type));
	SELECT COALESCE(max(d.version), 0) + 1 INTO v_version
	FROM orchestrator.sequence_definitions d WHERE d.event_type = p_event_type;
	INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
	VALUES (p_event_type, v_version, v_steps, orchestrator.calling_role());
	RETURN v_version;
END
$$;
COMMENT ON FUNCTION orchestrator.store_sequence(text, jsonb) IS 'Validates and stores a sequence version as the calling role (used by orch_define_sequence)';

/*
 * orch_define_sequence runs as its caller (SECURITY INVOKER, no pinned
 * search_path) so step function names resolve in the caller's search_path,
 * exactly as they would in the caller's own SQL; it qualifies them and
 * store_sequence validates and stores the steps.
 */
CREATE FUNCTION orch_define_sequence(event_type text, steps jsonb) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
	v_steps jsonb := '[]';
	v_step jsonb;
	v_qualified text;
BEGIN
	IF jsonb_typeof(steps) = 'array' THEN
		FOR v_step IN SELECT value FROM jsonb_array_elements(steps) LOOP
			IF jsonb_typeof(v_step->'function') = 'string' THEN
				v_qualified := (orchestrator.resolve_state_function(v_step->>'function')).qualified;
				IF v_qualified IS NOT NULL THEN
					v_step := v_step || jsonb_build_object('function', v_qualified);
				END IF;
			END IF;
			v_steps := v_steps || jsonb_build_array(v_step);
		END LOOP;
	ELSE
		v_steps := steps;
	END IF;
	RETURN orchestrator.store_sequence(event_type, v_steps);
END
$$;
COMMENT ON FUNCTION orch_define_sequence(text, jsonb) IS 'Validates and stores a new version of the sequence for an event type; returns the version';
