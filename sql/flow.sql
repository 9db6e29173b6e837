--
-- flow: flow control with the workers running: priorities, a concurrency
-- limit, an endpoint's rate limit, pause, drain and resume; every bad
-- argument (the races between claims are in test/specs/flow.spec)
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

-- the claim order: a minute earlier per point of priority
SELECT orchestrator.claim_order('2026-01-01 12:00+00', 0::smallint) = '2026-01-01 12:00+00' AS zero_keeps,
       orchestrator.claim_order('2026-01-01 12:00+00', 90::smallint) = '2026-01-01 10:30+00' AS ninety_minutes,
       orchestrator.claim_order('infinity', 5::smallint) = 'infinity' AS infinity_stays;

-- bad arguments: a clear error each
SELECT test_error($$SELECT orch_set_priority('meeting_ended', 1001)$$);
SELECT test_error($$SELECT orch_set_priority(NULL, 1)$$);
SELECT test_error($$SELECT orch_submit_event('meeting_ended', 'test', '00000000-0000-0000-0000-00000000000a',
	'00000000-0000-0000-0000-0000000000a1', '{}', priority => -1)$$);
SELECT test_error($$SELECT orch_pause('team', 'x')$$);
SELECT test_error($$SELECT orch_pause('all', 'x')$$);
SELECT test_error($$SELECT orch_pause('event_type')$$);
SELECT test_error($$SELECT orch_pause('org', 'acme')$$);
SELECT test_error($$SELECT orch_pause('all', NULL, NULL)$$);
SELECT test_error($$SELECT orch_resume('event_type', 'never_paused')$$);
SELECT test_error($$SELECT orch_set_concurrency_limit('event_type', 'x', 0)$$);
SELECT test_error($$SELECT orch_set_concurrency_limit('all', NULL, 1)$$);
SELECT test_error($$SELECT orch_set_concurrency_limit('user', 'bob', 1)$$);
SELECT test_error($$SELECT orch_set_rate_limit('nowhere', 1)$$);
SELECT test_error($$SELECT orch_set_rate_limit('slack', 0)$$);
SELECT test_error($$SELECT orch_set_rate_limit('slack', 'NaN')$$);

-- priority: the event's, else its type's, else 0
CREATE FUNCTION public.flow_noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT orch_define_sequence('flow_prio', '[{"name": "noop", "kind": "sql", "function": "flow_noop"}]');
SELECT orch_set_priority('flow_prio', 7);
SELECT job_id AS typed FROM orch_submit_event('flow_prio', 'test', :'org_a', :'ada', '{"n": 1}') \gset
SELECT job_id AS given FROM orch_submit_event('flow_prio', 'test', :'org_a', :'ada', '{"n": 2}', priority => 0) \gset
SELECT orch_define_sequence('flow_plain', '[{"name": "noop", "kind": "sql", "function": "flow_noop"}]');
SELECT job_id AS plain FROM orch_submit_event('flow_plain', 'test', :'org_a', :'ada', '{"n": 3}') \gset
SELECT j.id = :'typed' AS typed, j.id = :'given' AS given, j.priority
FROM orchestrator.sequence_jobs j WHERE j.id IN (:'typed', :'given', :'plain') ORDER BY j.priority DESC, j.id = :'given';
SELECT orch_set_priority('flow_prio', NULL);
SELECT count(*) AS priorities_left FROM orchestrator.priorities;

-- a concurrency limit of 1 per user: each job sees only itself in progress,
-- although a worker claims them all in one batch; they wait, then all run
CREATE TABLE public.flow_seen (job_id uuid, running bigint);
CREATE FUNCTION public.flow_count(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.flow_seen
	SELECT (state->'execution_metadata'->>'sequence_job_id')::uuid, count(*)
	FROM orchestrator.sequence_jobs j
	WHERE j.status = 'in_progress' AND j.user_id = (state->'event'->>'user_id')::uuid;
	SELECT '{}'::jsonb $$;
SELECT orch_define_sequence('flow_limited', '[{"name": "count", "kind": "sql", "function": "flow_count"}]');
SELECT orch_set_concurrency_limit('user', '*', 1);
SELECT * FROM orchestrator.flow_controls WHERE control = 'concurrency_limit';
SELECT count(*) FROM generate_series(1, 6) g,
	LATERAL orch_submit_event('flow_limited', 'test', :'org_a', :'ada', jsonb_build_object('n', g));
SELECT test_wait_for($$SELECT count(*) = 6 FROM orchestrator.sequence_jobs WHERE event_type = 'flow_limited' AND status = 'completed'$$);
SELECT count(*) AS runs, max(running) AS most_in_progress FROM public.flow_seen;
-- the waits were deferrals, not attempts, and no job is left waiting
SELECT count(*) > 0 AS waited, bool_and(h.error LIKE 'waiting for a slot: user:% is at its limit of 1 job(s) in progress') AS said_why
FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE j.event_type = 'flow_limited' AND h.outcome = 'deferred';
SELECT bool_and((j.context->'execution_metadata'->>'steps_attempted')::int = 1) AS one_attempt_each
FROM orchestrator.sequence_jobs j WHERE j.event_type = 'flow_limited';
SELECT count(*) AS still_waiting FROM orchestrator.flow_waits;
SELECT orch_set_concurrency_limit('user', '*', NULL);
SELECT count(*) AS limits_left FROM orchestrator.concurrency_limits;

-- an endpoint's rate limit: 4 requests a second across both workers; the
-- k-th request leaves no sooner than k quarter-seconds after the first
SELECT orch_define_endpoint('flow_rated', current_setting('test.standin') || '/functions/v1/generate-proposal', 5000, '{}');
SELECT orch_set_rate_limit('flow_rated', 4);
SELECT control, scope, key, setting FROM orchestrator.flow_controls WHERE control = 'rate_limit';
SELECT orch_define_sequence('flow_rated', '[{"name": "call", "kind": "http", "endpoint": "flow_rated"}]');
SELECT count(*) FROM generate_series(1, 9) g,
	LATERAL orch_submit_event('flow_rated', 'test', :'org_a', :'ada', jsonb_build_object('n', g));
SELECT test_wait_for($$SELECT count(*) = 9 FROM orchestrator.sequence_jobs WHERE event_type = 'flow_rated' AND status = 'completed'$$);
WITH s AS (SELECT h.started_at, row_number() OVER (ORDER BY h.started_at) - 1 AS k
           FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
           WHERE j.event_type = 'flow_rated' AND h.outcome = 'succeeded')
SELECT count(*) AS requests,
       bool_and(extract(epoch FROM s.started_at - f.first) >= s.k * 0.25 - 0.02) AS spaced
FROM s, (SELECT min(started_at) AS first FROM s) f;
SELECT count(*) > 0 AS deferred, bool_and(h.error LIKE 'endpoint "flow_rated" is at its rate limit%') AS said_why
FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE j.event_type = 'flow_rated' AND h.outcome = 'deferred';
SELECT orch_set_rate_limit('flow_rated', NULL);

-- pause: paused while its first step's request is out, a job waits before
-- its second step until orch_resume; a new job of the type does not start
SELECT standin('POST', '/_control/reset');
SELECT standin('POST', '/_control/behave', '{"path": "/functions/v1/flow-slow", "mode": "ok", "delay_ms": 3000}');
SELECT orch_define_endpoint('flow_slow', current_setting('test.standin') || '/functions/v1/flow-slow', 10000, '{}');
SELECT orch_define_sequence('flow_paused', '[{"name": "slow", "kind": "http", "endpoint": "flow_slow"},
                                              {"name": "after", "kind": "sql", "function": "flow_noop"}]');
SELECT job_id AS paused FROM orch_submit_event('flow_paused', 'test', :'org_a', :'ada', '{}') \gset
SELECT test_wait_for($$SELECT count(*) = 1 FROM standin_requests('/functions/v1/flow-slow')$$);
SELECT orch_pause('event_type', 'flow_paused');
SELECT job_id AS later FROM orch_submit_event('flow_paused', 'test', :'org_a', :'ada', '{"n": 2}') \gset
SELECT test_wait_for($$SELECT count(*) = 2 FROM orchestrator.sequence_jobs
                       WHERE event_type = 'flow_paused' AND run_at = 'infinity'$$);
SELECT j.id = :'paused' AS first, j.status, j.current_step, h.step_name,
       regexp_replace(h.error, 'since .*;', 'since <t>;') AS why
FROM orchestrator.sequence_jobs j
JOIN LATERAL (SELECT h.step_name, h.error FROM orchestrator.step_history h WHERE h.job_id = j.id AND h.outcome = 'deferred'
              ORDER BY h.id DESC LIMIT 1) h ON true
WHERE j.id IN (:'paused', :'later') ORDER BY 1 DESC;
SELECT control, scope, key, setting, waiting FROM orchestrator.flow_controls WHERE control = 'pause';
SELECT orch_resume('event_type', 'flow_paused') AS woken;
SELECT test_wait_job(:'paused');
SELECT test_wait_job(:'later');
-- a pause's deferral is not an attempt
SELECT (context->'execution_metadata'->>'steps_attempted')::int AS attempted FROM orchestrator.sequence_jobs WHERE id = :'paused';

-- drain: a job already started finishes; one that has not started waits
SELECT job_id AS started FROM orch_submit_event('flow_paused', 'test', :'org_a', :'ada', '{"n": 3}') \gset
SELECT test_wait_for($$SELECT count(*) = 3 FROM standin_requests('/functions/v1/flow-slow')$$);
SELECT orch_drain();
SELECT job_id AS unstarted FROM orch_submit_event('flow_prio', 'test', :'org_a', :'ada', '{"n": 9}') \gset
SELECT test_wait_job(:'started');
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.step_history WHERE job_id = '$$ || :'unstarted' || $$' AND outcome = 'deferred'$$);
SELECT status, current_step, run_at = 'infinity' AS held FROM orchestrator.sequence_jobs WHERE id = :'unstarted';
SELECT control, scope, key, setting, waiting FROM orchestrator.flow_controls WHERE control = 'pause';
SELECT orch_resume() AS woken;
SELECT test_wait_job(:'unstarted');
SELECT count(*) AS pauses_left FROM orchestrator.pauses;

-- a pause deleted by hand leaves its jobs held; orch_resume of its scope frees them
SELECT orch_pause('event_type', 'flow_prio');
SELECT job_id AS by_hand FROM orch_submit_event('flow_prio', 'test', :'org_a', :'ada', '{"n": 11}') \gset
SELECT test_wait_for($$SELECT run_at = 'infinity' FROM orchestrator.sequence_jobs WHERE id = '$$ || :'by_hand' || $$'$$);
DELETE FROM orchestrator.pauses;
SELECT orch_resume('event_type', 'flow_prio') AS woken;
SELECT test_wait_job(:'by_hand');
SELECT standin('POST', '/_control/reset');

-- a member of orchestrator_admin reads flow_controls
CREATE ROLE flow_operator IN ROLE orchestrator_admin;
SELECT orch_set_concurrency_limit('event_type', 'flow_prio', 5);
SELECT orch_pause('event_type', 'flow_nothing');
SET ROLE flow_operator;
SELECT control, scope, key, setting, waiting, running FROM orchestrator.flow_controls ORDER BY 1;
RESET ROLE;
SELECT orch_set_concurrency_limit('event_type', 'flow_prio', NULL);
DELETE FROM orchestrator.pauses;
DROP ROLE flow_operator;

-- only orchestrator_admin may use flow control, or give an event a priority
-- when acting as a user
CREATE ROLE flow_outsider IN ROLE orchestrator_submitter;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-0000000000a1", "role": "authenticated"}';
SET ROLE flow_outsider;
SELECT test_error($$SELECT orch_submit_event('flow_prio', 'test', '00000000-0000-0000-0000-00000000000a',
	'00000000-0000-0000-0000-0000000000a1', '{"n": 10}', priority => 1000)$$);
RESET request.jwt.claims;
SELECT test_error($$SELECT orch_pause()$$);
SELECT test_error($$SELECT orch_set_concurrency_limit('org', '*', 1)$$);
RESET ROLE;
DROP ROLE flow_outsider;
