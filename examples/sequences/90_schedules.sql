-- examples/sequences/90_schedules.sql (optional; not loaded by all.sql):
-- pg_cron schedules for the cron-sourced sequences.  Each fans out one event
-- per user whose org has the event type enabled; quiet hours defer, and a
-- repeat inside the dedupe window is refused.  Needs pg_cron in
-- shared_preload_libraries with cron.database_name set to this database.
-- Times are the server's (UTC with pg_cron's default cron.timezone).
--
-- pre_meeting is per meeting, not per user: every 5 minutes,
-- app.queue_pre_meeting_briefs submits it for the meetings starting 90
-- minutes later.

CREATE EXTENSION IF NOT EXISTS pg_cron;

SELECT orch_schedule('morning_brief', '0 7 * * 1-5', 'morning_brief', 'cron:morning');
SELECT orch_schedule('campaign_check', '30 6 * * *', 'campaign_check', 'cron:campaign_check');
SELECT orch_schedule('coaching_weekly', '0 16 * * 5', 'coaching_digest', 'cron:coaching_weekly');
SELECT cron.schedule('app:pre_meeting', '*/5 * * * *', 'SELECT app.queue_pre_meeting_briefs()');
