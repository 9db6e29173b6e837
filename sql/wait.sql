--
-- wait: steps that wait, with the workers running.  A signal step takes a
-- signal sent before it waits, or wakes for one sent while it waits (by
-- job id or by key); its timeout fails or skips it; a sleep step sleeps
-- for an interval or until a time in the state; waiting holds no worker
-- and is not an attempt; a cancel ends a wait.  Approval requests nobody
-- answers expire: skip, cancel or fail, and the user is told.
--
SET timezone = 'UTC';
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
SELECT standin('POST', '/_control/reset');
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, max_notifications_per_hour) VALUES (:'ada', :'org_a', 1000)
ON CONFLICT (user_id) DO UPDATE SET max_notifications_per_hour = 1000;

CREATE FUNCTION public.wait_noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION public.wait_echo(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('got', state->'outputs'->'reply') $$;

-- bad definitions: a clear error each, naming the step and field
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal", "signal": "has space"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal", "signal": "s", "timeout": "soon"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal", "signal": "s", "timeout": "-1 day"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal", "signal": "s", "on_timeout": "skip"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal", "signal": "s", "timeout": "1 day", "on_timeout": "retry"}]')$$);
SELECT test_error($q$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal", "signal": "s", "key": "$$$"}]')$q$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "signal", "signal": "s", "function": "wait_noop"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "sleep"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "sleep", "for": "1 day", "until": "$.x"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "sleep", "for": "2 years"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "sleep", "for": 5}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "sql", "function": "wait_noop", "for": "1 day"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "sql", "function": "wait_noop", "requires_approval": true, "approval": {"timeout": "never"}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "w", "kind": "sql", "function": "wait_noop", "requires_approval": true, "approval": {"on_timeout": "approve"}}]')$$);

-- a signal step: the signal's payload becomes its output; a signal sent
-- before the job waits is kept for it
SELECT orch_define_sequence('wait_reply', '[
  {"name": "reply", "kind": "signal", "signal": "prospect_replied"},
  {"name": "after", "kind": "sql", "function": "wait_echo"}]');
SELECT orch_pause('event_type', 'wait_reply');
SELECT job_id AS early FROM orch_submit_event('wait_reply', 'test', :'org_a', :'ada', '{"n": 1}') \gset
SELECT test_wait_for($$SELECT run_at = 'infinity' FROM orchestrator.sequence_jobs WHERE id = '$$ || :'early' || $$'$$);
SELECT orch_signal(:'early', 'prospect_replied', '{"text": "sounds good"}') IS NULL AS stored_for_later;
SELECT orch_resume('event_type', 'wait_reply');
SELECT test_wait_job(:'early');
SELECT context->'outputs'->'after' AS after FROM orchestrator.sequence_jobs WHERE id = :'early';

-- sent while the job waits: the job holds no worker, then wakes at once
SELECT job_id AS waiting FROM orch_submit_event('wait_reply', 'test', :'org_a', :'ada', '{"n": 2}') \gset
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.waits WHERE job_id = '$$ || :'waiting' || $$'$$);
SELECT status, lease_owner IS NULL AS no_lease, run_at = 'infinity' AS until_signalled
FROM orchestrator.sequence_jobs WHERE id = :'waiting';
SELECT step_name, outcome, error FROM orchestrator.step_history WHERE job_id = :'waiting' ORDER BY id;
SELECT orch_signal(:'waiting', 'prospect_replied', '{"text": "call me"}') = :'waiting' AS woke_it;
SELECT test_wait_job(:'waiting');
SELECT context->'outputs'->'reply' AS reply,
       (context->'execution_metadata'->>'steps_attempted')::int AS attempted
FROM orchestrator.sequence_jobs WHERE id = :'waiting';
SELECT count(*) AS waits_left FROM orchestrator.waits;
SELECT s.name, s.delivered_to = :'waiting' AS delivered, s.sent_by::text FROM orchestrator.signals s
WHERE s.job_id = :'waiting';

-- by key: whichever job waits on the key gets it, once
SELECT orch_define_sequence('wait_thread', '[
  {"name": "reply", "kind": "signal", "signal": "email_reply", "key": "$.event.payload.thread"}]');
SELECT job_id AS keyed FROM orch_submit_event('wait_thread', 'test', :'org_a', :'ada', '{"thread": "t-42"}') \gset
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.waits WHERE key = 't-42'$$);
SELECT orch_signal_key('t-41', 'email_reply', '{"wrong": true}') IS NULL AS nobody_waits_on_t41;
SELECT orch_signal_key('t-42', 'email_reply', '{"body": "yes"}') = :'keyed' AS woke_the_waiter;
SELECT test_wait_job(:'keyed');
SELECT context->'outputs'->'reply' AS reply FROM orchestrator.sequence_jobs WHERE id = :'keyed';
SELECT key, delivered_to IS NULL AS undelivered FROM orchestrator.signals WHERE key LIKE 't-4%' ORDER BY key;

-- two signals sent to a key before its first waiter runs: each of its two
-- waiters gets one
SELECT job_id AS kw1 FROM orch_submit_event('wait_thread', 'test', :'org_a', :'ada', '{"thread": "t-50", "n": 1}') \gset
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.waits WHERE key = 't-50'$$);
SELECT job_id AS kw2 FROM orch_submit_event('wait_thread', 'test', :'org_a', :'ada', '{"thread": "t-50", "n": 2}') \gset
SELECT test_wait_for($$SELECT count(*) = 2 FROM orchestrator.waits WHERE key = 't-50'$$);
BEGIN;
SELECT orch_signal_key('t-50', 'email_reply', '{"reply": 1}') = :'kw1' AS first_to_oldest,
       orch_signal_key('t-50', 'email_reply', '{"reply": 2}') = :'kw1' AS second_too;
COMMIT;
SELECT test_wait_job(:'kw1') AS kw1, test_wait_job(:'kw2') AS kw2;
SELECT count(DISTINCT delivered_to) AS two_jobs FROM orchestrator.signals WHERE key = 't-50';

-- the timeout: fail (on_failure decides) or skip
SELECT orch_define_sequence('wait_timeout_fail', '[
  {"name": "reply", "kind": "signal", "signal": "never_sent", "timeout": "1 second"}]');
SELECT orch_define_sequence('wait_timeout_skip', '[
  {"name": "reply", "kind": "signal", "signal": "never_sent", "timeout": "1 second", "on_timeout": "skip"},
  {"name": "after", "kind": "sql", "function": "wait_noop"}]');
SELECT job_id AS tfail FROM orch_submit_event('wait_timeout_fail', 'test', :'org_a', :'ada', '{}') \gset
SELECT job_id AS tskip FROM orch_submit_event('wait_timeout_skip', 'test', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'tfail') AS tfail, test_wait_job(:'tskip') AS tskip;
SELECT j.id = :'tfail' AS failing, h.outcome, h.error
FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE j.id IN (:'tfail', :'tskip') AND h.step_name = 'reply' AND h.outcome <> 'deferred' ORDER BY 1 DESC;

-- a sleep, for an interval or until a time in the state; a time already
-- past does not sleep
SELECT orch_define_sequence('wait_sleep_for', '[
  {"name": "nap", "kind": "sleep", "for": "1 second"}, {"name": "after", "kind": "sql", "function": "wait_noop"}]');
SELECT orch_define_sequence('wait_sleep_until', '[
  {"name": "nap", "kind": "sleep", "until": "$.event.payload.at"}, {"name": "after", "kind": "sql", "function": "wait_noop"}]');
SELECT job_id AS nap FROM orch_submit_event('wait_sleep_for', 'test', :'org_a', :'ada', '{}') \gset
SELECT job_id AS nap_until FROM orch_submit_event('wait_sleep_until', 'test', :'org_a', :'ada',
	jsonb_build_object('at', clock_timestamp() + interval '1.5 seconds')) \gset
SELECT job_id AS nap_past FROM orch_submit_event('wait_sleep_until', 'test', :'org_a', :'ada', '{"at": "2020-01-01T00:00:00Z"}') \gset
SELECT job_id AS nap_bad FROM orch_submit_event('wait_sleep_until', 'test', :'org_a', :'ada', '{"at": "tea time"}') \gset
SELECT test_wait_job(:'nap') AS nap, test_wait_job(:'nap_until') AS nap_until, test_wait_job(:'nap_past') AS nap_past,
       test_wait_job(:'nap_bad') AS nap_bad;
-- each slept until its time: the step ended no sooner, and the job was deferred meanwhile
SELECT j.id = :'nap' AS for_interval,
       (h.output->>'slept_until')::timestamptz >= j.created_at + interval '1 second' AS slept_long_enough,
       h.finished_at >= (h.output->>'slept_until')::timestamptz AS woke_after,
       (SELECT count(*) FROM orchestrator.step_history d WHERE d.job_id = j.id AND d.outcome = 'deferred') AS deferrals
FROM orchestrator.sequence_jobs j JOIN orchestrator.step_history h ON h.job_id = j.id AND h.step_name = 'nap' AND h.outcome = 'succeeded'
WHERE j.id IN (:'nap', :'nap_until') ORDER BY 1 DESC;
SELECT (SELECT count(*) FROM orchestrator.step_history d WHERE d.job_id = :'nap_past' AND d.outcome = 'deferred') AS past_deferrals;
SELECT last_error FROM orchestrator.sequence_jobs WHERE id = :'nap_bad';

-- a cancel ends a wait; a signal to a finished job is refused
SELECT job_id AS cancelled FROM orch_submit_event('wait_reply', 'test', :'org_a', :'ada', '{"n": 3}') \gset
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.waits WHERE job_id = '$$ || :'cancelled' || $$'$$);
SELECT orch_cancel_job(:'cancelled');
SELECT count(*) AS waits_left FROM orchestrator.waits WHERE job_id = :'cancelled';
SELECT test_error(format($$SELECT orch_signal(%L, 'prospect_replied')$$, :'cancelled'));
SELECT test_error($$SELECT orch_signal('00000000-0000-0000-0000-000000000000', 'prospect_replied')$$);
SELECT test_error(format($$SELECT orch_signal(%L, 'bad name')$$, :'waiting'));
SELECT test_error(format($$SELECT orch_signal(%L, 'x', '[1]')$$, :'waiting'));
SELECT test_error($$SELECT orch_signal(NULL, 'x')$$);
SELECT test_error($$SELECT orch_signal_key('', 'x')$$);
-- a PostgREST caller signals only its own user's jobs
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-0000000000a2", "role": "authenticated"}';
CREATE ROLE wait_submitter IN ROLE orchestrator_submitter;
SET ROLE wait_submitter;
SELECT test_error(format($$SELECT orch_signal(%L, 'prospect_replied')$$, :'early'));
SELECT test_error($$SELECT orch_signal_key('t-42', 'email_reply')$$);
RESET ROLE;
RESET request.jwt.claims;
DROP ROLE wait_submitter;

-- approvals nobody answers expire: skip the step, cancel the job, or fail
-- the step; the user is told in Slack each time
SELECT orch_define_sequence('wait_appr', '[
  {"name": "gated", "kind": "sql", "function": "wait_noop", "requires_approval": true,
   "approval": {"timeout": "1 second", "on_timeout": "skip"}},
  {"name": "after", "kind": "sql", "function": "wait_noop"}]');
SELECT orch_define_sequence('wait_appr_cancel', '[
  {"name": "gated", "kind": "sql", "function": "wait_noop", "requires_approval": true,
   "approval": {"timeout": "1 second", "on_timeout": "cancel"}}]');
SELECT orch_define_sequence('wait_appr_fail', '[
  {"name": "gated", "kind": "sql", "function": "wait_noop", "requires_approval": true,
   "approval": {"timeout": "1 second", "on_timeout": "fail"}}]');
SELECT job_id AS askip FROM orch_submit_event('wait_appr', 'test', :'org_a', :'ada', '{}') \gset
SELECT job_id AS acancel FROM orch_submit_event('wait_appr_cancel', 'test', :'org_a', :'ada', '{}') \gset
SELECT job_id AS afail FROM orch_submit_event('wait_appr_fail', 'test', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'askip') AS askip, test_wait_job(:'acancel', '{cancelled,completed,failed}') AS acancel,
       test_wait_job(:'afail') AS afail;
SELECT j.event_type, a.status, a.resolved_via, a.on_timeout,
       a.expires_at - a.created_at BETWEEN interval '1 second' AND interval '2 seconds' AS one_second
FROM orchestrator.slack_pending_actions a JOIN orchestrator.sequence_jobs j ON j.id = a.job_id
WHERE a.job_id IN (:'askip', :'acancel', :'afail') ORDER BY 1;
SELECT j.event_type, h.step_name, h.kind, h.outcome, h.error
FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE h.job_id IN (:'askip', :'acancel', :'afail') AND h.step_name = 'gated' AND h.outcome <> 'awaiting_approval'
ORDER BY 1, h.id;
SELECT test_wait_for($$SELECT count(*) = 3 FROM orchestrator.sequence_jobs
                       WHERE event_type = 'orchestrator:approval_expired' AND status = 'completed'$$);
SELECT r->'body'->>'text' AS told
FROM standin_requests('/api/chat.postMessage') r
WHERE r->'body'->>'text' LIKE 'Nobody answered%' ORDER BY 1;
