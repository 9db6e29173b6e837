--
-- operate: cancel, retry from a step, the timeline, pointing the engine at
-- an application's own tables
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
\set quincy '00000000-0000-0000-0000-0000000000a2'

CREATE TABLE public.gate (open boolean NOT NULL);
INSERT INTO public.gate VALUES (false);
CREATE FUNCTION public.gated(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF NOT (SELECT open FROM public.gate) THEN
		RAISE EXCEPTION 'gate closed';
	END IF;
	RETURN jsonb_build_object('passed', true);
END $$;
CREATE FUNCTION public.first(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"first": true}'::jsonb $$;
SELECT orch_define_sequence('op_flow', '[
  {"name": "prepare", "kind": "sql", "function": "first"},
  {"name": "deliver", "kind": "sql", "function": "gated"}]');

-- a failed job is retried from where it stopped once the cause is fixed
SELECT job_id AS j FROM orch_submit_event('op_flow', 'test:operate', :'org_a', :'ada', '{"k": 1}') \gset
SELECT test_wait_job(:'j');
SELECT status, current_step, last_error FROM orchestrator.sequence_jobs WHERE id = :'j';
UPDATE public.gate SET open = true;
SELECT orch_retry_job(:'j');
SELECT test_wait_job(:'j');
SELECT status, current_step, last_error, context->'steps_completed' AS done FROM orchestrator.sequence_jobs WHERE id = :'j';
-- the whole sequence again, from its first step
SELECT orch_retry_job(:'j', 'prepare');
SELECT test_wait_job(:'j');
SELECT entry, step, attempt FROM orch_job_timeline(:'j');
-- retry errors
SELECT test_error($$SELECT orch_retry_job(NULL)$$);
SELECT test_error($$SELECT orch_retry_job('00000000-0000-0000-0000-0000000000ff')$$);
SELECT test_error(format('SELECT orch_retry_job(%L)', :'j'));
SELECT test_error(format('SELECT orch_retry_job(%L, %L)', :'j', 'no-such-step'));

-- cancel: a deferred job is cancelled and never runs
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, quiet_hours_start, quiet_hours_end)
VALUES (:'quincy', :'org_a', 'UTC', ((now() AT TIME ZONE 'UTC') - interval '1 hour')::time,
        ((now() AT TIME ZONE 'UTC') + interval '1 hour')::time);
SELECT job_id AS c, outcome FROM orch_submit_event('op_flow', 'test:operate', :'org_a', :'quincy', '{"k": 2}') \gset
SELECT :'outcome' AS outcome;
SELECT orch_cancel_job(:'c');
SELECT status, finished_at IS NOT NULL AS finished FROM orchestrator.sequence_jobs WHERE id = :'c';
SELECT entry, step FROM orch_job_timeline(:'c');
SELECT test_error(format('SELECT orch_cancel_job(%L)', :'c'));
SELECT test_error($$SELECT orch_cancel_job('00000000-0000-0000-0000-0000000000ff')$$);
SELECT test_error($$SELECT orch_cancel_job(NULL)$$);
-- a cancelled job can be retried; it then runs (the quiet hours gate only submit)
SELECT orch_retry_job(:'c');
SELECT test_wait_job(:'c');
DELETE FROM orchestrator.slack_user_preferences;

-- the engine reads orgs and users from an application's own tables when told to
CREATE TABLE public.app_companies (company_id uuid PRIMARY KEY, title text);
CREATE TABLE public.app_profiles (profile_id uuid PRIMARY KEY, company uuid, full_name text, email text);
INSERT INTO public.app_companies VALUES ('00000000-0000-0000-0000-0000000000c0', 'Initech');
INSERT INTO public.app_profiles VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000c0', 'Peter', 'peter@initech.example');
SELECT outcome, reason FROM orch_submit_event('op_flow', 'test:operate', '00000000-0000-0000-0000-0000000000c0', '00000000-0000-0000-0000-0000000000c1', '{"k": 4}');
SELECT orch_use_table('orgs', 'public.app_companies', '{"id": "company_id", "name": "title"}');
SELECT orch_use_table('users', 'public.app_profiles', '{"id": "profile_id", "org_id": "company", "display_name": "full_name"}');
SELECT kind, relation, columns FROM orchestrator.table_mappings ORDER BY kind;
SELECT job_id AS m, outcome FROM orch_submit_event('op_flow', 'test:operate', '00000000-0000-0000-0000-0000000000c0', '00000000-0000-0000-0000-0000000000c1', '{"k": 4}') \gset
SELECT :'outcome' AS outcome;
SELECT test_wait_job(:'m');
-- tier 1 context came from the application's tables, without the email
SELECT context->'context'->'tier1'->'org'->>'name' AS org, context->'context'->'tier1'->'user' ? 'email' AS has_email,
       context->'context'->'tier1'->'user'->>'display_name' AS user_name
FROM orchestrator.sequence_jobs WHERE id = :'m';
-- the built-in orgs are no longer seen
SELECT outcome, reason FROM orch_submit_event('op_flow', 'test:operate', :'org_a', :'ada', '{"k": 5}');
SELECT orch_reapply_table_mappings();
SELECT test_error($$SELECT orch_use_table('widgets', 'public.app_companies')$$);
SELECT test_error($$SELECT orch_use_table('orgs', 'public.app_companies', '{"id": "no_such_column"}')$$);
-- back to the built-in tables
SELECT orch_use_table('orgs');
SELECT orch_use_table('users');
SELECT count(*) FROM orchestrator.table_mappings;
SELECT outcome FROM orch_submit_event('op_flow', 'test:operate', :'org_a', :'ada', '{"k": 5}');

-- stuck_jobs: jobs that will not move by themselves, each with its reason
-- (in rolled-back transactions, so no worker ever sees them)
SELECT count(*) AS stuck_now FROM orchestrator.stuck_jobs;
BEGIN;
SELECT job_id AS s1 FROM orch_submit_event('op_flow', 'test:stuck', :'org_a', :'ada', '{"k": 61}') \gset
SELECT job_id AS s2 FROM orch_submit_event('op_flow', 'test:stuck', :'org_a', :'ada', '{"k": 62}') \gset
SELECT job_id AS s3 FROM orch_submit_event('op_flow', 'test:stuck', :'org_a', :'ada', '{"k": 63}') \gset
SELECT job_id AS s4 FROM orch_submit_event('op_flow', 'test:stuck', :'org_a', :'ada', '{"k": 64}') \gset
SELECT job_id AS s5 FROM orch_submit_event('op_flow', 'test:stuck', :'org_a', :'ada', '{"k": 65}') \gset
-- leased to a process that does not exist; leased to a live one, lapsed
-- two minutes ago; waiting for an approval that has no request; and a
-- healthy lease
UPDATE orchestrator.sequence_jobs SET status = 'in_progress', lease_owner = 2147483000,
	lease_expires_at = now() + interval '1 hour' WHERE id = :'s1';
UPDATE orchestrator.sequence_jobs SET status = 'in_progress', lease_owner = pg_backend_pid(),
	lease_expires_at = now() - interval '2 minutes' WHERE id = :'s2';
UPDATE orchestrator.sequence_jobs SET status = 'awaiting_approval' WHERE id = :'s3';
UPDATE orchestrator.sequence_jobs SET status = 'in_progress', lease_owner = pg_backend_pid(),
	lease_expires_at = now() + interval '1 minute' WHERE id = :'s4';
-- and one whose open request was never queued for delivery to Slack
UPDATE orchestrator.sequence_jobs SET status = 'awaiting_approval' WHERE id = :'s5';
INSERT INTO orchestrator.slack_pending_actions (org_id, user_id, job_id, step_index, step_name, pattern, message)
VALUES (:'org_a', :'ada', :'s5', 0, 'first', 'email_draft', '{}');
SELECT CASE job_id WHEN :'s1' THEN 's1' WHEN :'s2' THEN 's2' WHEN :'s3' THEN 's3' WHEN :'s5' THEN 's5' ELSE 'other' END AS job,
       status, reason, regexp_replace(regexp_replace(detail, '[0-9a-f]{8}-[0-9a-f-]{27}', '<id>', 'g'), '[0-9]+', 'N', 'g') AS detail
FROM orchestrator.stuck_jobs ORDER BY 1;
ROLLBACK;

-- orchestrator.workers: the running workers, from shared memory, each with
-- its process and the HTTP requests it has in flight (none here)
SELECT test_wait_for($$SELECT count(*) = 2 FROM orchestrator.workers$$);
SELECT array_agg(w.worker ORDER BY w.worker) AS workers, sum(w.http_in_flight) AS in_flight,
       bool_and(a.backend_type = 'orchestrator worker') AS are_workers
FROM orchestrator.workers w JOIN pg_stat_activity a ON a.pid = w.pid;
