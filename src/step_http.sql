/*-------------------------------------------------------------------------
 *
 * step_http.sql
 *	  What http and notify steps send (step_http.c): endpoints, secrets, the
 *	  request builders, the notification log and its quiet-hours and
 *	  per-hour limits.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/step_http.sql
 *
 *-------------------------------------------------------------------------
 */

-- Endpoints, secrets, notifications

CREATE TABLE orchestrator.endpoints (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
	url text NOT NULL CHECK (url ~* '^https?://[^/?#[:space:]]+[^[:space:]]*$'),
	timeout_ms integer NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 1 AND 3600000),
	headers jsonb NOT NULL DEFAULT '{}',
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.endpoints IS 'Where http and notify steps send requests: an edge function, Slack; written by orch_define_endpoint';
COMMENT ON COLUMN orchestrator.endpoints.name IS 'Name steps refer to in their "endpoint" field';
COMMENT ON COLUMN orchestrator.endpoints.url IS 'http or https URL the step POSTs to';
COMMENT ON COLUMN orchestrator.endpoints.timeout_ms IS 'Request timeout unless the step gives its own timeout_ms';
COMMENT ON COLUMN orchestrator.endpoints.headers IS 'Extra request headers; {{secret:NAME}} in a value is replaced by the secret when the request is sent';
COMMENT ON COLUMN orchestrator.endpoints.updated_at IS 'Last change';

CREATE TABLE orchestrator.secrets (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,100}$'),
	-- a line break would end the header it is put in and start another
	value text NOT NULL CONSTRAINT secrets_value_single_line CHECK (value !~ '[\r\n]'),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.secrets IS 'Secret values referenced by endpoint headers; readable by no role but the extension owner (not dumped: set them again after a restore)';
COMMENT ON COLUMN orchestrator.secrets.name IS 'Name used as {{secret:NAME}} in endpoint headers';
COMMENT ON COLUMN orchestrator.secrets.value IS 'The secret itself; never copied into job state, history, logs or errors';
COMMENT ON COLUMN orchestrator.secrets.updated_at IS 'Last change';

CREATE TABLE orchestrator.notification_log (
	id bigserial PRIMARY KEY,
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	job_id uuid NOT NULL,
	step_name text NOT NULL,
	status text NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'sent', 'failed')),
	sent_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	slack_ts text
);
CREATE INDEX notification_log_user ON orchestrator.notification_log (user_id, sent_at);
CREATE INDEX notification_log_sending ON orchestrator.notification_log (job_id, step_name) WHERE status = 'sending';
COMMENT ON TABLE orchestrator.notification_log IS 'Slack messages sent by notify steps, for max_notifications_per_hour';
COMMENT ON COLUMN orchestrator.notification_log.id IS 'Entry id';
COMMENT ON COLUMN orchestrator.notification_log.org_id IS 'Organisation';
COMMENT ON COLUMN orchestrator.notification_log.user_id IS 'User the message was for';
COMMENT ON COLUMN orchestrator.notification_log.job_id IS 'Job that sent it';
COMMENT ON COLUMN orchestrator.notification_log.step_name IS 'Notify step that sent it';
COMMENT ON COLUMN orchestrator.notification_log.status IS 'sending (request under way), sent, failed';
COMMENT ON COLUMN orchestrator.notification_log.sent_at IS 'When the request was started';
COMMENT ON COLUMN orchestrator.notification_log.slack_ts IS 'Slack message timestamp (ts) of a sent message';

/*
 * traceparent: the W3C trace context an http step's request carries.  The
 * trace is the event's, when its payload has a valid "traceparent"; else
 * the job's own, whose trace id is the job id's 32 hex digits (so nothing
 * more is stored).  The span id is the step's, the same on every re-send
 * of it, like the Idempotency-Key; the flags are the event's, else 01
 * (sampled).  An invalid traceparent starts the job's own trace, as the
 * W3C recommendation says.
 */
CREATE FUNCTION orchestrator.traceparent(p_job_id uuid, p_state jsonb, p_step_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '00-' || CASE WHEN g.valid THEN substr(g.tp, 4, 32) ELSE replace(p_job_id::text, '-', '') END
	       || '-' || left(md5(p_job_id::text || ':' || COALESCE(p_step_name, '')), 16)
	       || '-' || CASE WHEN g.valid THEN right(g.tp, 2) ELSE '01' END
	FROM (SELECT t.tp, t.tp IS NOT NULL AND t.tp ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
	                   AND substr(t.tp, 4, 32) <> repeat('0', 32) AND substr(t.tp, 37, 16) <> repeat('0', 16) AS valid
	      FROM (SELECT p_state->'event'->'payload'->>'traceparent' AS tp) t) g
$$;
COMMENT ON FUNCTION orchestrator.traceparent(uuid, jsonb, text) IS 'The W3C traceparent header of a job''s http step: the event''s trace (payload key traceparent) or the job''s own, and the step''s span';

/*
 * http_request builds the request an http (or notify) step, or an
 * endpoint context source, sends: the endpoint's URL, its timeout (the
 * step's timeout_ms wins when given), its headers with
 * {{secret:NAME}} replaced, the JSON body (the state's event, context and
 * outputs, unless p_body is given) and the secret values used, so the
 * worker can scrub them from whatever comes back.  Errors name secrets,
 * never their values.
 */
CREATE FUNCTION orchestrator.http_request(p_job_id uuid, p_endpoint text, p_step_name text, p_timeout_ms integer,
	p_state jsonb, p_body jsonb DEFAULT NULL, p_rate_limited boolean DEFAULT true,
	OUT defer_until timestamptz, OUT defer_reason text,
	OUT url text, OUT timeout_ms integer, OUT headers text[], OUT body text, OUT secrets text[])
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	e orchestrator.endpoints;
	h record;
	v text;
	ref text;
	secret text;
BEGIN
	SELECT * INTO e FROM orchestrator.endpoints en WHERE en.name = p_endpoint;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', p_endpoint
			USING ERRCODE = 'undefined_object', HINT = 'Define it with orch_define_endpoint.';
	END IF;
	-- an endpoint's rate limit (flow.c): over it, the step waits for its slot
	IF p_rate_limited AND e.max_per_second IS NOT NULL THEN
		defer_until := orchestrator.rate_slot(e.name, e.max_per_second, p_job_id);
		IF defer_until IS NOT NULL THEN
			defer_reason := 'endpoint_rate_limit';
			RETURN;
		END IF;
	END IF;
	headers := '{}';
	secrets := '{}';
	FOR h IN SELECT key, value FROM jsonb_each_text(e.headers) LOOP
		v := h.value;
		FOR ref IN SELECT DISTINCT m[1] FROM regexp_matches(h.value, '\{\{secret:([A-Za-z0-9_.-]+)\}\}', 'g') AS m LOOP
			SELECT sc.value INTO secret FROM orchestrator.secrets sc WHERE sc.name = ref;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'secret "%" used by endpoint "%" is not set', ref, e.name
					USING ERRCODE = 'undefined_object', HINT = 'Set it with orch_set_secret.';
			END IF;
			v := replace(v, '{{secret:' || ref || '}}', secret);
			secrets := secrets || secret;
		END LOOP;
		headers := headers || (h.key || ': ' || v);
	END LOOP;
	-- the W3C trace context, unless the endpoint sets its own
	IF NOT EXISTS (SELECT 1 FROM jsonb_object_keys(e.headers) k WHERE lower(k) = 'traceparent') THEN
		headers := headers || ('traceparent: ' || orchestrator.traceparent(p_job_id, p_state, p_step_name));
	END IF;
	url := e.url;
	timeout_ms := COALESCE(p_timeout_ms, e.timeout_ms);
	body := COALESCE(p_body, jsonb_build_object(
		'sequence_job_id', p_job_id, 'step', p_step_name, 'event', p_state->'event',
		'context', p_state->'context', 'outputs', p_state->'outputs'))::text;
END
$$;
COMMENT ON FUNCTION orchestrator.http_request(uuid, text, text, integer, jsonb, jsonb, boolean) IS 'Builds an http step''s (or an endpoint context source''s) request (URL, timeout, headers with secrets, body), or says when the endpoint''s rate limit lets it go; for the worker only';

/*
 * notify_request decides whether a notify step may send now: inside the
 * user's quiet hours, or at max_notifications_per_hour, it returns when to
 * try again (the job is deferred, never dropped).  Otherwise it records the
 * message in notification_log and returns a chat.postMessage request to the
 * user's Slack id, with Block Kit blocks.
 */
CREATE FUNCTION orchestrator.notify_request(p_job_id uuid, p_step jsonb, p_state jsonb, p_message jsonb,
	OUT defer_until timestamptz, OUT defer_reason text,
	OUT url text, OUT timeout_ms integer, OUT headers text[], OUT body text, OUT secrets text[])
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_user uuid := (p_state->'event'->>'user_id')::uuid;
	v_org uuid := (p_state->'event'->>'org_id')::uuid;
	v_max integer;
	v_channel text;
	v_text text;
	v_blocks jsonb;
	r record;
BEGIN
	defer_until := orchestrator.next_active_time(v_user, clock_timestamp());
	IF defer_until IS NOT NULL THEN
		defer_reason := 'quiet_hours';
		RETURN;
	END IF;
	SELECT p.max_notifications_per_hour INTO v_max FROM orchestrator.user_preferences_source p WHERE p.user_id = v_user;
	v_max := COALESCE(v_max, 10);
	-- at the limit when the hour holds v_max messages: one more fits when the
	-- v_max-th most recent falls out of the hour
	IF v_max = 0 THEN
		defer_until := clock_timestamp() + interval '1 hour';
	ELSE
		SELECT l.sent_at + interval '1 hour' INTO defer_until FROM orchestrator.notification_log l
		WHERE l.user_id = v_user AND l.sent_at > clock_timestamp() - interval '1 hour' AND l.status <> 'failed'
		ORDER BY l.sent_at DESC OFFSET v_max - 1 LIMIT 1;
	END IF;
	IF defer_until IS NOT NULL THEN
		defer_reason := 'rate_limit';
		RETURN;
	END IF;
	SELECT m.slack_user_id INTO v_channel FROM orchestrator.user_mappings_source m WHERE m.user_id = v_user;
	IF v_channel IS NULL THEN
		RAISE EXCEPTION 'user % has no Slack mapping', v_user
			USING ERRCODE = 'undefined_object', HINT = 'Add the user to orchestrator.slack_user_mappings.';
	END IF;
	v_text := COALESCE(p_message->>'text', p_step->>'text');
	v_blocks := COALESCE(p_message->'blocks',
		jsonb_build_array(jsonb_build_object('type', 'section',
			'text', jsonb_build_object('type', 'mrkdwn', 'text', v_text))));
	SELECT * INTO r FROM orchestrator.http_request(p_job_id, p_step->>'endpoint', p_step->>'name',
		(p_step->>'timeout_ms')::integer, p_state,
		jsonb_strip_nulls(jsonb_build_object('channel', v_channel, 'text', v_text, 'blocks', v_blocks)));
	IF r.defer_until IS NOT NULL THEN
		defer_until := r.defer_until;
		defer_reason := r.defer_reason;
		RETURN;
	END IF;
	INSERT INTO orchestrator.notification_log (org_id, user_id, job_id, step_name)
	VALUES (v_org, v_user, p_job_id, p_step->>'name');
	url := r.url;
	timeout_ms := r.timeout_ms;
	headers := r.headers;
	body := r.body;
	secrets := r.secrets;
END
$$;
COMMENT ON FUNCTION orchestrator.notify_request(uuid, jsonb, jsonb, jsonb) IS 'Defers a notify step (quiet hours, rate limit) or builds its chat.postMessage request; for the worker only';

CREATE FUNCTION orchestrator.notify_result(p_job_id uuid, p_step_name text, p_ok boolean, p_ts text) RETURNS void
LANGUAGE sql VOLATILE
AS $$
	UPDATE orchestrator.notification_log l
	SET status = CASE WHEN p_ok THEN 'sent' ELSE 'failed' END, slack_ts = p_ts
	WHERE l.id = (SELECT max(l2.id) FROM orchestrator.notification_log l2
	              WHERE l2.job_id = p_job_id AND l2.step_name = p_step_name AND l2.status = 'sending')
$$;
COMMENT ON FUNCTION orchestrator.notify_result(uuid, text, boolean, text) IS 'Records whether Slack took a notify step''s message; for the worker only';

CREATE FUNCTION orch_define_endpoint(name text, url text, timeout_ms integer DEFAULT 10000, headers jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h record;
	v_bad text;
BEGIN
	IF name IS NULL OR url IS NULL OR timeout_ms IS NULL OR headers IS NULL THEN
		RAISE EXCEPTION 'name, url, timeout_ms and headers must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid endpoint name "%"', name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 100 letters, digits, "_", ".", ":" or "-".';
	END IF;
	IF url !~* '^https?://' THEN
		RAISE EXCEPTION 'endpoint URL must use http or https'
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('The URL given was "%s".', url),
			      HINT = 'Only http:// and https:// URLs can be called.';
	END IF;
	IF url !~* '^https?://[^/?#[:space:]]+[^[:space:]]*$' THEN
		RAISE EXCEPTION 'invalid endpoint URL "%"', url
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give a full URL with a host, without spaces.';
	END IF;
	IF timeout_ms < 1 OR timeout_ms > 3600000 THEN
		RAISE EXCEPTION 'timeout_ms must be between 1 and 3600000' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF jsonb_typeof(headers) <> 'object' THEN
		RAISE EXCEPTION 'headers must be a JSON object of header names to string values'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR h IN SELECT key, value FROM jsonb_each(headers) LOOP
		IF h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' THEN
			RAISE EXCEPTION 'invalid header name "%"', h.key USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF jsonb_typeof(h.value) <> 'string' OR (h.value #>> '{}') ~ '[\r\n]' THEN
			RAISE EXCEPTION 'header "%" must be a single-line string', h.key USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF (h.value #>> '{}') ~ '\{\{' AND (h.value #>> '{}') !~ '^([^{]|\{[^{]|\{\{secret:[A-Za-z0-9_.-]+\}\})*$' THEN
			RAISE EXCEPTION 'header "%" has a malformed secret reference', h.key
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Write {{secret:NAME}}, for example "Bearer {{secret:service_key}}".';
		END IF;
		IF lower(h.key) IN ('content-type', 'content-length', 'host', 'idempotency-key', 'transfer-encoding') THEN
			RAISE EXCEPTION 'header "%" is set by the engine', h.key USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	INSERT INTO orchestrator.endpoints AS e (name, url, timeout_ms, headers)
	VALUES (orch_define_endpoint.name, orch_define_endpoint.url, orch_define_endpoint.timeout_ms, orch_define_endpoint.headers)
	ON CONFLICT ON CONSTRAINT endpoints_pkey DO UPDATE
	SET url = excluded.url, timeout_ms = excluded.timeout_ms, headers = excluded.headers, updated_at = now();

	-- the safeguards hold when an endpoint changes under a definition: no
	-- ungated step (of a current version, or one a job still runs) and no
	-- context source may come to send email, change a deal stage or create tasks
	SELECT string_agg(DISTINCT format('%s v%s step "%s"', d.event_type, d.version, st->>'name'), ', ') INTO v_bad
	FROM orchestrator.sequence_definitions d, jsonb_array_elements(d.steps) st
	WHERE st->>'endpoint' = orch_define_endpoint.name
	  AND (st->'requires_approval') IS DISTINCT FROM 'true'::jsonb
	  AND orchestrator.guarded_effect(st) IS NOT NULL
	  AND (d.version = (SELECT max(d2.version) FROM orchestrator.sequence_definitions d2 WHERE d2.event_type = d.event_type)
	       OR EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j WHERE j.event_type = d.event_type AND j.sequence_version = d.version
	                  AND j.status IN ('pending', 'in_progress', 'awaiting_approval')));
	IF v_bad IS NOT NULL THEN
		RAISE EXCEPTION 'endpoint "%" at this URL would be an email send, deal-stage change or task creation for ungated steps: %', name, v_bad
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Define those sequences again with "requires_approval": true on those steps first, or use another endpoint name.';
	END IF;
	SELECT string_agg(c.name, ', ') INTO v_bad FROM orchestrator.context_sources c
	WHERE c.endpoint = orch_define_endpoint.name
	  AND orchestrator.guarded_effect(jsonb_build_object('name', c.name, 'endpoint', c.endpoint)) IS NOT NULL;
	IF v_bad IS NOT NULL THEN
		RAISE EXCEPTION 'endpoint "%" at this URL would make context source % send email, change deal stages or create tasks', name, v_bad
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Context sources only read; point them at another endpoint.';
	END IF;
END
$$;
COMMENT ON FUNCTION orch_define_endpoint(text, text, integer, jsonb) IS
'Defines (or replaces) a named endpoint for http and notify steps: http/https URL, default timeout, headers that may reference secrets as {{secret:NAME}}';

CREATE FUNCTION orch_set_secret(name text, value text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NULL OR value IS NULL THEN
		RAISE EXCEPTION 'name and value must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9_.-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid secret name'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 100 letters, digits, "_", "." or "-".';
	END IF;
	IF value ~ '[\r\n]' THEN
		RAISE EXCEPTION 'secret "%" must not contain a line break', name
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'Secrets are sent in request headers, where a carriage return or line feed would start another header.',
			      HINT = 'Remove the line break; a secret is a single line.';
	END IF;
	INSERT INTO orchestrator.secrets AS sc (name, value) VALUES (orch_set_secret.name, orch_set_secret.value)
	ON CONFLICT ON CONSTRAINT secrets_pkey DO UPDATE SET value = excluded.value, updated_at = now();
END
$$;
COMMENT ON FUNCTION orch_set_secret(text, text) IS 'Stores a secret for endpoint headers; nobody but the extension owner can read it back';
