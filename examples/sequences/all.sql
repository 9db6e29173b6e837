-- examples/sequences/all.sql: loads every example, in order.  Run it with psql
-- as a superuser, after CREATE EXTENSION orchestrator, the demo org and its
-- users (examples/demo.sh) and the secrets service_key and slack_bot_token:
--   psql -v ON_ERROR_STOP=1 -v base=http://127.0.0.1:PORT -f examples/sequences/all.sql
-- The pg_cron schedules are separate and optional: 90_schedules.sql.

\ir 00_endpoints.sql
\ir 01_app.sql
\ir 02_features.sql
\ir 03_context.sql
\ir 10_meeting_ended.sql
\ir 11_pre_meeting.sql
\ir 12_morning_brief.sql
\ir 13_email_received.sql
\ir 14_proposal_generation.sql
\ir 15_calendar_find_times.sql
\ir 16_campaign_check.sql
\ir 17_coaching_digest.sql
\ir 18_slack_approval.sql
