--
-- http_failure: each way a call can go wrong goes through on_failure;
-- 429 defers without counting an attempt; retries keep their
-- Idempotency-Key; connections are reused
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
SELECT standin('POST', '/_control/reset');

-- one endpoint and one single-step sequence per failure mode
SELECT orch_define_endpoint(n, current_setting('test.standin') || '/functions/v1/' || n, t, '{}')
FROM (VALUES ('f500', 5000), ('f404', 5000), ('fgarbage', 5000), ('foversize', 5000),
             ('fredirect', 5000), ('fhang', 300), ('fclose', 5000)) AS v(n, t);
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/f500", "mode": "status", "status": 500}');
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/f404", "mode": "status", "status": 404}');
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/fgarbage", "mode": "garbage"}');
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/foversize", "mode": "oversize", "size": 2097152}');
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/fredirect", "mode": "redirect", "location": "http://elsewhere.example/steal"}');
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/fhang", "mode": "hang"}');
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/fclose", "mode": "close"}');
SELECT orch_define_sequence('hf_' || n, jsonb_build_array(jsonb_build_object('name', 'call', 'kind', 'http', 'endpoint', n)))
FROM unnest(ARRAY['f500', 'f404', 'fgarbage', 'foversize', 'fredirect', 'fhang', 'fclose', 'refused', 'unset-secret']) n;
-- the step's own timeout_ms wins over the endpoint's
SELECT orch_define_sequence('hf_step_timeout', '[{"name": "call", "kind": "http", "endpoint": "fhang", "timeout_ms": 150}]');
CREATE TABLE hf_jobs AS
SELECT n, (orch_submit_event('hf_' || n, 'test:http', :'org_a', :'ada', jsonb_build_object('mode', n))).job_id
FROM unnest(ARRAY['f500', 'f404', 'fgarbage', 'foversize', 'fredirect', 'fhang', 'fclose', 'refused', 'unset-secret', 'step_timeout']) n;
SELECT test_wait_for($$SELECT count(*) = 0 FROM orchestrator.sequence_jobs j JOIN hf_jobs h ON h.job_id = j.id
                      WHERE j.status NOT IN ('completed', 'failed')$$);
SELECT h.n, j.status, regexp_replace(j.last_error, '[0-9]+ ms', 'N ms') AS last_error
FROM hf_jobs h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id ORDER BY h.n;
SELECT h.n, s.outcome, s.http_status FROM hf_jobs h JOIN orchestrator.step_history s ON s.job_id = h.job_id ORDER BY h.n;
-- the redirect was not followed: one request, to the stand-in only
SELECT count(*) AS redirect_requests FROM standin_requests('/functions/v1/fredirect');
-- a step without its secret sends nothing
SELECT count(*) AS unset_secret_requests FROM standin_requests('/functions/v1/unset');
-- on_failure continue: the seed's "external API failure: skip enrichment, continue with available data"
SELECT orch_define_sequence('hf_enrich', '[
  {"name": "apollo-enrich", "kind": "http", "endpoint": "f500", "on_failure": "continue"},
  {"name": "extract-action-items", "kind": "http", "endpoint": "extract-action-items"}]');
SELECT job_id AS e FROM orch_submit_event('hf_enrich', 'test:http', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'e');
SELECT step_name, outcome, http_status FROM orchestrator.step_history WHERE job_id = :'e' ORDER BY id;

-- retry: two 503s, then success; every try carries the same Idempotency-Key
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/flaky", "mode": "status", "status": 503, "times": 2}');
SELECT orch_define_sequence('hf_retry', '[{"name": "generate", "kind": "http", "endpoint": "flaky",
  "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 20}}]');
SELECT job_id AS r FROM orch_submit_event('hf_retry', 'test:http', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'r');
SELECT attempt, outcome, http_status, error FROM orchestrator.step_history WHERE job_id = :'r' ORDER BY id;
SELECT count(*) AS requests, count(DISTINCT r->'headers'->>'idempotency-key') AS keys,
       min(r->'headers'->>'idempotency-key') = 'orch-' || :'r' || '-0' AS key_is_job_and_step
FROM standin_requests('/functions/v1/flaky') r;

-- 429 with Retry-After in seconds: deferred, not failed, not an attempt; then done
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/limited", "mode": "429", "retry_after": "1", "times": 1}');
SELECT orch_define_sequence('hf_429', '[{"name": "call", "kind": "http", "endpoint": "limited", "on_failure": "stop"}]');
SELECT job_id AS l FROM orch_submit_event('hf_429', 'test:http', :'org_a', :'ada', '{"n": 1}') \gset
SELECT test_wait_job(:'l');
SELECT attempt, outcome, http_status, regexp_replace(error, 'until .*', 'until T') AS error
FROM orchestrator.step_history WHERE job_id = :'l' ORDER BY id;
-- the retry waited for Retry-After, and the two requests are one idempotent call
SELECT (SELECT started_at FROM orchestrator.step_history WHERE job_id = :'l' AND outcome = 'succeeded')
       - (SELECT finished_at FROM orchestrator.step_history WHERE job_id = :'l' AND outcome = 'deferred')
       >= interval '900 milliseconds' AS waited_retry_after;
SELECT count(*) AS requests, count(DISTINCT r->'headers'->>'idempotency-key') AS keys
FROM standin_requests('/functions/v1/limited') r;
SELECT context->'execution_metadata'->'steps_attempted' AS attempted, context->'execution_metadata'->'steps_failed' AS failed
FROM orchestrator.sequence_jobs WHERE id = :'l';

-- 429 without Retry-After: the seed's five minutes
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/limited", "mode": "429", "times": 1}');
SELECT job_id AS l2 FROM orch_submit_event('hf_429', 'test:http', :'org_a', :'ada', '{"n": 2}') \gset
SELECT test_wait_for(format($$SELECT EXISTS (SELECT 1 FROM orchestrator.step_history WHERE job_id = %L AND outcome = 'deferred')
                               AND (SELECT status = 'pending' FROM orchestrator.sequence_jobs WHERE id = %L)$$, :'l2', :'l2'));
SELECT status, attempts, run_at BETWEEN now() + interval '4 minutes 50 seconds' AND now() + interval '5 minutes 10 seconds' AS five_minutes
FROM orchestrator.sequence_jobs WHERE id = :'l2';
SELECT orch_cancel_job(:'l2');
-- 429 with Retry-After as an HTTP date, three minutes out
SELECT standin('POST', '/_control/behave', jsonb_build_object('path', '/functions/v1/limited', 'mode', '429', 'times', 1,
	'retry_after', to_char((now() + interval '3 minutes') AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"')));
SELECT job_id AS l3 FROM orch_submit_event('hf_429', 'test:http', :'org_a', :'ada', '{"n": 3}') \gset
SELECT test_wait_for(format($$SELECT EXISTS (SELECT 1 FROM orchestrator.step_history WHERE job_id = %L AND outcome = 'deferred')
                               AND (SELECT status = 'pending' FROM orchestrator.sequence_jobs WHERE id = %L)$$, :'l3', :'l3'));
SELECT status, run_at BETWEEN now() + interval '2 minutes 50 seconds' AND now() + interval '3 minutes 10 seconds' AS three_minutes
FROM orchestrator.sequence_jobs WHERE id = :'l3';
SELECT orch_cancel_job(:'l3');

-- keep-alive: calls one after another go over connections already open;
-- whichever of the two workers claims each job, four calls use at most two
SELECT orch_define_endpoint('ka', current_setting('test.standin') || '/functions/v1/ka', 5000, '{}');
SELECT orch_define_sequence('hf_ka', '[{"name": "call", "kind": "http", "endpoint": "ka"}]');
SELECT job_id AS k1 FROM orch_submit_event('hf_ka', 'test:http', :'org_a', :'ada', '{"n": 1}') \gset
SELECT test_wait_job(:'k1');
SELECT job_id AS k2 FROM orch_submit_event('hf_ka', 'test:http', :'org_a', :'ada', '{"n": 2}') \gset
SELECT test_wait_job(:'k2');
SELECT job_id AS k3 FROM orch_submit_event('hf_ka', 'test:http', :'org_a', :'ada', '{"n": 3}') \gset
SELECT test_wait_job(:'k3');
SELECT job_id AS k4 FROM orch_submit_event('hf_ka', 'test:http', :'org_a', :'ada', '{"n": 4}') \gset
SELECT test_wait_job(:'k4');
WITH allr AS (SELECT jsonb_array_elements(standin('GET', '/_control/requests')) AS r)
SELECT count(*) AS requests,
       count(DISTINCT k.r->>'client') <= 2 AS at_most_one_connection_per_worker
FROM allr k WHERE k.r->>'path' = '/functions/v1/ka';

-- a line break in a secret would end its header and start another one
-- (X-Injected): refused when the secret is set, by the table too...
SELECT test_error($$SELECT orch_set_secret('inj', E'abc\r\nX-Injected: yes')$$);
SELECT test_error($$SELECT orch_set_secret('inj', E'abc\nX-Injected: yes')$$);
SELECT test_error($$INSERT INTO orchestrator.secrets (name, value) VALUES ('inj', E'abc\rX-Injected: yes')$$);
-- ...and again when the request is built, should one get past the table's check
SELECT orch_set_secret('inj', 'placeholder');
ALTER TABLE orchestrator.secrets DROP CONSTRAINT secrets_value_single_line;
UPDATE orchestrator.secrets SET value = E'abc\r\nX-Injected: yes' WHERE name = 'inj';
SELECT orch_define_endpoint('finj', current_setting('test.standin') || '/functions/v1/finj', 5000,
	'{"Authorization": "Bearer {{secret:inj}}"}');
SELECT orch_define_sequence('hf_inj', '[{"name": "call", "kind": "http", "endpoint": "finj"}]');
SELECT job_id AS inj FROM orch_submit_event('hf_inj', 'test:http', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'inj');
SELECT j.status, j.last_error, h.outcome, h.error FROM orchestrator.sequence_jobs j
JOIN orchestrator.step_history h ON h.job_id = j.id WHERE j.id = :'inj';
SELECT count(*) AS requests_sent FROM standin_requests('/functions/v1/finj');
WITH allr AS (SELECT jsonb_array_elements(standin('GET', '/_control/requests')) AS r)
SELECT count(*) AS injected FROM allr WHERE r->'headers' ? 'x-injected';
DELETE FROM orchestrator.secrets WHERE name = 'inj';
ALTER TABLE orchestrator.secrets ADD CONSTRAINT secrets_value_single_line CHECK (value !~ '[\r\n]');

-- the workers lived through all of it
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND datname = current_database();
