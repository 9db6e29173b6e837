--
-- failure: on_failure stop | continue | retry, expect failures, errors inside
-- step functions (their writes roll back, the worker lives on)
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

CREATE TABLE public.failure_writes (job_id uuid, note text);
-- writes a row, then fails: the row must not survive
CREATE FUNCTION public.write_then_fail(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.failure_writes VALUES ((state->'execution_metadata'->>'sequence_job_id')::uuid, 'should vanish');
	RAISE EXCEPTION 'CRM update failed for meeting %', state->'event'->'payload'->>'meeting_id'
		USING ERRCODE = 'external_routine_exception', DETAIL = 'upstream said 503';
END $$;
CREATE FUNCTION public.write_ok(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.failure_writes VALUES ((state->'execution_metadata'->>'sequence_job_id')::uuid, 'kept');
	RETURN jsonb_build_object('done', true, 'failed_before', state->'execution_metadata'->'steps_failed');
END $$;
-- fails on its first two calls per job (a sequence survives the rollback)
CREATE SEQUENCE public.flaky_calls;
CREATE TABLE public.flaky_state (job_id uuid PRIMARY KEY, first_call bigint);
CREATE FUNCTION public.flaky(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	n bigint := nextval('public.flaky_calls');
BEGIN
	IF state->'event'->'payload'->>'flaky_from' IS NOT NULL
	   AND n < (state->'event'->'payload'->>'flaky_from')::bigint + 2 THEN
		RAISE EXCEPTION 'flaky failure (call %)', n - (state->'event'->'payload'->>'flaky_from')::bigint + 1;
	END IF;
	RETURN jsonb_build_object('succeeded_on_call', n - (state->'event'->'payload'->>'flaky_from')::bigint + 1);
END $$;
CREATE FUNCTION public.returns_null(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION public.wrong_shape(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"score": 0.2}'::jsonb $$;
CREATE FUNCTION public.dropped_later(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;

-- stop: the job fails at that step; later steps never run
SELECT orch_define_sequence('f_stop', '[
  {"name": "crm-update", "kind": "sql", "function": "write_then_fail", "on_failure": "stop"},
  {"name": "after", "kind": "sql", "function": "write_ok"}]');
SELECT job_id AS j_stop FROM orch_submit_event('f_stop', 'test:failure', :'org_a', :'ada', '{"meeting_id": "m-stop"}') \gset
SELECT test_wait_job(:'j_stop');
SELECT status, current_step, attempts, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_stop';
SELECT step_name, attempt, outcome, error FROM orchestrator.step_history WHERE job_id = :'j_stop' ORDER BY id;
SELECT context->'execution_metadata'->'steps_failed' AS failed, context->'steps_completed' AS done FROM orchestrator.sequence_jobs WHERE id = :'j_stop';
SELECT count(*) AS leftover_writes FROM public.failure_writes WHERE job_id = :'j_stop';

-- continue: the failure is logged and the sequence proceeds
SELECT orch_define_sequence('f_continue', '[
  {"name": "enrich", "kind": "sql", "function": "write_then_fail", "on_failure": "continue"},
  {"name": "after", "kind": "sql", "function": "write_ok"}]');
SELECT job_id AS j_cont FROM orch_submit_event('f_continue', 'test:failure', :'org_a', :'ada', '{"meeting_id": "m-cont"}') \gset
SELECT test_wait_job(:'j_cont');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_cont';
SELECT step_name, outcome, output FROM orchestrator.step_history WHERE job_id = :'j_cont' ORDER BY id;
SELECT note FROM public.failure_writes WHERE job_id = :'j_cont';
SELECT context->'execution_metadata'->'steps_attempted' AS attempted, context->'execution_metadata'->'steps_failed' AS failed,
       context->'execution_metadata'->'steps_completed' AS completed, context->'outputs' ? 'enrich' AS has_enrich_output
FROM orchestrator.sequence_jobs WHERE id = :'j_cont';

-- retry: attempts with exponential backoff through run_at; the third try succeeds
SELECT orch_define_sequence('f_retry', '[
  {"name": "generate", "kind": "sql", "function": "flaky", "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 50}}]');
SELECT nextval('public.flaky_calls') + 1 AS flaky_from \gset
SELECT job_id AS j_retry FROM orch_submit_event('f_retry', 'test:failure', :'org_a', :'ada', jsonb_build_object('flaky_from', :flaky_from)) \gset
SELECT test_wait_job(:'j_retry');
SELECT status, attempts, context->'outputs'->'generate' AS output FROM orchestrator.sequence_jobs WHERE id = :'j_retry';
SELECT attempt, outcome, error FROM orchestrator.step_history WHERE job_id = :'j_retry' ORDER BY id;
-- each retry waited at least its backoff: 50 ms, then 100 ms
SELECT attempt, started_at - lag(finished_at) OVER (ORDER BY id) >= make_interval(secs => 0.05 * 2 ^ (attempt - 2)) AS waited
FROM orchestrator.step_history WHERE job_id = :'j_retry' ORDER BY id;
SELECT context->'execution_metadata'->'steps_attempted' AS attempted, context->'execution_metadata'->'steps_failed' AS failed
FROM orchestrator.sequence_jobs WHERE id = :'j_retry';

-- retry with its attempts used up is a stop; the seed's default is one retry
SELECT orch_define_sequence('f_retry_out', '[
  {"name": "generate", "kind": "sql", "function": "write_then_fail", "on_failure": "retry", "retry": {"backoff_ms": 10}},
  {"name": "after", "kind": "sql", "function": "write_ok"}]');
SELECT job_id AS j_out FROM orch_submit_event('f_retry_out', 'test:failure', :'org_a', :'ada', '{"meeting_id": "m-out"}') \gset
SELECT test_wait_job(:'j_out');
SELECT status, attempts, current_step FROM orchestrator.sequence_jobs WHERE id = :'j_out';
SELECT step_name, attempt, outcome FROM orchestrator.step_history WHERE job_id = :'j_out' ORDER BY id;

-- expect: an output that does not match fails the step
SELECT orch_define_sequence('f_expect', '[
  {"name": "score", "kind": "sql", "function": "wrong_shape", "expect": "$.score >= 0.5"}]');
SELECT job_id AS j_exp FROM orch_submit_event('f_expect', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_exp');
SELECT status, last_error, context->'outputs' AS outputs FROM orchestrator.sequence_jobs WHERE id = :'j_exp';

-- a function returning NULL, and a function dropped after definition, fail their step
SELECT orch_define_sequence('f_null', '[{"name": "nothing", "kind": "sql", "function": "returns_null"}]');
SELECT job_id AS j_null FROM orch_submit_event('f_null', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_null');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_null';
SELECT orch_define_sequence('f_dropped', '[{"name": "gone", "kind": "sql", "function": "dropped_later"}]');
DROP FUNCTION public.dropped_later(jsonb);
SELECT job_id AS j_drop FROM orch_submit_event('f_dropped', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_drop');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_drop';

-- timeout_ms bounds a sql step: it is cancelled and fails, the worker goes on
CREATE FUNCTION public.too_slow(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(600);
	RETURN '{}';
END $$;
SELECT orch_define_sequence('f_timeout', '[
  {"name": "slow", "kind": "sql", "function": "too_slow", "timeout_ms": 200, "on_failure": "continue"},
  {"name": "after", "kind": "sql", "function": "write_ok"}]');
SELECT job_id AS j_slow FROM orch_submit_event('f_timeout', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_slow');
SELECT step_name, outcome, error FROM orchestrator.step_history WHERE job_id = :'j_slow' ORDER BY id;

-- none of this ended a worker: both are still there, and still run jobs
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker' AND datname = current_database();
SELECT job_id AS j_after FROM orch_submit_event('f_continue', 'test:failure', :'org_a', :'ada', '{"meeting_id": "m-after"}') \gset
SELECT test_wait_job(:'j_after');

-- a job whose sequence version was deleted under it fails cleanly
CREATE FUNCTION public.plain(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"plain": true}'::jsonb $$;
SELECT orch_define_sequence('f_gone_version', '[{"name": "a", "kind": "sql", "function": "plain"}]');
BEGIN;
SELECT job_id AS j_gonever FROM orch_submit_event('f_gone_version', 'test:failure', :'org_a', :'ada', '{}') \gset
DELETE FROM orchestrator.sequence_definitions WHERE event_type = 'f_gone_version';
COMMIT;
SELECT test_wait_job(:'j_gonever');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_gonever';

-- a step function replaced by one that returns something else fails its step
CREATE FUNCTION public.shape_shifter(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT orch_define_sequence('f_shifted', '[{"name": "a", "kind": "sql", "function": "shape_shifter"}]');
DROP FUNCTION public.shape_shifter(jsonb);
CREATE FUNCTION public.shape_shifter(state jsonb) RETURNS integer LANGUAGE sql AS $$ SELECT 42 $$;
SELECT job_id AS j_shift FROM orch_submit_event('f_shifted', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_shift');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_shift';

-- what a step does to its session does not outlive it: settings are undone,
-- temp tables are refused
CREATE FUNCTION public.meddle(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('search_path', 'pg_temp, pg_catalog', false);
	PERFORM set_config('synchronous_commit', 'off', false);
	RETURN jsonb_build_object('inside', current_setting('search_path'));
END $$;
CREATE FUNCTION public.observe(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('search_path', current_setting('search_path'), 'synchronous_commit', current_setting('synchronous_commit')) $$;
CREATE FUNCTION public.make_temp(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	CREATE TEMP TABLE sneaky (x int);
	RETURN '{}';
END $$;
SELECT orch_define_sequence('f_meddle', '[
  {"name": "meddle", "kind": "sql", "function": "meddle"},
  {"name": "observe", "kind": "sql", "function": "observe"},
  {"name": "temp", "kind": "sql", "function": "make_temp", "on_failure": "continue"}]');
SELECT job_id AS j_med FROM orch_submit_event('f_meddle', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_med');
SELECT context->'outputs' AS outputs, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_med';

-- a step that cancels its own job ends it; it does not loop
CREATE FUNCTION public.cancel_myself(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM orch_cancel_job((state->'execution_metadata'->>'sequence_job_id')::uuid);
	RETURN '{}';
END $$;
SELECT orch_define_sequence('f_self_cancel', '[
  {"name": "cancel", "kind": "sql", "function": "cancel_myself"},
  {"name": "never", "kind": "sql", "function": "plain"}]');
SELECT job_id AS j_self FROM orch_submit_event('f_self_cancel', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_self', '{cancelled,completed,failed}');
SELECT status, reclaims, lease_owner, last_error FROM orchestrator.sequence_jobs WHERE id = :'j_self';
SELECT kind, outcome FROM orchestrator.step_history WHERE job_id = :'j_self' ORDER BY id;

-- emails and bearer tokens in errors are masked before they are stored
CREATE FUNCTION public.leaky(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'CRM refused contact jane.doe@example.com with Authorization: Bearer eyJhbGciOi.abc-123';
END $$;
SELECT orch_define_sequence('f_leaky', '[{"name": "crm", "kind": "sql", "function": "leaky"}]');
SELECT job_id AS j_leak FROM orch_submit_event('f_leaky', 'test:failure', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_leak');
SELECT j.last_error, h.error FROM orchestrator.sequence_jobs j JOIN orchestrator.step_history h ON h.job_id = j.id WHERE j.id = :'j_leak';

-- a sequence halted by a failing step notifies its user with the error
-- context (orchestrator:failure_notice); a continued failure does not
SELECT n.trigger_payload->>'event_type' AS event_type, n.trigger_payload->>'step' AS step,
       n.trigger_payload->>'error' AS error, n.user_id = :'ada' AS to_ada, n.event_source
FROM orchestrator.sequence_jobs n
WHERE n.event_type = 'orchestrator:failure_notice'
  AND (n.trigger_payload->>'failed_job_id')::uuid IN (:'j_stop', :'j_leak', :'j_cont')
ORDER BY n.created_at;
SELECT count(*) AS notices_for_continue FROM orchestrator.sequence_jobs
WHERE event_type = 'orchestrator:failure_notice' AND trigger_payload->>'failed_job_id' = :'j_cont';
SELECT orchestrator.failure_message(jsonb_build_object('event', jsonb_build_object('payload',
	jsonb_build_object('event_type', 'meeting_ended', 'step', 'detect-intents', 'error', 'HTTP 500', 'failed_job_id', 'j1'))))->>'text' AS message;

-- an output nested deeper than orchestrator.max_json_depth fails its step
-- (54J01), and nothing of it reaches the state
CREATE FUNCTION public.too_deep(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT ('{"a": ' || repeat('[', 5000) || '{"transcript": "x"}' || repeat(']', 5000) || '}')::jsonb $$;
SELECT orch_define_sequence('f_deep', '[{"name": "deep", "kind": "sql", "function": "too_deep", "on_failure": "stop"}]');
SELECT job_id AS j_deep FROM orch_submit_event('f_deep', 'test:deep', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j_deep');
SELECT j.status, j.last_error, j.context->'outputs' ? 'deep' AS output_in_state
FROM orchestrator.sequence_jobs j WHERE j.id = :'j_deep';
