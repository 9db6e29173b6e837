--
-- entry: webhook tables (a trigger enqueues in the inserting transaction),
-- a set-based fan-out per user, pg_cron schedules
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set org_b '00000000-0000-0000-0000-00000000000b'
\set ada '00000000-0000-0000-0000-0000000000a1'

CREATE FUNCTION public.note_meeting(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('meeting', state->'event'->'payload'->>'meeting_id') $$;
SELECT orch_define_sequence('meeting_ended_hook', '[{"name": "note", "kind": "sql", "function": "note_meeting"}]');

-- the MeetingBaaS webhook lands in a table; the trigger submits each row
CREATE TABLE public.meetingbaas_webhooks (
	id serial PRIMARY KEY, org_id uuid, user_id uuid, meeting_id text, received_at timestamptz DEFAULT now());
CREATE TRIGGER enqueue AFTER INSERT ON public.meetingbaas_webhooks
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('meeting_ended_hook', 'webhook:meetingbaas');
INSERT INTO public.meetingbaas_webhooks (org_id, user_id, meeting_id) VALUES (:'org_a', :'ada', 'mb-1');
SELECT e.outcome, e.event_source, j.trigger_payload->>'meeting_id' AS meeting, j.trigger_payload ? 'received_at' AS whole_row
FROM orchestrator.event_log e JOIN orchestrator.sequence_jobs j ON j.id = e.job_id
WHERE e.event_type = 'meeting_ended_hook';
SELECT test_wait_for($$SELECT bool_and(status = 'completed') FROM orchestrator.sequence_jobs WHERE event_type = 'meeting_ended_hook'$$);
SELECT context->'outputs'->'note' AS output FROM orchestrator.sequence_jobs WHERE event_type = 'meeting_ended_hook';

-- the job exists if and only if the insert commits
BEGIN;
INSERT INTO public.meetingbaas_webhooks (org_id, user_id, meeting_id) VALUES (:'org_a', :'ada', 'mb-rolled-back');
SELECT count(*) AS jobs_inside FROM orchestrator.sequence_jobs WHERE trigger_payload->>'meeting_id' = 'mb-rolled-back';
ROLLBACK;
SELECT count(*) AS jobs_after_rollback FROM orchestrator.sequence_jobs WHERE trigger_payload->>'meeting_id' = 'mb-rolled-back';
SELECT count(*) AS events_after_rollback FROM orchestrator.event_log WHERE payload->>'meeting_id' = 'mb-rolled-back';

-- a row the engine cannot take is kept, and its skip is logged with the reason
INSERT INTO public.meetingbaas_webhooks (org_id, user_id, meeting_id) VALUES (:'org_a', NULL, 'mb-no-user');
SELECT count(*) AS row_kept FROM public.meetingbaas_webhooks WHERE meeting_id = 'mb-no-user';
SELECT outcome, reason, payload->>'meeting_id' AS meeting FROM orchestrator.event_log WHERE payload->>'meeting_id' = 'mb-no-user';
-- an unknown user is the usual logged skip
INSERT INTO public.meetingbaas_webhooks (org_id, user_id, meeting_id) VALUES (:'org_a', '00000000-0000-0000-0000-0000000000ff', 'mb-stranger');
SELECT outcome, reason FROM orchestrator.event_log WHERE payload->>'meeting_id' = 'mb-stranger';

-- other column names are given as arguments
CREATE TABLE public.email_webhooks (id serial, tenant uuid, rep uuid, thread text);
CREATE TRIGGER enqueue AFTER INSERT ON public.email_webhooks
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('meeting_ended_hook', 'webhook:email', 'tenant', 'rep');
INSERT INTO public.email_webhooks (tenant, rep, thread) VALUES (:'org_a', :'ada', 't-1');
SELECT outcome FROM orchestrator.event_log WHERE event_source = 'webhook:email';

-- a trigger set up wrongly is an error, named as such
CREATE TABLE public.bad_hooks (id serial, org_id uuid, user_id uuid);
CREATE TRIGGER enqueue BEFORE INSERT ON public.bad_hooks
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('meeting_ended_hook', 'webhook:x');
SELECT test_error($$INSERT INTO public.bad_hooks (org_id, user_id) VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1')$$);
DROP TRIGGER enqueue ON public.bad_hooks;
CREATE TRIGGER enqueue AFTER INSERT ON public.bad_hooks
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('meeting_ended_hook');
SELECT test_error($$INSERT INTO public.bad_hooks (org_id, user_id) VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1')$$);
DROP TRIGGER enqueue ON public.bad_hooks;
CREATE TRIGGER enqueue AFTER INSERT ON public.bad_hooks
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('meeting_ended_hook', 'webhook:x', 'company', 'owner');
SELECT test_error($$INSERT INTO public.bad_hooks (org_id, user_id) VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1')$$);

-- fan-out: one event per user whose org has the feature on
SELECT orch_define_sequence('morning_brief', '[{"name": "note", "kind": "sql", "function": "note_meeting"}]');
INSERT INTO orchestrator.notification_feature_settings (org_id, feature_key, is_enabled) VALUES (:'org_b', 'morning_brief', false)
ON CONFLICT (org_id, feature_key) DO UPDATE SET is_enabled = false;
SELECT (SELECT count(*) FROM orchestrator.users WHERE org_id = :'org_a') AS users_in_enabled_org;
SELECT * FROM orch_fan_out('morning_brief', 'cron:morning');
-- run again inside the dedupe window: every user's event is a duplicate
SELECT * FROM orch_fan_out('morning_brief', 'cron:morning');
SELECT count(DISTINCT user_id) AS users_with_a_brief FROM orchestrator.sequence_jobs WHERE event_type = 'morning_brief';

-- pg_cron is optional: without it, scheduling fails with a hint
SELECT test_error($$SELECT orch_schedule('brief', '0 8 * * 1-5', 'morning_brief')$$);
SELECT test_error($$SELECT orch_unschedule('brief')$$);
CREATE EXTENSION pg_cron;
SELECT orch_schedule('brief', '0 8 * * 1-5', 'morning_brief', 'cron:morning', '{"edition": "daily"}') > 0 AS scheduled;
SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'orch:%';
-- the scheduled command is the fan-out
SELECT command AS cron_command FROM cron.job WHERE jobname = 'orch:brief' \gset
SET orchestrator.dedupe_window = 0;
:cron_command;
RESET orchestrator.dedupe_window;
SELECT test_error($$SELECT orch_schedule('bad', '0 8 * * *', 'no such type!')$$);
SELECT orch_unschedule('brief');
SELECT count(*) AS orch_jobs_left FROM cron.job WHERE jobname LIKE 'orch:%';
SELECT test_error($$SELECT orch_unschedule('brief')$$);
DROP EXTENSION pg_cron;
