-- examples/sequences/17_coaching_digest.sql: the weekly coaching digest
-- (pg_cron, source cron:coaching_weekly).  coaching-analysis is AI-intensive:
-- the org's budget is checked before it runs, and the cost it reports
-- (cost_usd) is booked to the ledger.

-- "notify-digest": the digest as a Slack message.
CREATE FUNCTION app.coaching_digest_message(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	WITH a AS (SELECT state->'outputs'->'coaching-analysis' AS r)
	SELECT jsonb_build_object('text', format(E'Your week in %s meetings: talk ratio %s%%, %s questions per meeting.%s%s',
		a.r->>'meetings_analysed', round((a.r->>'talk_ratio')::numeric * 100), a.r->>'questions_per_meeting',
		(SELECT string_agg(E'\n:star: ' || (h #>> '{}'), '' ORDER BY ord)
		 FROM jsonb_array_elements(a.r->'highlights') WITH ORDINALITY AS x (h, ord)),
		(SELECT string_agg(E'\n:bulb: ' || (s #>> '{}'), '' ORDER BY ord)
		 FROM jsonb_array_elements(a.r->'suggestions') WITH ORDINALITY AS x (s, ord))))
	FROM a
$$;
COMMENT ON FUNCTION app.coaching_digest_message(jsonb) IS 'Notify function: the weekly coaching digest';

SELECT orch_define_sequence('coaching_digest', $json$[
  {"name": "coaching-analysis", "kind": "http", "endpoint": "coaching-analysis", "ai": true,
   "expect": "$.cost_usd.type() == \"number\"",
   "description": "The coaching-analysis skill (AI: budget-checked, cost booked)"},
  {"name": "notify-digest", "kind": "notify", "function": "app.coaching_digest_message",
   "description": "Inform-only: the digest in Slack"}
]$json$) AS coaching_digest_version;
