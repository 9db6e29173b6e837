-- examples/sequences/15_calendar_find_times.sql: a calendar event asks for
-- times (Google Calendar webhook, source webhook:calendar): mutual
-- availability is found and offered to the rep in Slack.
--
-- Payload: {"contact_id", "window_start" (YYYY-MM-DD), "duration_minutes"}.

-- "notify-slots": the proposed slots, in the rep's time zone.
CREATE FUNCTION app.calendar_slots_message(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	WITH slots AS (
		SELECT string_agg('- ' || to_char((s->>'start')::timestamptz AT TIME ZONE app.user_timezone(state),
		                                  'Dy DD Mon HH24:MI'), E'\n' ORDER BY ord) AS lines,
		       count(*) AS n
		FROM jsonb_array_elements(COALESCE(state->'outputs'->'find-slots'->'slots', '[]')) WITH ORDINALITY AS x (s, ord)
	)
	SELECT jsonb_build_object(
		'text', format('%s time(s) that work for %s', slots.n,
		               COALESCE(state->'context'->'tier2'->'crm'->'contact'->>'full_name', 'everyone')),
		'blocks', jsonb_build_array(jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn',
			'text', format('*Times that work for %s* (%s min, %s)%s',
			               COALESCE(state->'context'->'tier2'->'crm'->'contact'->>'full_name', 'everyone'),
			               state->'outputs'->'find-slots'->>'duration_minutes', app.user_timezone(state),
			               COALESCE(E'\n' || slots.lines, E'\nNo common free time found'))))))
	FROM slots
$$;
COMMENT ON FUNCTION app.calendar_slots_message(jsonb) IS 'Notify function: the mutually available slots find-available-slots found';

SELECT orch_define_sequence('calendar_find_times', $json$[
  {"name": "find-slots", "kind": "http", "endpoint": "find-available-slots",
   "expect": "$.slots.type() == \"array\"",
   "description": "The find-available-slots skill: mutual availability"},
  {"name": "notify-slots", "kind": "notify", "function": "app.calendar_slots_message",
   "description": "Inform-only: the slots in Slack"}
]$json$) AS calendar_find_times_version;
