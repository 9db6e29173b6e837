-- examples/sequences/16_campaign_check.sql: the daily campaign check (pg_cron,
-- source cron:campaign_check).  Instantly is an external API: if
-- monitor-campaigns fails, the step is skipped and the report says so
-- ("external API failure: skip, continue with available data").

-- "notify-report": the campaign report, or why there is none.
CREATE FUNCTION app.campaign_report_message(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT CASE
		WHEN NOT state->'outputs' ? 'campaign-metrics' AND (state->'outputs'->'active-campaigns'->>'count')::int > 0 THEN
			jsonb_build_object('text', format('Campaign metrics are unavailable today (Instantly did not answer); %s active campaign(s) not checked.',
			                                  state->'outputs'->'active-campaigns'->>'count'))
		WHEN NOT state->'outputs' ? 'campaign-metrics' THEN
			jsonb_build_object('text', 'No active campaigns to check today.')
		ELSE
			jsonb_build_object('text', (
				SELECT 'Campaigns yesterday:' || string_agg(format(E'\n- %s: %s sent, %s opened, %s replied (%s new), %s bounced',
					c->>'name', c->>'sent', c->>'opened', c->>'replied', c->>'new_replies', c->>'bounced'), '' ORDER BY ord)
				FROM jsonb_array_elements(state->'outputs'->'campaign-metrics'->'campaigns') WITH ORDINALITY AS x (c, ord)))
		END
$$;
COMMENT ON FUNCTION app.campaign_report_message(jsonb) IS 'Notify function: the daily campaign report, or a note that metrics were unavailable';

SELECT orch_define_sequence('campaign_check', $json$[
  {"name": "active-campaigns", "kind": "sql", "function": "app.active_campaigns",
   "description": "The user's active campaigns"},
  {"name": "campaign-metrics", "kind": "http", "endpoint": "monitor-campaigns", "on_failure": "continue",
   "condition": "$.outputs.\"active-campaigns\".count > 0",
   "description": "Daily Instantly metrics; an external API failure skips it"},
  {"name": "notify-report", "kind": "notify", "function": "app.campaign_report_message",
   "description": "Inform-only: the report in Slack"}
]$json$) AS campaign_check_version;
