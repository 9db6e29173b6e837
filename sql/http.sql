--
-- http: endpoints and secrets, http steps against the stand-in server
-- (test/standin.py), every failure mode, 429 deferral, Idempotency-Key,
-- keep-alive, and no secret anywhere in stored state
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
\getenv standin_port ORCH_STANDIN_PORT
-- this session and the later test files find the stand-in through test.standin
SELECT set_config('test.standin', 'http://127.0.0.1:' || :'standin_port', false) IS NOT NULL AS standin_configured;
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET test.standin = %L', current_database(), current_setting('test.standin')); END $$;

-- standin() talks to the stand-in's control API (curl, run by the server)
CREATE TABLE standin_out (line text);
CREATE FUNCTION shell_quote(s text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT '''' || replace(s, '''', '''"''"''') || '''' $$;
CREATE FUNCTION standin(method text, path text, body jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	cmd text;
	out text;
BEGIN
	TRUNCATE standin_out;
	cmd := format('curl -s -S --max-time 10 -X %s %s %s', method,
		CASE WHEN body IS NULL THEN '' ELSE '-H ''Content-Type: application/json'' --data-binary ' || shell_quote(body::text) END,
		shell_quote(current_setting('test.standin') || path));
	EXECUTE format('COPY standin_out FROM PROGRAM %L WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')', cmd);
	SELECT string_agg(line, E'\n') INTO out FROM standin_out;
	RETURN out::jsonb;
END $$;
CREATE FUNCTION standin_requests(p text) RETURNS SETOF jsonb LANGUAGE sql
AS $$ SELECT jsonb_array_elements(standin('GET', '/_control/requests?path=' || p)) $$;
SELECT standin('POST', '/_control/reset');

-- endpoints: http and https only, a host, sane headers, secrets by reference
SELECT test_error($$SELECT orch_define_endpoint('x', 'ftp://127.0.0.1/file', 1000, '{}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'file:///etc/passwd', 1000, '{}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'gopher://127.0.0.1:70/', 1000, '{}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://', 1000, '{}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://host with space/', 1000, '{}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://127.0.0.1/', 0, '{}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://127.0.0.1/', 1000, '[]')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://127.0.0.1/', 1000, '{"Bad Header": "v"}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://127.0.0.1/', 1000, '{"X-Two": "a\nb"}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://127.0.0.1/', 1000, '{"X-N": 5}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://127.0.0.1/', 1000, '{"Authorization": "Bearer {{secret:bad name}}"}')$$);
SELECT test_error($$SELECT orch_define_endpoint('x', 'http://127.0.0.1/', 1000, '{"Idempotency-Key": "mine"}')$$);
SELECT test_error($$SELECT orch_define_endpoint(NULL, 'http://127.0.0.1/', 1000, '{}')$$);
SELECT test_error($$SELECT orch_define_endpoint('bad name', 'http://127.0.0.1/', 1000, '{}')$$);
SELECT count(*) AS endpoints_after_errors FROM orchestrator.endpoints;

-- secrets: set by name, read by nobody but the extension owner
SELECT orch_set_secret('service_key', 'sk-live-7f3a9c1e5d');
SELECT orch_set_secret('service_key', 'sk-live-7f3a9c1e5d-rotated');
SELECT test_error($$SELECT orch_set_secret('service_key', NULL)$$);
SELECT test_error($$SELECT orch_set_secret('no spaces please', 'x')$$);
CREATE ROLE test_http_admin IN ROLE orchestrator_admin;
SET ROLE test_http_admin;
SELECT test_error($$SELECT value FROM orchestrator.secrets$$);
SELECT orch_set_secret('admin_can_write', 'w');
RESET ROLE;
SELECT name FROM orchestrator.secrets ORDER BY name;

-- the seed's functions as endpoints; the Authorization header carries the secret
SELECT orch_define_endpoint(fn, current_setting('test.standin') || '/functions/v1/' || fn, 5000,
	'{"Authorization": "Bearer {{secret:service_key}}", "X-Client": "orchestrator-test"}')
FROM unnest(ARRAY['extract-action-items', 'detect-intents', 'suggest-next-actions', 'generate-proposal', 'flaky', 'limited']) fn;
SELECT orch_define_endpoint('unset-secret', current_setting('test.standin') || '/functions/v1/unset', 5000,
	'{"Authorization": "Bearer {{secret:never_set}}"}');
SELECT orch_define_endpoint('refused', 'http://127.0.0.1:1/functions/v1/nothing', 2000, '{}');
SELECT name, regexp_replace(url, ':[0-9]+/', ':PORT/') AS url, timeout_ms, headers FROM orchestrator.endpoints ORDER BY name;

-- http step validation
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "http"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "http", "endpoint": "nowhere"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "http", "endpoint": "flaky", "function": "noop"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "noop", "endpoint": "flaky"}]')$$);

-- meeting_ended, the seed's way: three edge functions, then SQL on their outputs
CREATE FUNCTION public.count_commitments(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('proposals', jsonb_path_query_array(state,
		'$.outputs."detect-intents".commitments[*] ? (@.intent == "send_proposal" && @.confidence >= 0.8)'))
$$;
SELECT orch_define_sequence('meeting_ended_http', '[
  {"name": "extract-action-items", "kind": "http", "endpoint": "extract-action-items", "expect": "$.action_items.size() > 0"},
  {"name": "detect-intents", "kind": "http", "endpoint": "detect-intents"},
  {"name": "suggest-next-actions", "kind": "http", "endpoint": "suggest-next-actions", "on_failure": "continue"},
  {"name": "proposals", "kind": "sql", "function": "count_commitments"}]');
SELECT job_id AS m FROM orch_submit_event('meeting_ended_http', 'webhook:meetingbaas', :'org_a', :'ada',
	'{"meeting_id": "m-http-1", "action_items": ["I will send a proposal by Friday", "prospect: check SSO with IT"]}') \gset
SELECT test_wait_job(:'m');
SELECT jsonb_pretty(context->'outputs'->'extract-action-items') FROM orchestrator.sequence_jobs WHERE id = :'m';
SELECT context->'outputs'->'proposals' AS proposals, context->'execution_metadata'->'steps_completed' AS done
FROM orchestrator.sequence_jobs WHERE id = :'m';
SELECT step_name, kind, attempt, outcome, http_status FROM orchestrator.step_history WHERE job_id = :'m' ORDER BY id;
-- what the endpoint received: a POST of the state, with the secret, an Idempotency-Key and JSON headers
SELECT r->>'method' AS method,
       r->'headers'->>'authorization' = 'Bearer sk-live-7f3a9c1e5d-rotated' AS secret_sent,
       r->'headers'->>'x-client' AS x_client,
       r->'headers'->>'content-type' AS content_type,
       r->'headers'->>'idempotency-key' = 'orch-' || :'m' || '-1' AS idempotency_key,
       r->'body'->>'step' AS step, r->'body'->>'sequence_job_id' = :'m' AS job,
       r->'body'->'event'->'payload'->>'meeting_id' AS meeting,
       r->'body'->'outputs' ? 'extract-action-items' AS saw_previous_output,
       r->'body'->'context'->'tier1'->'org'->>'name' AS tier1_org
FROM standin_requests('/functions/v1/detect-intents') r;

-- W3C trace context: the job's own trace (its id's hex digits) and one span
-- per step, the same on every try of it
SELECT split_part(r->'headers'->>'traceparent', '-', 1) AS version,
       split_part(r->'headers'->>'traceparent', '-', 2) = replace(:'m', '-', '') AS job_trace,
       split_part(r->'headers'->>'traceparent', '-', 3) ~ '^[0-9a-f]{16}$' AS span,
       split_part(r->'headers'->>'traceparent', '-', 4) AS flags
FROM standin_requests('/functions/v1/detect-intents') r;
SELECT count(DISTINCT split_part(r->'headers'->>'traceparent', '-', 3)) AS spans_of_three_steps
FROM (SELECT * FROM standin_requests('/functions/v1/extract-action-items') UNION ALL
      SELECT * FROM standin_requests('/functions/v1/detect-intents') UNION ALL
      SELECT * FROM standin_requests('/functions/v1/suggest-next-actions')) r(r)
WHERE r->'body'->>'sequence_job_id' = :'m';
-- an event that carries a traceparent joins that trace, with its flags
SELECT job_id AS mt FROM orch_submit_event('meeting_ended_http', 'webhook:meetingbaas', :'org_a', :'ada',
	'{"meeting_id": "m-http-2", "action_items": ["x"], "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}') \gset
SELECT test_wait_job(:'mt');
SELECT DISTINCT split_part(r->'headers'->>'traceparent', '-', 2) AS trace, split_part(r->'headers'->>'traceparent', '-', 4) AS flags,
       split_part(r->'headers'->>'traceparent', '-', 3) <> '00f067aa0ba902b7' AS own_span
FROM standin_requests('/functions/v1/detect-intents') r WHERE r->'body'->>'sequence_job_id' = :'mt';
-- an invalid one (all-zero trace id) starts the job's own trace
SELECT orchestrator.traceparent(:'m', '{"event": {"payload": {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}}}', 'x')
	= orchestrator.traceparent(:'m', '{}', 'x') AS invalid_ignored,
       orchestrator.traceparent(:'m', '{"event": {"payload": {"traceparent": "not one"}}}', 'x')
	= orchestrator.traceparent(:'m', '{}', 'x') AS garbage_ignored;
-- the secret's value is nowhere in what the engine stored
SELECT count(*) AS rows_with_secret FROM (
	SELECT context::text || trigger_payload::text || COALESCE(last_error, '') AS t FROM orchestrator.sequence_jobs
	UNION ALL SELECT COALESCE(output::text, '') || COALESCE(error, '') FROM orchestrator.step_history
	UNION ALL SELECT COALESCE(payload::text, '') || COALESCE(reason, '') FROM orchestrator.event_log
	UNION ALL SELECT headers::text FROM orchestrator.endpoints) s
WHERE t LIKE '%sk-live-7f3a9c1e5d%';
