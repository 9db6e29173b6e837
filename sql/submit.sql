--
-- submit: every outcome of orch_submit_event, every bad input, and rollback
--
SET timezone = 'UTC';
\set org_a '00000000-0000-0000-0000-00000000000a'
\set org_b '00000000-0000-0000-0000-00000000000b'
\set ada '00000000-0000-0000-0000-0000000000a1'
\set quincy '00000000-0000-0000-0000-0000000000a2'
\set bob '00000000-0000-0000-0000-0000000000b1'

CREATE FUNCTION public.noop(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT '{}'::jsonb $$;
SELECT orch_define_sequence('ping', '[{"name": "noop", "kind": "sql", "function": "noop"}]');

-- accepted: a job exists, runnable now, pinned to version 1
SELECT outcome, job_id IS NOT NULL AS has_job, run_at IS NOT NULL AS has_run_at, reason
FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 1}');
SELECT event_type, event_source, sequence_version, chain_depth, trigger_payload,
       event_chain, context->'event'->'payload' AS state_payload
FROM orchestrator.sequence_jobs WHERE trigger_payload = '{"n": 1}';

-- duplicate: same type, org, user and payload inside the window; points at the first job
SELECT outcome, job_id = (SELECT id FROM orchestrator.sequence_jobs WHERE trigger_payload = '{"n": 1}') AS same_job, reason
FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 1}');
-- another payload, or another user, is not a duplicate
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 2}');
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', :'quincy', '{"n": 1}');
-- a caller-given dedupe key makes different payloads duplicates
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 3}', dedupe_key => 'msg-77');
SELECT outcome, reason FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 4}', dedupe_key => 'msg-77');
-- a zero window turns deduplication off
SET orchestrator.dedupe_window = 0;
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 1}');
RESET orchestrator.dedupe_window;

-- skipped: unknown org, unknown user, user of another org
SELECT outcome, job_id, reason FROM orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-0000000000ff', :'ada', '{}');
SELECT outcome, job_id, reason FROM orch_submit_event('ping', 'test:sql', :'org_a', '00000000-0000-0000-0000-0000000000ff', '{}');
SELECT outcome, job_id, reason FROM orch_submit_event('ping', 'test:sql', :'org_a', :'bob', '{}');
-- skipped: no sequence defined for the type
SELECT outcome, job_id, reason FROM orch_submit_event('nobody_listens', 'test:sql', :'org_a', :'ada', '{}');
-- skipped: event type disabled for the org (and only for that org)
INSERT INTO orchestrator.notification_feature_settings (org_id, feature_key, is_enabled) VALUES (:'org_a', 'ping', false);
SELECT outcome, reason FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 10}');
SELECT outcome, reason FROM orch_submit_event('ping', 'test:sql', :'org_b', :'bob', '{"n": 10}');
UPDATE orchestrator.notification_feature_settings SET is_enabled = true WHERE org_id = :'org_a';
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 10}');
-- skipped: budget spent for this billing period
INSERT INTO orchestrator.cost_budgets (org_id, monthly_budget_usd) VALUES (:'org_b', 1.00);
INSERT INTO orchestrator.cost_ledger (org_id, cost_usd) VALUES (:'org_b', 0.60);
SELECT outcome, reason FROM orch_submit_event('ping', 'test:sql', :'org_b', :'bob', '{"n": 11}');
INSERT INTO orchestrator.cost_ledger (org_id, cost_usd) VALUES (:'org_b', 0.40);
SELECT orchestrator.budget_exceeded(:'org_b');
SELECT outcome, job_id, reason FROM orch_submit_event('ping', 'test:sql', :'org_b', :'bob', '{"n": 12}');
-- last month's spending does not count
UPDATE orchestrator.cost_ledger SET created_at = date_trunc('month', now(), 'UTC') - interval '1 day' WHERE org_id = :'org_b';
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_b', :'bob', '{"n": 12}');

-- deferred: inside quiet hours in the user's time zone the job waits for the window's end
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, quiet_hours_start, quiet_hours_end)
VALUES (:'quincy', :'org_a', 'Asia/Tokyo',
        ((now() AT TIME ZONE 'Asia/Tokyo') - interval '1 hour')::time,
        ((now() AT TIME ZONE 'Asia/Tokyo') + interval '2 hours')::time);
SELECT outcome, reason, run_at > now() + interval '119 minutes' AND run_at <= now() + interval '2 hours' AS waits_for_window_end
FROM orch_submit_event('ping', 'test:sql', :'org_a', :'quincy', '{"n": 20}');
SELECT status, run_at > now() AS in_future FROM orchestrator.sequence_jobs WHERE trigger_payload = '{"n": 20}';
-- quiet hours come before the budget: an org over budget still has its events deferred, not dropped
INSERT INTO orchestrator.cost_ledger (org_id, cost_usd, step_name) VALUES (:'org_b', 5.00, 'quiet-test');
UPDATE orchestrator.users SET org_id = :'org_b' WHERE id = :'quincy';
UPDATE orchestrator.slack_user_preferences SET org_id = :'org_b' WHERE user_id = :'quincy';
SELECT orchestrator.budget_exceeded(:'org_b') AS org_b_over_budget;
SELECT outcome, reason FROM orch_submit_event('ping', 'test:sql', :'org_b', :'quincy', '{"n": 21}');
UPDATE orchestrator.users SET org_id = :'org_a' WHERE id = :'quincy';
UPDATE orchestrator.slack_user_preferences SET org_id = :'org_a' WHERE user_id = :'quincy';
DELETE FROM orchestrator.cost_ledger WHERE step_name = 'quiet-test';
-- the quiet-hours rule, piece by piece (overnight windows wrap past midnight)
UPDATE orchestrator.slack_user_preferences SET timezone = 'UTC', quiet_hours_start = '22:00', quiet_hours_end = '07:00' WHERE user_id = :'quincy';
SELECT orchestrator.next_active_time(:'quincy', '2026-03-02 23:30+00') AS at_2330,
       orchestrator.next_active_time(:'quincy', '2026-03-02 03:00+00') AS at_0300,
       orchestrator.next_active_time(:'quincy', '2026-03-02 12:00+00') AS at_noon,
       orchestrator.next_active_time(:'quincy', '2026-03-02 07:00+00') AS at_0700;
UPDATE orchestrator.slack_user_preferences SET timezone = 'America/New_York', quiet_hours_start = '12:00', quiet_hours_end = '13:30' WHERE user_id = :'quincy';
SELECT orchestrator.next_active_time(:'quincy', '2026-07-01 16:15+00') AS ny_lunch;
-- an unknown time zone is rejected when stored
SELECT test_error($$UPDATE orchestrator.slack_user_preferences SET timezone = 'Mars/Olympus' WHERE user_id = '00000000-0000-0000-0000-0000000000a2'$$);
DELETE FROM orchestrator.slack_user_preferences;

-- chain depth: follow-ups up to depth 3, a fourth level is skipped with a warning
SELECT job_id AS d1 FROM orch_submit_event('ping', 'test:chain', :'org_a', :'ada', '{"chain": 1}') \gset
SELECT job_id AS d2 FROM orch_submit_event('ping', 'test:chain', :'org_a', :'ada', '{"chain": 2}', :'d1') \gset
SELECT job_id AS d3 FROM orch_submit_event('ping', 'test:chain', :'org_a', :'ada', '{"chain": 3}', :'d2') \gset
SELECT chain_depth, event_chain->>'parent' = :'d2' AS parent_linked, parent_job_id = :'d2' AS parent_column
FROM orchestrator.sequence_jobs WHERE id = :'d3';
SELECT outcome, job_id, reason FROM orch_submit_event('ping', 'test:chain', :'org_a', :'ada', '{"chain": 4}', :'d3');
-- follow-ups are linked both ways: each parent lists its children
SELECT chain_depth, jsonb_array_length(event_chain->'children') AS children,
       CASE id WHEN :'d1' THEN event_chain->'children' ? :'d2' WHEN :'d2' THEN event_chain->'children' ? :'d3' END AS child_linked
FROM orchestrator.sequence_jobs WHERE id IN (:'d1', :'d2', :'d3') ORDER BY chain_depth;
-- a follow-up cannot cross into another organisation
SELECT test_error(format($$SELECT orch_submit_event('ping', 'test:chain', '00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-0000000000b1', '{}', %L)$$, :'d1'));

-- every outcome above is in the event log
SELECT outcome, reason, count(*) FROM orchestrator.event_log GROUP BY 1, 2 ORDER BY 1, 2;
-- events that made no job keep their payload; accepted ones point at their job
SELECT count(*) FILTER (WHERE outcome IN ('skipped', 'duplicate') AND payload IS NULL) AS unqueued_without_payload,
       count(*) FILTER (WHERE outcome IN ('accepted', 'deferred') AND job_id IS NULL) AS accepted_without_job
FROM orchestrator.event_log;

-- bad input: clear errors, nothing written
SELECT count(*) AS events_before FROM orchestrator.event_log \gset
SELECT test_error($$SELECT orch_submit_event(NULL, 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}')$$);
SELECT test_error($$SELECT orch_submit_event('ping', NULL, '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}')$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', NULL, '00000000-0000-0000-0000-0000000000a1', '{}')$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', NULL, '{}')$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', NULL)$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '[1, 2]')$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '"text"')$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'null')$$);
SELECT test_error($$SELECT orch_submit_event('meeting ended', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}')$$);
SELECT test_error($$SELECT orch_submit_event('', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}')$$);
SELECT test_error($$SELECT orch_submit_event('ping', '', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}')$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{}', '00000000-0000-0000-0000-0000000000ff')$$);
SET orchestrator.max_payload_bytes = 100;
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', jsonb_build_object('blob', repeat('x', 200)))$$);
RESET orchestrator.max_payload_bytes;
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', 'not-a-uuid', '00000000-0000-0000-0000-0000000000a1', '{}')$$);
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{bad json')$$);
SELECT count(*) - :events_before AS new_events FROM orchestrator.event_log;

-- an ordinary role cannot submit; the submitter role can
CREATE ROLE test_nobody;
CREATE ROLE test_submitter IN ROLE orchestrator_submitter;
SET ROLE test_nobody;
SELECT test_error($$SELECT orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{"n": 30}')$$);
SELECT test_error($$SELECT count(*) FROM orchestrator.sequence_jobs$$);
RESET ROLE;
SET ROLE test_submitter;
SELECT outcome FROM orch_submit_event('ping', 'test:sql', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{"n": 31}');
RESET ROLE;

-- rollback leaves no job and no log row
SELECT count(*) AS jobs_before FROM orchestrator.sequence_jobs \gset
SELECT count(*) AS events_before FROM orchestrator.event_log \gset
BEGIN;
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 40}');
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', '00000000-0000-0000-0000-0000000000ff', '{"n": 40}');
ROLLBACK;
SELECT (SELECT count(*) FROM orchestrator.sequence_jobs) - :jobs_before AS new_jobs,
       (SELECT count(*) FROM orchestrator.event_log) - :events_before AS new_events;
-- and after the rollback the same event is not a duplicate of what never happened
SELECT outcome FROM orch_submit_event('ping', 'test:sql', :'org_a', :'ada', '{"n": 40}');

-- orch_submit_events: many events at once, each with the outcome it would
-- get alone, in order.  The batch and the same events one by one, each in
-- a transaction rolled back, give the same outcomes, reasons and
-- duplicates-of (by position).
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, quiet_hours_start, quiet_hours_end)
VALUES (:'quincy', :'org_a', 'UTC', ((now() AT TIME ZONE 'UTC') - interval '1 hour')::time,
        ((now() AT TIME ZONE 'UTC') + interval '1 hour')::time);
SELECT job_id AS earlier FROM orch_submit_event('ping', 'test:batch', :'org_a', :'ada', '{"b": 0}') \gset
CREATE TEMP TABLE batch_in AS
SELECT * FROM (VALUES
	(1, :'ada'::uuid, '{"b": 1}'::jsonb, NULL::text),
	(2, :'ada', '{"b": 1}', NULL),                        -- the same as 1
	(3, '00000000-0000-0000-0000-0000000000ff', '{"b": 2}', NULL), -- nobody
	(4, :'quincy', '{"b": 3}', NULL),                     -- quiet hours
	(5, :'ada', '{"b": 4}', 'key-x'),
	(6, :'ada', '{"b": 5}', 'key-x'),                     -- the same key as 5
	(7, :'ada', '{"b": 0}', NULL),                        -- submitted before the batch
	(8, :'ada', '{"b": 6, "transcript": "long text"}', NULL)) v(ord, user_id, payload, dedupe_key);
CREATE FUNCTION pg_temp.outcomes(r jsonb, earlier text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_agg(jsonb_build_array(e->'outcome', e->'reason', e->'run_at' IS NULL OR e->'run_at' = 'null',
	       (SELECT min((f->>'ord')::int) FROM jsonb_array_elements(r) f WHERE f->'job_id' = e->'job_id' AND e->'job_id' <> 'null'),
	       e->'job_id' = to_jsonb(earlier)) ORDER BY (e->>'ord')::int)
	FROM jsonb_array_elements(r) e
$$;
BEGIN;
SELECT pg_temp.outcomes(jsonb_agg(to_jsonb(r)), :'earlier') AS batch FROM orch_submit_events('ping', 'test:batch', :'org_a',
	(SELECT array_agg(user_id ORDER BY ord) FROM batch_in), (SELECT array_agg(payload ORDER BY ord) FROM batch_in),
	(SELECT array_agg(dedupe_key ORDER BY ord) FROM batch_in)) r \gset
ROLLBACK;
BEGIN;
SELECT pg_temp.outcomes(jsonb_agg(to_jsonb(s) || jsonb_build_object('ord', b.ord)), :'earlier') AS alone
FROM batch_in b, LATERAL orch_submit_event('ping', 'test:batch', :'org_a', b.user_id, b.payload, NULL, b.dedupe_key) s \gset
ROLLBACK;
SELECT :'batch'::jsonb = :'alone'::jsonb AS same_as_alone, :'batch'::jsonb AS outcomes;
-- committed: the jobs, and one log row per event in the order given
SELECT max(id) AS log_before FROM orchestrator.event_log \gset
SELECT ord, outcome, job_id IS NOT NULL AS has_job, run_at IS NOT NULL AS has_run_at, reason
FROM orch_submit_events('ping', 'test:batch', :'org_a',
	(SELECT array_agg(user_id ORDER BY ord) FROM batch_in), (SELECT array_agg(payload ORDER BY ord) FROM batch_in),
	(SELECT array_agg(dedupe_key ORDER BY ord) FROM batch_in));
SELECT outcome, reason, job_id IS NOT NULL AS has_job, payload FROM orchestrator.event_log WHERE id > :log_before ORDER BY id;
SELECT trigger_payload, context->'event'->'payload' AS state_payload, chain_depth, status IN ('pending', 'in_progress', 'completed') AS queued
FROM orchestrator.sequence_jobs WHERE event_source = 'test:batch' AND trigger_payload->>'b' IN ('1', '6') ORDER BY trigger_payload->>'b';
-- and an event identical to one of the batch, submitted alone, is its duplicate
SELECT outcome FROM orch_submit_event('ping', 'test:batch', :'org_a', :'ada', '{"b": 1}');
-- an empty batch, and bad batches
SELECT count(*) AS none FROM orch_submit_events('ping', 'test:batch', :'org_a', '{}', '{}');
SELECT test_error($$SELECT * FROM orch_submit_events('ping', 'test:batch', '00000000-0000-0000-0000-00000000000a', '{00000000-0000-0000-0000-0000000000a1}', '{}')$$);
SELECT test_error($$SELECT * FROM orch_submit_events('ping', 'test:batch', '00000000-0000-0000-0000-00000000000a', '{00000000-0000-0000-0000-0000000000a1}', '{"{}"}', '{a,b}')$$);
SELECT test_error($$SELECT * FROM orch_submit_events('ping', 'test:batch', '00000000-0000-0000-0000-00000000000a', '{NULL}', '{"{}"}')$$);
SELECT test_error($$SELECT * FROM orch_submit_events('ping', 'test:batch', '00000000-0000-0000-0000-00000000000a', '{00000000-0000-0000-0000-0000000000a1}', '{"[1]"}')$$);
SELECT test_error($$SELECT * FROM orch_submit_events('ping', 'test:batch', '00000000-0000-0000-0000-00000000000a', '{00000000-0000-0000-0000-0000000000a1}', NULL)$$);
SELECT test_error($$SELECT * FROM orch_submit_events('slack_approval_received', 'test:batch', '00000000-0000-0000-0000-00000000000a', '{00000000-0000-0000-0000-0000000000a1}', '{"{}"}')$$);
SELECT test_error($$SELECT * FROM orch_submit_events('bad type!', 'test:batch', '00000000-0000-0000-0000-00000000000a', '{00000000-0000-0000-0000-0000000000a1}', '{"{}"}')$$);
-- a payload nested deeper than orchestrator.max_json_depth (64) is refused
-- with its own SQLSTATE, 5,000 levels with a transcript inside as well;
-- 64 levels are accepted
SELECT test_error(format($$SELECT orch_submit_event('ping', 'test:deep', %L, %L, %L)$$, :'org_a', :'ada',
	'{"a": ' || repeat('[', 4999) || '{"transcript": "x"}' || repeat(']', 4999) || '}'));
SELECT test_error(format($$SELECT orch_submit_event('ping', 'test:deep', %L, %L, %L)$$, :'org_a', :'ada',
	'{"a": ' || repeat('[', 64) || repeat(']', 64) || '}'));
SELECT test_error(format($$SELECT * FROM orch_submit_events('ping', 'test:deep', %L, ARRAY[%L]::uuid[], ARRAY[%L]::jsonb[])$$,
	:'org_a', :'ada', '{"a": ' || repeat('[', 64) || repeat(']', 64) || '}'));
BEGIN;
SELECT outcome FROM orch_submit_event('ping', 'test:deep', :'org_a', :'ada', ('{"a": ' || repeat('[', 63) || repeat(']', 63) || '}')::jsonb);
SET LOCAL orchestrator.max_json_depth = 200;
SELECT outcome FROM orch_submit_event('ping', 'test:deep', :'org_a', :'ada', ('{"a": ' || repeat('[', 64) || repeat(']', 64) || '}')::jsonb);
ROLLBACK;

-- each distinct event takes a dedupe lock of its own (300 here), plus the
-- org's in share mode: unrelated events never share a lock, so they never
-- wait for each other (shared locks made bulk submits deadlock)
BEGIN;
SELECT count(*) FILTER (WHERE s.outcome IN ('accepted', 'deferred')) AS queued
FROM generate_series(1, 300) g, LATERAL orch_submit_event('ping', 'test:many', :'org_a', :'ada', jsonb_build_object('g', g)) s;
SELECT count(*) FILTER (WHERE objsubid = 20274) AS event_locks, count(*) FILTER (WHERE objsubid = 20273) AS org_locks
FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
ROLLBACK;
DELETE FROM orchestrator.slack_user_preferences;

-- every accepted job runs to completion
SELECT test_wait_for($$SELECT count(*) = 0 FROM orchestrator.sequence_jobs
                      WHERE event_type = 'ping' AND status IN ('pending', 'in_progress') AND run_at <= now()$$);
SELECT status, count(*) FROM orchestrator.sequence_jobs WHERE event_type = 'ping' GROUP BY 1 ORDER BY 1;
