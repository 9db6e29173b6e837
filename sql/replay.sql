--
-- replay: dead letters (failed jobs, grouped by kind of error),
-- orch_retry_jobs, which runs a filtered set of them again, and
-- orch_fork_job, a new job from a step of an old one with an edited state
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

-- the CRM is down until the gate opens
CREATE TABLE public.replay_gate (open boolean NOT NULL);
INSERT INTO public.replay_gate VALUES (false);
CREATE FUNCTION public.replay_prepare(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"prepared": true}'::jsonb $$;
CREATE FUNCTION public.replay_push(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF NOT (SELECT open FROM public.replay_gate) THEN
		RAISE EXCEPTION 'CRM rejected deal % after % ms', state->'event'->'payload'->>'deal',
			100 + (state->'event'->'payload'->>'n')::int;
	END IF;
	RETURN jsonb_build_object('pushed', state->'event'->'payload'->>'deal');
END $$;
CREATE FUNCTION public.replay_quota(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'quota exceeded';
END $$;
SELECT orch_define_sequence('rp_sync', '[
  {"name": "prepare", "kind": "sql", "function": "replay_prepare"},
  {"name": "push", "kind": "sql", "function": "replay_push", "on_failure": "stop"}]');
SELECT orch_define_sequence('rp_quota', '[{"name": "push", "kind": "sql", "function": "replay_quota", "on_failure": "stop"}]');

SELECT count(*) AS submitted FROM generate_series(1, 4) n,
	LATERAL orch_submit_event('rp_sync', 'test:replay', :'org_a', :'ada', jsonb_build_object('deal', 'd' || n, 'n', n)) s
WHERE s.outcome = 'accepted';
SELECT job_id AS quota FROM orch_submit_event('rp_quota', 'test:replay', :'org_a', :'ada', '{}') \gset
SELECT test_wait_for($$SELECT count(*) = 5 FROM orchestrator.sequence_jobs
	WHERE event_type IN ('rp_sync', 'rp_quota') AND status = 'failed'$$);

-- each failed job is a dead letter, with the step it failed at and its error
SELECT event_type, step, step_index, last_error, error_class
FROM orchestrator.dead_letters WHERE event_type IN ('rp_sync', 'rp_quota') ORDER BY event_type, last_error;
-- errors of one kind group together, whatever their particulars
SELECT event_type, step, error_class, jobs, cardinality(latest_jobs) AS latest, first_failed <= last_failed AS ordered
FROM orchestrator.dead_letter_groups WHERE event_type IN ('rp_sync', 'rp_quota') ORDER BY event_type;
SELECT orchestrator.error_class('job 01a2429f-0182-7732-827c-1e7afe4745fb: HTTP 503 after 3 tries') AS error_class;

-- a filter is an object of known keys with values of the right type
SELECT test_error($$SELECT orch_retry_jobs(NULL)$$);
SELECT test_error($$SELECT orch_retry_jobs('[]')$$);
SELECT test_error($$SELECT orch_retry_jobs('{"colour": "red"}')$$);
SELECT test_error($$SELECT orch_retry_jobs('{"event_type": 5}')$$);
SELECT test_error($$SELECT orch_retry_jobs('{"org_id": "not-a-uuid"}')$$);
SELECT test_error($$SELECT orch_retry_jobs('{"limit": 0}')$$);
SELECT test_error($$SELECT orch_retry_jobs('{"limit": "many"}')$$);
-- nothing matches: nothing is retried
SELECT orch_retry_jobs('{"event_type": "rp_sync", "failed_after": "2999-01-01"}') AS future;
SELECT orch_retry_jobs('{"event_type": "rp_sync", "step": "prepare"}') AS wrong_step;
SELECT orch_retry_jobs('{"error": "no such error"}') AS wrong_error;

-- the CRM is back: one job by error text and a limit, then the rest of its
-- class; the quota failure is left alone
UPDATE public.replay_gate SET open = true;
SELECT orch_retry_jobs('{"event_type": "rp_sync", "error": "CRM REJECTED", "limit": 1}') AS first;
SELECT orch_retry_jobs(jsonb_build_object('error_class', error_class, 'org_id', :'org_a', 'step', 'push'))
	AS rest_of_class
FROM orchestrator.dead_letter_groups WHERE event_type = 'rp_sync';
SELECT orch_retry_jobs('{"event_type": "rp_sync"}') AS none_left_failed;
SELECT test_wait_for($$SELECT count(*) = 4 FROM orchestrator.sequence_jobs
	WHERE event_type = 'rp_sync' AND status = 'completed'$$);
-- each ran again from the step it failed at: prepare once, push twice
SELECT h.step_name, h.outcome, count(*) FROM orchestrator.step_history h
JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE j.event_type = 'rp_sync' GROUP BY 1, 2 ORDER BY 1, 2;
SELECT event_type, step, job_id = :'quota' AS is_quota FROM orchestrator.dead_letters WHERE event_type IN ('rp_sync', 'rp_quota');

-- fork: a completed job again from its push step, with the first step's
-- output and the event's payload edited; the old job is left as it was
SELECT id AS done FROM orchestrator.sequence_jobs
WHERE event_type = 'rp_sync' AND trigger_payload->>'deal' = 'd2' \gset
SELECT orch_fork_job(:'done', 'push', '{"outputs": {"prepare": {"prepared": "by hand"}},
	"event": {"payload": {"deal": "d9", "n": 9, "transcript": "never stored"}}, "note": "re-pushed"}') AS forked \gset
SELECT test_wait_job(:'forked');
SELECT j.event_type, j.org_id = :'org_a' AS same_org, j.current_step,
       j.context->'outputs'->'prepare' AS prepare, j.context->'outputs'->'push' AS push,
       j.context->'event'->'payload' AS payload, j.context->>'note' AS note,
       j.context->'execution_metadata'->>'forked_from' = :'done' AS linked,
       j.context->'execution_metadata'->>'sequence_job_id' = j.id::text AS names_itself
FROM orchestrator.sequence_jobs j WHERE j.id = :'forked';
-- it ran only from the step it was forked at
SELECT step_name, kind, outcome, replace(replace(error, :'done', '<old>'), :'forked', '<new>') AS note
FROM orchestrator.step_history WHERE job_id = :'forked' ORDER BY id;
-- the old job: unchanged, and its timeline names the fork
SELECT status, context->'outputs'->'push' AS push FROM orchestrator.sequence_jobs WHERE id = :'done';
SELECT entry, step, replace(replace(detail->>'note', :'done', '<old>'), :'forked', '<new>') AS note
FROM orch_job_timeline(:'done') WHERE entry = 'operator forked';
-- a failed job forks too; the fork fails the same way and the old stays a dead letter
SELECT orch_fork_job(:'quota', 'push') AS quota_fork \gset
SELECT test_wait_job(:'quota_fork');
SELECT count(*) AS quota_dead_letters FROM orchestrator.dead_letters WHERE event_type = 'rp_quota';

-- what a fork refuses
SELECT test_error($$SELECT orch_fork_job(NULL, 'push')$$);
SELECT test_error(format('SELECT orch_fork_job(%L, %L)', :'done', 'no-such-step'));
SELECT test_error($$SELECT orch_fork_job('00000000-0000-0000-0000-000000000000', 'push')$$);
SELECT test_error(format('SELECT orch_fork_job(%L, %L, %L)', :'done', 'push', '[1]'));
SELECT test_error(format('SELECT orch_fork_job(%L, %L, %L)', :'done', 'push', '{"execution_metadata": {}}'));
SELECT test_error(format('SELECT orch_fork_job(%L, %L, %L)', :'done', 'push', '{"outputs": [1]}'));
SELECT test_error(format('SELECT orch_fork_job(%L, %L, %L)', :'done', 'push', '{"event": {"org_id": "x"}}'));
SELECT test_error(format('SELECT orch_fork_job(%L, %L, %L)', :'done', 'push',
	'{"context": ' || repeat('[', 70) || repeat(']', 70) || '}'));

-- who may: the admin role, not PUBLIC
SELECT has_function_privilege('orchestrator_admin', 'orch_retry_jobs(jsonb)', 'EXECUTE') AS admin_may,
       has_function_privilege('public', 'orch_retry_jobs(jsonb)', 'EXECUTE') AS public_may,
       has_function_privilege('orchestrator_admin', 'orch_fork_job(uuid, text, jsonb)', 'EXECUTE') AS admin_forks,
       has_function_privilege('public', 'orch_fork_job(uuid, text, jsonb)', 'EXECUTE') AS public_forks,
       has_table_privilege('orchestrator_admin', 'orchestrator.dead_letter_groups', 'SELECT') AS admin_reads;
