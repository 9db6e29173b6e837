--
-- notify: Slack delivery through chat.postMessage, addressed by
-- slack_user_mappings, bound by quiet hours and max_notifications_per_hour,
-- which defer and never drop
--
SET timezone = 'UTC';
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
\set quincy '00000000-0000-0000-0000-0000000000a2'
SELECT standin('POST', '/_control/reset');

-- the failure notices of earlier tests, queued while no "slack" endpoint
-- existed, wait out a 60 s retry backoff: cancelled, so that none reaches
-- the stand-in during this test or a later one, however slow the server
DO $$ BEGIN
	PERFORM orch_cancel_job(id) FROM orchestrator.sequence_jobs
	WHERE event_type = 'orchestrator:failure_notice' AND status IN ('pending', 'in_progress');
END $$;

SELECT orch_set_secret('slack_bot_token', 'xoxb-test-5511-secret');
SELECT orch_define_endpoint('slack', current_setting('test.standin') || '/api/chat.postMessage', 5000,
	'{"Authorization": "Bearer {{secret:slack_bot_token}}"}');
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id, slack_team_id)
VALUES (:'ada', :'org_a', 'U0ADA', 'T0ACME');

-- validation: a notify step needs a message; the endpoint defaults to "slack"
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "n", "kind": "notify"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "n", "kind": "notify", "text": 5}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "n", "kind": "sql", "function": "noop", "text": "hi"}]')$$);

-- the message comes from a function (Block Kit) or from "text"
CREATE FUNCTION public.meeting_summary(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object(
		'text', format('Meeting %s: %s action items', state->'event'->'payload'->>'meeting_id',
		               jsonb_array_length(state->'event'->'payload'->'items')),
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'header', 'text', jsonb_build_object('type', 'plain_text', 'text', 'Meeting recap')),
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn',
				'text', format('*%s* action items', jsonb_array_length(state->'event'->'payload'->'items'))))))
$$;
SELECT orch_define_sequence('meeting_recap', '[
  {"name": "slack-post-meeting", "kind": "notify", "function": "meeting_summary"},
  {"name": "ping", "kind": "notify", "text": "All done for meeting"}]');
SELECT steps->0->>'endpoint' AS default_endpoint FROM orchestrator.sequence_definitions WHERE event_type = 'meeting_recap';
SELECT job_id AS n FROM orch_submit_event('meeting_recap', 'webhook:meetingbaas', :'org_a', :'ada',
	'{"meeting_id": "m-7", "items": ["a", "b", "c"]}') \gset
SELECT test_wait_job(:'n');
SELECT step_name, outcome, http_status, output->>'ok' AS ok, output->>'channel' AS channel
FROM orchestrator.step_history WHERE job_id = :'n' ORDER BY id;
-- what Slack received: chat.postMessage to the mapped user, with blocks, the bot token
SELECT r->'body'->>'channel' AS channel, r->'body'->>'text' AS text,
       jsonb_array_length(r->'body'->'blocks') AS blocks, r->'body'->'blocks'->0->>'type' AS first_block,
       r->'headers'->>'authorization' = 'Bearer xoxb-test-5511-secret' AS token_sent,
       r->'headers' ? 'idempotency-key' AS idempotent
FROM standin_requests('/api/chat.postMessage') r ORDER BY (r->>'seq')::int;
SELECT status, count(*) FROM orchestrator.notification_log WHERE job_id = :'n' GROUP BY 1;

-- quiet hours: the message is deferred to the end of the window, not dropped.
-- The event is accepted while the user is awake; its first step (as if time
-- passed) starts the user's quiet hours, so the notify step meets them.
CREATE FUNCTION public.start_quiet_hours(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, quiet_hours_start, quiet_hours_end)
	VALUES ((state->'event'->>'user_id')::uuid, (state->'event'->>'org_id')::uuid, 'UTC',
	        ((now() AT TIME ZONE 'UTC') - interval '1 hour')::time, ((now() AT TIME ZONE 'UTC') + interval '1 hour')::time);
	SELECT '{"quiet": true}'::jsonb
$$;
SELECT orch_define_sequence('quiet_note', '[
  {"name": "night-falls", "kind": "sql", "function": "start_quiet_hours", "condition": "$.event.payload.quiet == true"},
  {"name": "brief", "kind": "notify", "text": "Morning brief"}]');
SELECT job_id AS q FROM orch_submit_event('quiet_note', 'cron:morning', :'org_a', :'ada', '{"quiet": true}') \gset
SELECT test_wait_for(format($$SELECT EXISTS (SELECT 1 FROM orchestrator.step_history WHERE job_id = %L AND outcome = 'deferred')$$, :'q'));
SELECT j.status, j.attempts, j.current_step, j.run_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' AS until_window_end,
       regexp_replace(h.error, 'until .*', 'until T') AS note
FROM orchestrator.sequence_jobs j JOIN orchestrator.step_history h ON h.job_id = j.id AND h.outcome = 'deferred' WHERE j.id = :'q';
SELECT count(*) AS slack_requests_while_quiet FROM standin_requests('/api/chat.postMessage') r WHERE r->'body'->>'text' = 'Morning brief';
-- when the window ends (here: the preferences change and the job is retried) it is delivered
DELETE FROM orchestrator.slack_user_preferences WHERE user_id = :'ada';
SELECT orch_retry_job(:'q');
SELECT test_wait_job(:'q');
SELECT step_name, outcome FROM orchestrator.step_history WHERE job_id = :'q' AND kind <> 'operator' ORDER BY id;

-- max_notifications_per_hour: the third message in the hour waits
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, max_notifications_per_hour)
VALUES (:'ada', :'org_a', 'UTC', 3);
SELECT count(*) AS sent_in_last_hour FROM orchestrator.notification_log
WHERE user_id = :'ada' AND sent_at > now() - interval '1 hour' AND status <> 'failed';
SELECT job_id AS rl FROM orch_submit_event('quiet_note', 'cron:morning', :'org_a', :'ada', '{"n": 2}') \gset
SELECT test_wait_for(format($$SELECT EXISTS (SELECT 1 FROM orchestrator.step_history WHERE job_id = %L AND outcome = 'deferred')$$, :'rl'));
SELECT j.status, j.run_at > now() + interval '50 minutes' AS waits_for_the_hour, regexp_replace(h.error, 'until .*', 'until T') AS note
FROM orchestrator.sequence_jobs j JOIN orchestrator.step_history h ON h.job_id = j.id AND h.outcome = 'deferred' WHERE j.id = :'rl';
SELECT orch_cancel_job(:'rl');
DELETE FROM orchestrator.slack_user_preferences WHERE user_id = :'ada';

-- a user with no Slack mapping: the step fails and says why
SELECT job_id AS nm FROM orch_submit_event('quiet_note', 'cron:morning', :'org_a', :'quincy', '{}') \gset
SELECT test_wait_job(:'nm');
SELECT status, regexp_replace(last_error, '[0-9a-f-]{36}', '<uuid>') AS last_error FROM orchestrator.sequence_jobs WHERE id = :'nm';

-- Slack says ok: false: the step fails, and the message does not count against the rate
SELECT standin('POST', '/_control/behave', '{"path": "/api/chat.postMessage", "mode": "json", "body": {"ok": false, "error": "channel_not_found"}, "times": 1}');
SELECT job_id AS bad FROM orch_submit_event('quiet_note', 'cron:morning', :'org_a', :'ada', '{"n": 3}') \gset
SELECT test_wait_job(:'bad');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'bad';
SELECT status FROM orchestrator.notification_log WHERE job_id = :'bad';

-- the bot token is nowhere in stored state
SELECT count(*) AS rows_with_token FROM (
	SELECT context::text || COALESCE(last_error, '') AS t FROM orchestrator.sequence_jobs
	UNION ALL SELECT COALESCE(output::text, '') || COALESCE(error, '') FROM orchestrator.step_history
	UNION ALL SELECT COALESCE(payload::text, '') FROM orchestrator.event_log) s
WHERE t LIKE '%xoxb-test-5511-secret%';
