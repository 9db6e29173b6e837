-- examples/sequences/11_pre_meeting.sql: a briefing 90 minutes before a
-- meeting (source cron:pre_meeting).  The contact's CRM record loads as tier
-- 2 context (the payload has contact_id); Apollo enrichment is tier 3 and
-- loads only for the prep step, which asks for it.
--
-- Payload: {"meeting_id", "contact_id"}.  app.queue_pre_meeting_briefs,
-- run every 5 minutes by pg_cron (90_schedules.sql), submits it for each
-- meeting that starts 90 minutes later.

/*
 * queue_pre_meeting_briefs submits pre_meeting for every meeting with a
 * contact starting in the 5-minute slot that begins 90 minutes after the
 * slot "at" falls in: called every 5 minutes, each meeting once.  Runs as
 * pg_cron's user, across users.  Returns the number of events submitted
 * (their outcomes are in orchestrator.event_log).
 */
CREATE FUNCTION app.queue_pre_meeting_briefs(at timestamptz DEFAULT now()) RETURNS integer
LANGUAGE sql VOLATILE
AS $$
	WITH due AS MATERIALIZED (
		-- materialised, so only these meetings reach the submit below
		SELECT m.org_id, m.user_id, m.id, m.contact_id
		FROM app.calendar_events m
		WHERE m.contact_id IS NOT NULL
		  AND m.starts_at >= date_bin(interval '5 minutes', at, timestamptz '2000-01-01 00:00+00') + interval '90 minutes'
		  AND m.starts_at < date_bin(interval '5 minutes', at, timestamptz '2000-01-01 00:00+00') + interval '95 minutes'
	)
	SELECT count(*)::integer
	FROM due,
	     LATERAL orch_submit_event('pre_meeting', 'cron:pre_meeting', due.org_id, due.user_id,
	                               jsonb_build_object('meeting_id', due.id, 'contact_id', due.contact_id)) AS s
$$;
COMMENT ON FUNCTION app.queue_pre_meeting_briefs(timestamptz) IS 'Submits pre_meeting for the meetings starting 90 minutes after the current 5-minute slot (run by pg_cron)';

-- "notify-briefing": the briefing as a Slack message.
CREATE FUNCTION app.pre_meeting_message(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	WITH b AS (
		SELECT state->'outputs'->'meeting-prep'->'briefing' AS briefing,
		       (SELECT format('%s at %s', m.title, to_char(m.starts_at AT TIME ZONE app.user_timezone(state), 'HH24:MI'))
		        FROM app.calendar_events m WHERE m.id::text = state->'event'->'payload'->>'meeting_id') AS meeting
	)
	SELECT jsonb_build_object(
		'text', format('Prep for %s: %s (%s)', COALESCE(b.meeting, 'your next meeting'),
		               b.briefing->>'contact', b.briefing->>'company'),
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'header', 'text', jsonb_build_object('type', 'plain_text',
				'text', 'Prep: ' || COALESCE(b.meeting, 'your next meeting'))),
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('*%s* (%s)', b.briefing->>'contact', b.briefing->>'company')
				|| COALESCE(E'\n' || (SELECT string_agg(f #>> '{}', ', ' ORDER BY ord)
				                      FROM jsonb_array_elements(b.briefing->'company_facts') WITH ORDINALITY AS x (f, ord)), '')
				|| E'\n*Talking points*\n'
				|| COALESCE((SELECT string_agg('- ' || (p #>> '{}'), E'\n' ORDER BY ord)
				            FROM jsonb_array_elements(b.briefing->'talking_points') WITH ORDINALITY AS x (p, ord)), '-')))))
	FROM b
$$;
COMMENT ON FUNCTION app.pre_meeting_message(jsonb) IS 'Notify function: the pre-meeting briefing';

SELECT orch_define_sequence('pre_meeting', $json$[
  {"name": "meeting-prep", "kind": "http", "endpoint": "proactive-meeting-prep",
   "requires_context": ["apollo_enrichment"],
   "expect": "$.briefing.type() == \"object\"",
   "description": "The proactive-meeting-prep edge function, with tier 3 enrichment loaded just before it"},
  {"name": "notify-briefing", "kind": "notify", "function": "app.pre_meeting_message",
   "description": "Inform-only briefing in Slack"}
]$json$) AS pre_meeting_version;
