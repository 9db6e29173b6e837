-- examples/sequences/01_app.sql: the application's own tables, the ones the
-- seed's sequences read and write: a small CRM (companies, contacts, deals,
-- activities, tasks), the calendar, meeting transcripts, the inbox and
-- outbound campaigns.  Every row carries org_id and user_id, and row-level
-- security keys every table on the JWT's "sub" claim, Supabase style: a
-- user-scoped step (request.jwt.claims = {"sub": <the job's user>, ...}) sees
-- its user's rows only.  Seed rows are for the demo org and its two users
-- (examples/demo.sh): Ada and Bob.
--
-- Transcripts are the one thing the orchestrator must never copy: steps
-- refer to app.meeting_transcripts by id only.
--
-- Who runs what: a user-scoped step (the default for steps that call a
-- function) runs as orchestrator.user_role, with request.jwt.claims naming
-- the job's user.  Set that parameter to "authenticated", the role RLS
-- policies are written for on Supabase (created below if missing).  Left
-- empty, user-scoped steps run as the sequence's definer: a superuser here,
-- whom RLS does not restrict.  Service-scope steps (the org-wide pipeline
-- scan) run as the definer, audited.

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
		CREATE ROLE authenticated NOLOGIN;
		COMMENT ON ROLE authenticated IS 'Signed-in users (Supabase''s role); orchestrator.user_role: user-scoped steps run as it';
	END IF;
END
$$;

CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'The sales application the orchestrator examples run against';
GRANT USAGE ON SCHEMA app TO authenticated;

CREATE TABLE app.profiles (
	user_id uuid PRIMARY KEY,
	org_id uuid NOT NULL,
	first_name text NOT NULL,
	full_name text NOT NULL,
	email text NOT NULL
);
COMMENT ON TABLE app.profiles IS 'Application users (the reps): how they are greeted and addressed';

CREATE TABLE app.companies (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	name text NOT NULL,
	domain text
);
COMMENT ON TABLE app.companies IS 'CRM companies (accounts), owned by a rep';

CREATE TABLE app.contacts (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	company_id uuid REFERENCES app.companies,
	full_name text NOT NULL,
	email text NOT NULL,
	title text
);
COMMENT ON TABLE app.contacts IS 'CRM contacts, owned by a rep';

CREATE TABLE app.deals (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	company_id uuid REFERENCES app.companies,
	contact_id uuid REFERENCES app.contacts,
	name text NOT NULL,
	stage text NOT NULL CHECK (stage IN ('discovery', 'demo', 'proposal', 'negotiation', 'closed_won', 'closed_lost')),
	amount_usd numeric NOT NULL DEFAULT 0,
	last_activity_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE app.deals IS 'CRM deals; a stage change is gated behind approval when the orchestrator makes it';
COMMENT ON COLUMN app.deals.last_activity_at IS 'Last touch on the deal; the pipeline scan counts days of inactivity from it';

CREATE TABLE app.calendar_events (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	contact_id uuid REFERENCES app.contacts,
	title text NOT NULL,
	meeting_type text NOT NULL CHECK (meeting_type IN ('discovery', 'demo', 'negotiation', 'follow_up', 'internal')),
	starts_at timestamptz NOT NULL,
	ends_at timestamptz NOT NULL,
	attendees jsonb NOT NULL DEFAULT '[]'
);
COMMENT ON TABLE app.calendar_events IS 'The reps'' calendars (meetings), synced from Google Calendar or O365';
COMMENT ON COLUMN app.calendar_events.attendees IS 'Attendees as [{"name", "email"}]';

CREATE TABLE app.meeting_transcripts (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	meeting_id uuid NOT NULL REFERENCES app.calendar_events,
	body text NOT NULL
);
COMMENT ON TABLE app.meeting_transcripts IS 'Meeting transcripts (MeetingBaaS); the orchestrator refers to them by id and never copies the body into job state';

CREATE TABLE app.email_threads (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	contact_id uuid REFERENCES app.contacts,
	subject text NOT NULL,
	summary text NOT NULL,
	needs_response boolean NOT NULL DEFAULT false,
	last_message_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE app.email_threads IS 'The reps'' inbox threads with contacts';
COMMENT ON COLUMN app.email_threads.needs_response IS 'The contact wrote last and is waiting for the rep';

CREATE TABLE app.tasks (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	contact_id uuid REFERENCES app.contacts,
	meeting_id uuid REFERENCES app.calendar_events,
	title text NOT NULL,
	due_date date,
	source_job_id uuid,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE app.tasks IS 'CRM tasks; those created from detected intents are created only after the rep approved them';
COMMENT ON COLUMN app.tasks.source_job_id IS 'The orchestrator job that created the task, if any';

CREATE TABLE app.activities (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	contact_id uuid REFERENCES app.contacts,
	deal_id uuid REFERENCES app.deals,
	kind text NOT NULL CHECK (kind IN ('deal_stage', 'email_opened', 'email_reply', 'meeting_booked', 'note')),
	summary text NOT NULL,
	occurred_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE app.activities IS 'CRM activity log: what happened to contacts and deals';

CREATE TABLE app.campaigns (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	name text NOT NULL,
	status text NOT NULL CHECK (status IN ('active', 'paused', 'completed')),
	external_id text
);
COMMENT ON TABLE app.campaigns IS 'Outbound email campaigns (Instantly); monitor-campaigns reports their metrics';
COMMENT ON COLUMN app.campaigns.external_id IS 'The campaign''s id at Instantly';

/*
 * Row-level security, Supabase style: a row is visible to, and writable by,
 * the user the JWT's "sub" claim names.  Superusers and table owners bypass
 * it; user-scoped steps run as a role that does not.
 */
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['profiles', 'companies', 'contacts', 'deals', 'calendar_events',
	                         'meeting_transcripts', 'email_threads', 'tasks', 'activities', 'campaigns'] LOOP
		EXECUTE format('ALTER TABLE app.%I ENABLE ROW LEVEL SECURITY', t);
		EXECUTE format($p$CREATE POLICY own_rows ON app.%I
			USING ((NULLIF(current_setting('request.jwt.claims', true), '')::jsonb->>'sub')::uuid = user_id)
			WITH CHECK ((NULLIF(current_setting('request.jwt.claims', true), '')::jsonb->>'sub')::uuid = user_id)$p$, t);
		EXECUTE format('COMMENT ON POLICY own_rows ON app.%I IS %L', t,
		               'Rows of the user named by request.jwt.claims "sub"');
		EXECUTE format('GRANT SELECT ON app.%I TO authenticated', t);
	END LOOP;
	GRANT INSERT ON app.tasks TO authenticated;
END
$$;

------------------------------------------------------------------------------
-- Seed rows: org 00000000-0000-0000-0000-00000000000a with Ada (...a1, her
-- day is read in Europe/London) and Bob (...a2).  Times are relative to now,
-- so "today" and "overnight" hold whenever this runs; a deal's inactivity
-- is counted in 24-hour days, so it is the same in every time zone.
------------------------------------------------------------------------------

INSERT INTO app.profiles (user_id, org_id, first_name, full_name, email) VALUES
	('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Ada', 'Ada Lovelace', 'ada@acme.example'),
	('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'Bob', 'Bob Moses', 'bob@acme.example');

INSERT INTO app.companies (id, org_id, user_id, name, domain) VALUES
	('10000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'Globex', 'globex.example'),
	('10000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'Initech', 'initech.example'),
	('10000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'Umbrella', 'umbrella.example'),
	('10000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'Hooli', 'hooli.example'),
	('10000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a2', 'Vandelay Industries', 'vandelay.example');

INSERT INTO app.contacts (id, org_id, user_id, company_id, full_name, email, title) VALUES
	('20000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '10000000-0000-0000-0000-000000000001', 'Grace Hopper', 'grace@globex.example', 'VP Engineering'),
	('20000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '10000000-0000-0000-0000-000000000002', 'Peter Gibbons', 'peter@initech.example', 'Head of IT'),
	('20000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '10000000-0000-0000-0000-000000000003', 'Alice Wu', 'alice@umbrella.example', 'COO'),
	('20000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a2',
	 '10000000-0000-0000-0000-000000000005', 'Art Vandelay', 'art@vandelay.example', 'CEO');

INSERT INTO app.deals (id, org_id, user_id, company_id, contact_id, name, stage, amount_usd, last_activity_at) VALUES
	('30000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '10000000-0000-0000-0000-000000000001', '20000000-0000-0000-0000-000000000001', 'Globex expansion', 'proposal', 48000, now() - 12 * interval '24 hours'),
	('30000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '10000000-0000-0000-0000-000000000002', '20000000-0000-0000-0000-000000000002', 'Initech pilot', 'negotiation', 30000, now() - 6 * interval '24 hours'),
	('30000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '10000000-0000-0000-0000-000000000003', '20000000-0000-0000-0000-000000000003', 'Umbrella renewal', 'discovery', 15000, now() - 1 * interval '24 hours'),
	('30000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '10000000-0000-0000-0000-000000000004', NULL, 'Hooli seats', 'closed_won', 20000, now() - 40 * interval '24 hours'),
	('30000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a2',
	 '10000000-0000-0000-0000-000000000005', '20000000-0000-0000-0000-000000000004', 'Vandelay imports', 'proposal', 22000, now() - 15 * interval '24 hours');

-- Ada's day (Europe/London): three meetings today and yesterday's call with
-- Globex, which has a transcript.  Bob has a meeting today too.
INSERT INTO app.calendar_events (id, org_id, user_id, contact_id, title, meeting_type, starts_at, ends_at, attendees)
SELECT id::uuid, '00000000-0000-0000-0000-00000000000a', user_id::uuid, contact_id::uuid, title, meeting_type,
       ((now() AT TIME ZONE 'Europe/London')::date + day_offset + at_local) AT TIME ZONE 'Europe/London',
       ((now() AT TIME ZONE 'Europe/London')::date + day_offset + at_local + length) AT TIME ZONE 'Europe/London',
       attendees::jsonb
FROM (VALUES
	('40000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1', '20000000-0000-0000-0000-000000000001',
	 'Globex: security deep dive', 'discovery', 0, time '10:00', interval '45 minutes',
	 '[{"name": "Grace Hopper", "email": "grace@globex.example"}]'),
	('40000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-0000000000a1', '20000000-0000-0000-0000-000000000002',
	 'Initech: pilot terms', 'negotiation', 0, time '14:30', interval '30 minutes',
	 '[{"name": "Peter Gibbons", "email": "peter@initech.example"}]'),
	('40000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-0000000000a1', NULL,
	 'Pipeline review', 'internal', 0, time '16:00', interval '30 minutes',
	 '[{"name": "Bob Moses", "email": "bob@acme.example"}]'),
	('40000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-0000000000a2', '20000000-0000-0000-0000-000000000004',
	 'Vandelay: import volumes', 'demo', 0, time '11:00', interval '30 minutes',
	 '[{"name": "Art Vandelay", "email": "art@vandelay.example"}]'),
	('40000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-0000000000a1', '20000000-0000-0000-0000-000000000001',
	 'Acme x Globex discovery call', 'discovery', -1, time '15:00', interval '45 minutes',
	 '[{"name": "Grace Hopper", "email": "grace@globex.example"}]')
) AS m (id, user_id, contact_id, title, meeting_type, day_offset, at_local, length, attendees);

INSERT INTO app.meeting_transcripts (id, org_id, user_id, meeting_id, body) VALUES
	('50000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '40000000-0000-0000-0000-000000000005',
	 'Grace: Our board signed off the budget for this quarter. Ada: Great, I will send you a proposal by Friday. '
	 'Grace: We need to check SSO support with IT first.');

INSERT INTO app.email_threads (id, org_id, user_id, contact_id, subject, summary, needs_response, last_message_at) VALUES
	('60000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '20000000-0000-0000-0000-000000000002', 'Pilot scope', 'Asked whether SSO is included in the pilot', true, now() - interval '9 hours'),
	('60000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 '20000000-0000-0000-0000-000000000003', 'Renewal timeline', 'Thanked you for the renewal summary', false, now() - interval '2 days'),
	('60000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a2',
	 '20000000-0000-0000-0000-000000000004', 'Import volumes', 'Wants a quote for 10,000 crates', true, now() - interval '3 hours');

INSERT INTO app.activities (org_id, user_id, contact_id, deal_id, kind, summary, occurred_at) VALUES
	('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '20000000-0000-0000-0000-000000000001',
	 '30000000-0000-0000-0000-000000000001', 'email_opened', 'Grace Hopper opened the Globex proposal', now() - interval '7 hours'),
	('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '20000000-0000-0000-0000-000000000002',
	 '30000000-0000-0000-0000-000000000002', 'deal_stage', 'Initech pilot moved to negotiation', now() - interval '5 hours'),
	('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '20000000-0000-0000-0000-000000000003',
	 '30000000-0000-0000-0000-000000000003', 'note', 'Renewal call notes added for Umbrella', now() - interval '3 days'),
	('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a2', '20000000-0000-0000-0000-000000000004',
	 '30000000-0000-0000-0000-000000000005', 'email_reply', 'Art Vandelay replied about import volumes', now() - interval '3 hours');

INSERT INTO app.campaigns (id, org_id, user_id, name, status, external_id) VALUES
	('70000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 'Q4 outbound', 'active', 'inst_q4_outbound'),
	('70000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
	 'Webinar follow-up', 'paused', 'inst_webinar'),
	('70000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a2',
	 'EMEA launch', 'active', 'inst_emea');

------------------------------------------------------------------------------
-- Step functions shared by several sequences.  Each takes the job's state
-- and returns jsonb; user-scoped, so RLS decides which rows they see.
------------------------------------------------------------------------------

-- The user's time zone (tier 1 preferences), UTC without one.
CREATE FUNCTION app.user_timezone(state jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
	SELECT COALESCE(state->'context'->'tier1'->'preferences'->>'timezone', 'UTC')
$$;
COMMENT ON FUNCTION app.user_timezone(jsonb) IS 'The job user''s time zone from tier 1 context (UTC if none)';

-- "active-campaigns": the campaigns monitor-campaigns reports on.
CREATE FUNCTION app.active_campaigns(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object(
		'count', count(*),
		'campaigns', COALESCE(jsonb_agg(jsonb_build_object('id', c.id, 'name', c.name, 'external_id', c.external_id)
		                                ORDER BY c.name), '[]'))
	FROM app.campaigns c
	WHERE c.status = 'active'
$$;
COMMENT ON FUNCTION app.active_campaigns(jsonb) IS 'Step function: the user''s active campaigns (RLS: own rows only)';
