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

-- held writes: a worker's batch writes its jobs' step results together,
-- before it commits.  Driven here by hand in one transaction (the workers
-- cannot see its jobs until it commits), the order given.
\set ada '00000000-0000-0000-0000-0000000000a1'
CREATE FUNCTION public.js_cancel_job(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM orch_cancel_job(COALESCE(state->'event'->'payload'->>'other',
	                                 state->'execution_metadata'->>'sequence_job_id')::uuid);
	IF state->'event'->'payload' ? 'then_fail' THEN
		RAISE EXCEPTION 'changed my mind';
	END IF;
	RETURN '{"cancelled": true}';
END $$;
SELECT orch_define_sequence('js_three', '[{"name": "first", "kind": "sql", "function": "js_noop"},
  {"name": "cancel", "kind": "sql", "function": "js_cancel_job", "on_failure": "continue"},
  {"name": "last", "kind": "sql", "function": "js_noop"}]');
SELECT orch_define_sequence('js_canceller', '[{"name": "cancel", "kind": "sql", "function": "js_cancel_job", "on_failure": "continue"}]');
CREATE FUNCTION public.js_run_batch(ids uuid[]) RETURNS integer LANGUAGE sql AS $$
	SELECT orchestrator.run_claimed_jobs(array_agg(c.job_id ORDER BY array_position(ids, c.job_id)),
	                                     array_agg(c.fencing_token ORDER BY array_position(ids, c.job_id)))
	FROM orchestrator.claim_jobs(1000) c WHERE c.job_id = ANY (ids)
$$;
CREATE FUNCTION public.js_history(job uuid) RETURNS TABLE (step_name text, kind text, outcome text, error text)
LANGUAGE sql AS $$
	SELECT h.step_name, h.kind, h.outcome, h.error FROM orchestrator.step_history h WHERE h.job_id = job ORDER BY h.id
$$;
BEGIN;
-- a: a job of three steps, whose second cancels it
SELECT job_id AS ja FROM orch_submit_event('js_three', 'test:job_state', :'org_a', :'ada', '{"n": 1}') \gset
-- b: the same, but its second step fails after cancelling: the cancel is undone with the step
SELECT job_id AS jb FROM orch_submit_event('js_three', 'test:job_state', :'org_a', :'ada', '{"n": 2, "then_fail": true}') \gset
-- c: a one-step job, completed in the batch; d: a job of the batch cancels c after that
SELECT job_id AS jc FROM orch_submit_event('js_flow', 'test:job_state', :'org_a', :'ada', '{"n": 3}') \gset
SELECT job_id AS jd FROM orch_submit_event('js_canceller', 'test:job_state', :'org_a', :'ada', jsonb_build_object('other', :'jc')) \gset
SELECT js_run_batch(ARRAY[:'ja', :'jb', :'jc', :'jd']::uuid[]) AS ran;
COMMIT;
-- a: its first step recorded before the cancel, nothing after it
SELECT status, context->'outputs' AS outputs, context->'steps_completed' AS done FROM orchestrator.sequence_jobs WHERE id = :'ja';
SELECT * FROM js_history(:'ja');
-- b: every step recorded, the cancel rolled back with its step, the job completed
SELECT status, context->'outputs' AS outputs, context->'execution_metadata'->'steps_failed' AS failed FROM orchestrator.sequence_jobs WHERE id = :'jb';
SELECT * FROM js_history(:'jb');
-- c was completed when d's step looked at it; d's step failed on that
SELECT status FROM orchestrator.sequence_jobs WHERE id = :'jc';
SELECT * FROM js_history(:'jc');
SELECT status, regexp_replace(last_error, '[0-9a-f-]{36}', '<uuid>') AS last_error FROM orchestrator.sequence_jobs WHERE id = :'jd';

-- the fold of a step result into the state (state.c)
SELECT orchestrator.advance_state(orchestrator.initial_state(:'ja', 'js_flow', 'test', :'org_a', :'ada', '{}', NULL, 0),
	'draft', 'succeeded', '{"text": "hi"}', 12.3456, 1,
	'[{"outcome": "accepted"}, {"outcome": "deferred"}, {"outcome": "duplicate"}, 7]', 0.25)
	- 'event' #- '{execution_metadata,sequence_job_id}' AS succeeded;
SELECT s->'pending_approvals' AS pending, s->'execution_metadata'->'steps_attempted' AS attempted,
       s->'execution_metadata'->'approval_gates_hit' AS gates, s->'outputs' AS outputs
FROM orchestrator.advance_state('{"pending_approvals": [{"a": 1}], "outputs": {"x": 1}, "steps_completed": [],
	"queued_followups": [], "cost_accumulated": 0, "execution_metadata": {"steps_attempted": 2, "approval_gates_hit": 0}}',
	'send', 'awaiting_approval', '{"b": 2}', 0, 3) s;
SELECT orchestrator.advance_state('{"outputs": {"draft": 1}, "other": [1]}', 'draft', 'succeeded', '"again"', 1, 2) AS replaced;
SELECT test_error($$SELECT orchestrator.advance_state('[1]', 'x', 'succeeded', NULL, 0, 1)$$);

-- transcripts go at any depth, ids stay; a value without them is returned as it is
SELECT orchestrator.without_transcripts('{"transcript": "long", "meeting": {"transcript_id": 7, "notes": [{"transcript_text": "x", "k": 1}, "transcript"]}, "transcript_body": {"a": [1]}}') AS stripped;
SELECT orchestrator.without_transcripts('[{"transcript": 1}, 2]') AS in_array,
       orchestrator.without_transcripts('"transcript"') AS scalar;
-- nesting deeper than any recursion would allow
SELECT position('transcript' IN orchestrator.without_transcripts((repeat('{"a": ', 5000) || '{"transcript": 1}' || repeat('}', 5000))::jsonb)::text) = 0 AS deep_stripped;
