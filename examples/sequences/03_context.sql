-- examples/sequences/03_context.sql: context sources (the seed's tiers).
--
-- Tier 1 (org, user, preferences, features, cost budget) is built in.
-- Tier 2 loads at job start, only when the payload has contact_id or
-- deal_id, into state.context.tier2.<name>.  Tier 3 loads only just before a
-- step that names it in "requires_context", into state.context.tier3.<name>:
-- never speculatively.

-- Tier 2 "crm": the contact, their company and deals, recent activities,
-- email threads and meetings.  Meetings carry their transcript's id, never
-- its text.
CREATE FUNCTION app.crm_context(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	WITH ids AS (
		SELECT COALESCE((SELECT c.id FROM app.contacts c WHERE c.id::text = state->'event'->'payload'->>'contact_id'),
		                (SELECT d.contact_id FROM app.deals d WHERE d.id::text = state->'event'->'payload'->>'deal_id'))
		       AS contact_id
	)
	SELECT jsonb_build_object(
		'contact', (SELECT jsonb_build_object('id', c.id, 'full_name', c.full_name, 'email', c.email, 'title', c.title)
		            FROM app.contacts c WHERE c.id = ids.contact_id),
		'company', (SELECT jsonb_build_object('id', co.id, 'name', co.name, 'domain', co.domain)
		            FROM app.contacts c JOIN app.companies co ON co.id = c.company_id WHERE c.id = ids.contact_id),
		'deals', (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', d.id, 'name', d.name, 'stage', d.stage,
		                                                       'amount_usd', d.amount_usd) ORDER BY d.name), '[]')
		          FROM app.deals d WHERE d.contact_id = ids.contact_id),
		'activities', (SELECT COALESCE(jsonb_agg(jsonb_build_object('kind', a.kind, 'summary', a.summary,
		                                                            'occurred_at', a.occurred_at) ORDER BY a.occurred_at DESC), '[]')
		               FROM (SELECT * FROM app.activities a WHERE a.contact_id = ids.contact_id
		                     ORDER BY a.occurred_at DESC LIMIT 10) a),
		'email_threads', (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', t.id, 'subject', t.subject,
		                                                               'needs_response', t.needs_response) ORDER BY t.last_message_at DESC), '[]')
		                  FROM app.email_threads t WHERE t.contact_id = ids.contact_id),
		'meetings', (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', m.id, 'title', m.title, 'starts_at', m.starts_at,
		                                                          'transcript_id', tr.id) ORDER BY m.starts_at DESC), '[]')
		             FROM app.calendar_events m LEFT JOIN app.meeting_transcripts tr ON tr.meeting_id = m.id
		             WHERE m.contact_id = ids.contact_id))
	FROM ids
$$;
COMMENT ON FUNCTION app.crm_context(jsonb) IS 'Tier 2 context source "crm": contact, company, deals, activities, threads, meetings (transcripts by id only)';

SELECT orch_define_context_source('crm', 2, function => 'app.crm_context',
	description => 'CRM contact, company, deals, activities, email threads and meetings');

-- Tier 3: external data, loaded only for the steps that ask for it.
SELECT orch_define_context_source('apollo_enrichment', 3, endpoint => 'apollo-enrichment',
	description => 'Apollo person and company enrichment');
SELECT orch_define_context_source('proposal_templates', 3, endpoint => 'proposal-templates',
	description => 'Proposal templates for generate-proposal');
