-- examples/sequences/12_morning_brief.sql: the seed's "Morning Brief:
-- Enhanced Format" (source cron:morning).  Six data sources are chained,
-- then one SQL function renders the brief and a notify step sends it:
--   1. calendar_events: today's meetings with attendees      (sql, user)
--   2. proactive-meeting-prep: prep status per meeting       (http)
--   3. inbox scan: threads waiting for the rep               (sql, user)
--   4. proactive-pipeline-analysis: deal health, stale deals (sql snapshot of
--      the org's pipeline with "scope": "service", then http)
--   5. campaign metrics from Instantly, if campaigns are active (http)
--   6. CRM activity log: overnight changes                   (sql, user)
-- Enrichment steps are "on_failure": "continue": the brief goes out with
-- what is available.

-- "calendar": today's meetings, in the user's time zone.
CREATE FUNCTION app.todays_meetings(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object('count', count(*), 'meetings', COALESCE(jsonb_agg(jsonb_build_object(
		'id', m.id, 'time', to_char(m.starts_at AT TIME ZONE app.user_timezone(state), 'HH24:MI'),
		'title', m.title, 'meeting_type', m.meeting_type, 'contact_name', c.full_name, 'company', co.name,
		'attendees', m.attendees) ORDER BY m.starts_at), '[]'))
	FROM app.calendar_events m
	LEFT JOIN app.contacts c ON c.id = m.contact_id
	LEFT JOIN app.companies co ON co.id = c.company_id
	WHERE (m.starts_at AT TIME ZONE app.user_timezone(state))::date = (now() AT TIME ZONE app.user_timezone(state))::date
$$;
COMMENT ON FUNCTION app.todays_meetings(jsonb) IS 'Step function: the user''s meetings today, in their time zone (RLS: own rows only)';

-- "inbox": threads where the contact is waiting for the rep.
CREATE FUNCTION app.inbox_needing_response(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object('count', count(*), 'threads', COALESCE(jsonb_agg(jsonb_build_object(
		'id', t.id, 'subject', t.subject, 'summary', t.summary, 'contact_name', c.full_name, 'company', co.name)
		ORDER BY t.last_message_at), '[]'))
	FROM app.email_threads t
	LEFT JOIN app.contacts c ON c.id = t.contact_id
	LEFT JOIN app.companies co ON co.id = c.company_id
	WHERE t.needs_response
$$;
COMMENT ON FUNCTION app.inbox_needing_response(jsonb) IS 'Step function: inbox threads waiting for the user''s response (RLS: own rows only)';

-- "pipeline-snapshot": every open deal of the org, whoever owns it.  The
-- seed's one cross-user read (org-wide pipeline scan): the step runs with
-- "scope": "service", which the engine audits, so it filters by org itself.
CREATE FUNCTION app.org_pipeline_snapshot(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object('deals', COALESCE(jsonb_agg(jsonb_build_object(
		'id', d.id, 'name', d.name, 'user_id', d.user_id, 'stage', d.stage, 'amount_usd', d.amount_usd,
		'days_inactive', floor(extract(epoch FROM now() - d.last_activity_at) / 86400)::int,
		'contact_name', c.full_name, 'company', co.name) ORDER BY d.name), '[]'))
	FROM app.deals d
	LEFT JOIN app.contacts c ON c.id = d.contact_id
	LEFT JOIN app.companies co ON co.id = d.company_id
	WHERE d.org_id = (state->'event'->>'org_id')::uuid
	  AND d.stage NOT IN ('closed_won', 'closed_lost')
$$;
COMMENT ON FUNCTION app.org_pipeline_snapshot(jsonb) IS 'Step function (service scope): the org''s open deals, for the org-wide pipeline scan';

-- "crm-overnight": the user's CRM activity of the last 24 hours.
CREATE FUNCTION app.overnight_activity(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object('count', count(*), 'updates', COALESCE(jsonb_agg(jsonb_build_object(
		'kind', a.kind, 'summary', a.summary, 'occurred_at', a.occurred_at) ORDER BY a.occurred_at), '[]'))
	FROM app.activities a
	WHERE a.occurred_at >= now() - interval '24 hours'
$$;
COMMENT ON FUNCTION app.overnight_activity(jsonb) IS 'Step function: the user''s CRM activity of the last 24 hours (RLS: own rows only)';

/*
 * "render": the brief, exactly in the seed's format, as text and as Block
 * Kit (the same lines, one section per heading, and the two buttons).
 *
 *   Good morning, {name}. Here's your {day_of_week}.
 *
 *   MEETINGS TODAY ({count})
 *     {time} -- {contact_name}, {company} ({meeting_type})
 *     [Prep ready ->] | [Prepping now...] | No prep needed
 *
 *   NEEDS YOUR ATTENTION ({count})
 *     {contact_name} ({company}) -- {summary}
 *     [{primary_action} ->] [{secondary_action} ->]
 *
 *   PIPELINE PULSE
 *     {deals_needing_action} deals need action today
 *     {at_risk_count} deal(s) at risk ({deal_name} -- {days_inactive} days no activity)
 *     {proposal_value} in proposals awaiting response
 *
 *   OVERNIGHT UPDATES
 *     {icon} {update_summary}
 *
 *   [Expand pipeline ->] [Show full inbox ->]
 *
 * A meeting without a contact shows its title; a meeting whose prep status
 * is unknown (meeting-prep failed) shows no prep line.  Attention items are
 * the inbox threads, then the pipeline analysis's.  Overnight updates are
 * the CRM's, oldest first, then campaigns with new replies.
 */
CREATE FUNCTION app.render_morning_brief(state jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	tz text := app.user_timezone(state);
	o jsonb := state->'outputs';
	greeting text;
	meetings text[] := '{}';
	attention text[] := '{}';
	pulse text[];
	updates text[] := '{}';
	item jsonb;
	prep text;
	n_meetings integer := 0;
	n_attention integer := 0;
	sections jsonb;
BEGIN
	greeting := format('Good morning, %s. Here''s your %s.',
		COALESCE((SELECT p.first_name FROM app.profiles p WHERE p.user_id = (state->'event'->>'user_id')::uuid),
		         state->'context'->'tier1'->'user'->>'display_name', 'there'),
		to_char(now() AT TIME ZONE tz, 'FMDay'));

	FOR item IN SELECT value FROM jsonb_array_elements(COALESCE(o->'calendar'->'meetings', '[]')) LOOP
		n_meetings := n_meetings + 1;
		meetings := meetings || format('  %s -- %s (%s)', item->>'time',
			CASE WHEN item->>'contact_name' IS NULL THEN item->>'title'
			     ELSE concat_ws(', ', item->>'contact_name', item->>'company') END,
			item->>'meeting_type');
		SELECT CASE s->>'status' WHEN 'ready' THEN '  [Prep ready ->]'
		                         WHEN 'in_progress' THEN '  [Prepping now...]'
		                         WHEN 'not_needed' THEN '  No prep needed' END
		INTO prep
		FROM jsonb_array_elements(COALESCE(o->'meeting-prep'->'meetings', '[]')) AS s
		WHERE s->>'meeting_id' = item->>'id';
		IF prep IS NOT NULL THEN
			meetings := meetings || prep;
		END IF;
	END LOOP;

	FOR item IN
		SELECT i FROM (
			SELECT 1 AS src, ord, t || '{"primary_action": "Draft reply", "secondary_action": "Open thread"}' AS i
			FROM jsonb_array_elements(COALESCE(o->'inbox'->'threads', '[]')) WITH ORDINALITY AS x (t, ord)
			UNION ALL
			SELECT 2, ord, a
			FROM jsonb_array_elements(COALESCE(o->'pipeline-analysis'->'attention', '[]')) WITH ORDINALITY AS x (a, ord)) AS items
		ORDER BY src, ord
	LOOP
		n_attention := n_attention + 1;
		attention := attention
			|| format('  %s (%s) -- %s', item->>'contact_name', item->>'company', item->>'summary')
			|| format('  [%s ->] [%s ->]', item->>'primary_action', item->>'secondary_action');
	END LOOP;

	IF o ? 'pipeline-analysis' THEN
		pulse := ARRAY[
			format('  %s deals need action today', o->'pipeline-analysis'->>'deals_needing_action'),
			format('  %s deal(s) at risk%s', jsonb_array_length(o->'pipeline-analysis'->'at_risk'),
				(SELECT ' (' || string_agg(format('%s -- %s days no activity', r->>'deal_name', r->>'days_inactive'), ', ' ORDER BY ord) || ')'
				 FROM jsonb_array_elements(o->'pipeline-analysis'->'at_risk') WITH ORDINALITY AS x (r, ord))),
			format('  $%s in proposals awaiting response',
				to_char((o->'pipeline-analysis'->>'proposal_value_usd')::numeric, 'FM999,999,999,990'))];
	ELSE
		pulse := ARRAY['  Pipeline analysis is not available this morning'];
	END IF;

	SELECT updates || COALESCE(array_agg(format('  %s %s',
		CASE u->>'kind' WHEN 'deal_stage' THEN ':chart_with_upwards_trend:' WHEN 'email_opened' THEN ':eyes:'
		                WHEN 'email_reply' THEN ':incoming_envelope:' WHEN 'meeting_booked' THEN ':calendar:'
		                ELSE ':memo:' END,
		u->>'summary') ORDER BY ord), '{}')
	INTO updates
	FROM jsonb_array_elements(COALESCE(o->'crm-overnight'->'updates', '[]')) WITH ORDINALITY AS x (u, ord);
	SELECT updates || COALESCE(array_agg(format('  :mega: %s: %s new replies (reply rate %s%%)',
		c->>'name', c->>'new_replies', round((c->>'reply_rate')::numeric * 100, 1)) ORDER BY ord), '{}')
	INTO updates
	FROM jsonb_array_elements(COALESCE(o->'campaign-metrics'->'campaigns', '[]')) WITH ORDINALITY AS x (c, ord)
	WHERE (c->>'new_replies')::int > 0;
	IF cardinality(updates) = 0 THEN
		updates := ARRAY['  Nothing new overnight'];
	END IF;

	sections := jsonb_build_array(
		jsonb_build_array(format('MEETINGS TODAY (%s)', n_meetings), to_jsonb(meetings)),
		jsonb_build_array(format('NEEDS YOUR ATTENTION (%s)', n_attention), to_jsonb(attention)),
		jsonb_build_array('PIPELINE PULSE', to_jsonb(pulse)),
		jsonb_build_array('OVERNIGHT UPDATES', to_jsonb(updates)));

	RETURN jsonb_build_object(
		'text', concat_ws(E'\n\n', greeting,
			(SELECT string_agg(concat_ws(E'\n', VARIADIC ARRAY[s->>0]
			                             || ARRAY(SELECT jsonb_array_elements_text(s->1))), E'\n\n' ORDER BY ord)
			 FROM jsonb_array_elements(sections) WITH ORDINALITY AS x (s, ord)),
			'[Expand pipeline ->] [Show full inbox ->]'),
		'blocks', jsonb_build_array(jsonb_build_object('type', 'header',
				'text', jsonb_build_object('type', 'plain_text', 'text', greeting)))
			|| (SELECT jsonb_agg(jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn',
				'text', concat_ws(E'\n', VARIADIC ARRAY['*' || (s->>0) || '*'] || ARRAY(SELECT jsonb_array_elements_text(s->1)))))
				ORDER BY ord)
			    FROM jsonb_array_elements(sections) WITH ORDINALITY AS x (s, ord))
			|| jsonb_build_array(jsonb_build_object('type', 'actions', 'elements', jsonb_build_array(
				jsonb_build_object('type', 'button', 'action_id', 'expand_pipeline',
				                   'text', jsonb_build_object('type', 'plain_text', 'text', 'Expand pipeline ->')),
				jsonb_build_object('type', 'button', 'action_id', 'show_full_inbox',
				                   'text', jsonb_build_object('type', 'plain_text', 'text', 'Show full inbox ->'))))));
END
$$;
COMMENT ON FUNCTION app.render_morning_brief(jsonb) IS 'Step function: renders the seed''s enhanced morning brief from the chained sources, as text and Block Kit';

-- "notify-brief": the rendered brief is the message.
CREATE FUNCTION app.morning_brief_message(state jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
	SELECT state->'outputs'->'render'
$$;
COMMENT ON FUNCTION app.morning_brief_message(jsonb) IS 'Notify function: the brief the render step produced';

SELECT orch_define_sequence('morning_brief', $json$[
  {"name": "calendar", "kind": "sql", "function": "app.todays_meetings",
   "description": "1. calendar_events: today's meetings with attendees"},
  {"name": "meeting-prep", "kind": "http", "endpoint": "proactive-meeting-prep", "on_failure": "continue",
   "description": "2. proactive-meeting-prep: prep status per meeting"},
  {"name": "inbox", "kind": "sql", "function": "app.inbox_needing_response",
   "description": "3. email inbox scan: threads needing a response"},
  {"name": "pipeline-snapshot", "kind": "sql", "function": "app.org_pipeline_snapshot", "scope": "service",
   "description": "4a. the org's open deals: the seed's org-wide scan, service scope (audited)"},
  {"name": "pipeline-analysis", "kind": "http", "endpoint": "proactive-pipeline-analysis", "on_failure": "continue",
   "description": "4b. proactive-pipeline-analysis: deal health, stale deals, proposals"},
  {"name": "active-campaigns", "kind": "sql", "function": "app.active_campaigns",
   "description": "5a. the user's active campaigns"},
  {"name": "campaign-metrics", "kind": "http", "endpoint": "monitor-campaigns", "on_failure": "continue",
   "condition": "$.outputs.\"active-campaigns\".count > 0",
   "description": "5b. campaign metrics from Instantly, if campaigns are active"},
  {"name": "crm-overnight", "kind": "sql", "function": "app.overnight_activity",
   "description": "6. CRM activity log: overnight changes"},
  {"name": "render", "kind": "sql", "function": "app.render_morning_brief",
   "expect": "$.text starts with \"Good morning, \"",
   "description": "The brief in the seed's enhanced format"},
  {"name": "notify-brief", "kind": "notify", "function": "app.morning_brief_message",
   "description": "Inform-only: the brief in Slack"}
]$json$) AS morning_brief_version;
