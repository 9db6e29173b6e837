--
-- job_state: the one way a job's status changes.  Every edge of the state
-- diagram is checked (src/README.md), a transition applies only while the
-- job is where its caller saw it, and it writes the row and its history
-- row together.
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set quincy '00000000-0000-0000-0000-0000000000a2'

CREATE FUNCTION public.js_noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT orch_define_sequence('js_flow', '[{"name": "only", "kind": "sql", "function": "js_noop"}]');

-- a job deferred by quiet hours: pending, and no worker will claim it now
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, quiet_hours_start, quiet_hours_end)
VALUES (:'quincy', :'org_a', 'UTC', ((now() AT TIME ZONE 'UTC') - interval '1 hour')::time,
        ((now() AT TIME ZONE 'UTC') + interval '1 hour')::time);
SELECT job_id AS j, outcome FROM orch_submit_event('js_flow', 'test:job_state', :'org_a', :'quincy', '{}') \gset
SELECT :'outcome' AS outcome;
SELECT fencing_token AS t0 FROM orchestrator.sequence_jobs WHERE id = :'j' \gset

-- edges that are not in the diagram are refused, and nothing is written
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'pending', 'completed', 'operator', 'cancelled', 0)$$, :'j'));
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'pending', 'failed', 'operator', 'cancelled', 0)$$, :'j'));
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'completed', 'cancelled', 'operator', 'cancelled', 0)$$, :'j'));
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'cancelled', 'failed', 'operator', 'cancelled', 0)$$, :'j'));
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'awaiting_approval', 'failed', 'operator', 'cancelled', 0)$$, :'j'));
-- an operator never grants a lease: only a claim moves a job into in_progress
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'pending', 'in_progress', 'operator', 'cancelled', 0)$$, :'j'));
-- statuses are names the engine knows; the job, statuses, kind and outcome are required
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'pending', 'done', 'operator', 'cancelled', 0)$$, :'j'));
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, NULL, 'cancelled', 'operator', 'cancelled', 0)$$, :'j'));
SELECT status, fencing_token = :t0 AS same_token, (SELECT count(*) FROM orchestrator.step_history h WHERE h.job_id = j.id) AS history
FROM orchestrator.sequence_jobs j WHERE id = :'j';

-- a legal edge from where the job is not: false, and nothing is written
SELECT orchestrator.transition_job(:'j', 'awaiting_approval', 'cancelled', 'operator', 'cancelled', 0);
SELECT orchestrator.transition_job(:'j', 'failed', 'pending', 'operator', 'retry_requested', 0);
SELECT status, fencing_token = :t0 AS same_token, (SELECT count(*) FROM orchestrator.step_history h WHERE h.job_id = j.id) AS history
FROM orchestrator.sequence_jobs j WHERE id = :'j';

-- a legal edge from where the job is: the row and one history row, together
SELECT orchestrator.transition_job(:'j', 'pending', 'cancelled', 'operator', 'cancelled', 0,
	p_new_token => true, p_note => 'by the job_state test');
SELECT status, fencing_token - :t0 AS token_bumped, finished_at IS NOT NULL AS finished,
       lease_owner IS NULL AND lease_expires_at IS NULL AS no_lease
FROM orchestrator.sequence_jobs WHERE id = :'j';
SELECT kind, outcome, step_index, error, fencing_token - :t0 AS token
FROM orchestrator.step_history WHERE job_id = :'j';
-- and from cancelled only a retry leads out
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'cancelled', 'completed', 'operator', 'cancelled', 0)$$, :'j'));

-- nobody but the engine's own SQL may move a job
SET ROLE orchestrator_admin;
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'cancelled', 'pending', 'operator', 'retry_requested', 0)$$, :'j'));
SET ROLE orchestrator_submitter;
SELECT test_error(format($$SELECT orchestrator.transition_job(%L, 'cancelled', 'pending', 'operator', 'retry_requested', 0)$$, :'j'));
RESET ROLE;

-- nothing in the install script writes a job or its history itself: every
-- such statement is in job_state.c
SELECT p.oid::regprocedure AS writes_jobs
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'orchestrator'
WHERE p.prosrc ~* '(update|insert\s+into)\s+orchestrator\.(sequence_jobs|step_history)';

DELETE FROM orchestrator.slack_user_preferences;
