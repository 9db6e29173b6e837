/* sql/orchestrator--0.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION orchestrator" to load this file. \quit

/*
 * Layout.  API functions (orch_*) live in the extension's schema (the one
 * given to CREATE EXTENSION, "public" by default).  State lives in schema
 * "orchestrator": the queue (sequence_jobs), the event log, step history,
 * versioned definitions and the seed's own settings tables.  Every row of job
 * state carries org_id so the state tables can later be distributed by org.
 */

CREATE SCHEMA orchestrator;
COMMENT ON SCHEMA orchestrator IS 'State of the orchestrator extension: jobs, events, step history, definitions and settings';

-- Roles: one submits events, one administers definitions.  PUBLIC gets nothing.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orchestrator_submitter') THEN
		CREATE ROLE orchestrator_submitter NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orchestrator_admin') THEN
		CREATE ROLE orchestrator_admin NOLOGIN;
	END IF;
END
$roles$;

REVOKE ALL ON SCHEMA orchestrator FROM PUBLIC;
GRANT USAGE ON SCHEMA orchestrator TO orchestrator_admin, orchestrator_submitter;

------------------------------------------------------------------------------
-- Who exists: orgs and users
------------------------------------------------------------------------------

CREATE TABLE orchestrator.orgs (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.orgs IS 'Organisations known to the orchestrator (used unless orch_use_table points at an application table)';
COMMENT ON COLUMN orchestrator.orgs.id IS 'Organisation id, as passed to orch_submit_event';
COMMENT ON COLUMN orchestrator.orgs.name IS 'Display name, loaded into tier 1 context';
COMMENT ON COLUMN orchestrator.orgs.created_at IS 'When the row was created';

CREATE TABLE orchestrator.users (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	org_id uuid NOT NULL REFERENCES orchestrator.orgs (id) ON DELETE CASCADE,
	display_name text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON orchestrator.users (org_id);
COMMENT ON TABLE orchestrator.users IS 'Users (sales reps) known to the orchestrator (used unless orch_use_table points at an application table)';
COMMENT ON COLUMN orchestrator.users.id IS 'User id, as passed to orch_submit_event';
COMMENT ON COLUMN orchestrator.users.org_id IS 'Organisation the user belongs to';
COMMENT ON COLUMN orchestrator.users.display_name IS 'Name used in messages';
COMMENT ON COLUMN orchestrator.users.created_at IS 'When the row was created';

------------------------------------------------------------------------------
-- The seed's own settings tables
------------------------------------------------------------------------------

CREATE FUNCTION orchestrator.is_valid_timezone(tz text) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	PERFORM pg_catalog.now() AT TIME ZONE tz;
	RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
	RETURN false;
END
$$;
COMMENT ON FUNCTION orchestrator.is_valid_timezone(text) IS 'True when the text names a time zone PostgreSQL knows';

CREATE TABLE orchestrator.notification_feature_settings (
	org_id uuid NOT NULL,
	feature_key text NOT NULL,
	is_enabled boolean NOT NULL DEFAULT true,
	settings jsonb NOT NULL DEFAULT '{}',
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (org_id, feature_key)
);
COMMENT ON TABLE orchestrator.notification_feature_settings IS 'Per-org switch for each event type (feature_key = event type); an event type with no row is enabled';
COMMENT ON COLUMN orchestrator.notification_feature_settings.org_id IS 'Organisation';
COMMENT ON COLUMN orchestrator.notification_feature_settings.feature_key IS 'Event type, e.g. meeting_ended';
COMMENT ON COLUMN orchestrator.notification_feature_settings.is_enabled IS 'False: events of this type are skipped with reason feature_disabled';
COMMENT ON COLUMN orchestrator.notification_feature_settings.settings IS 'Free-form feature settings, loaded into tier 1 context';
COMMENT ON COLUMN orchestrator.notification_feature_settings.updated_at IS 'Last change';

CREATE TABLE orchestrator.slack_user_preferences (
	user_id uuid PRIMARY KEY,
	org_id uuid NOT NULL,
	timezone text NOT NULL DEFAULT 'UTC' CHECK (orchestrator.is_valid_timezone(timezone)),
	quiet_hours_start time,
	quiet_hours_end time,
	max_notifications_per_hour integer NOT NULL DEFAULT 10 CHECK (max_notifications_per_hour >= 0),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.slack_user_preferences IS 'Per-user delivery preferences: time zone, quiet hours, notification rate';
COMMENT ON COLUMN orchestrator.slack_user_preferences.user_id IS 'User';
COMMENT ON COLUMN orchestrator.slack_user_preferences.org_id IS 'Organisation of the user';
COMMENT ON COLUMN orchestrator.slack_user_preferences.timezone IS 'IANA time zone in which quiet hours are read';
COMMENT ON COLUMN orchestrator.slack_user_preferences.quiet_hours_start IS 'Local time quiet hours begin (NULL: no quiet hours)';
COMMENT ON COLUMN orchestrator.slack_user_preferences.quiet_hours_end IS 'Local time quiet hours end; may be earlier than the start (overnight window)';
COMMENT ON COLUMN orchestrator.slack_user_preferences.max_notifications_per_hour IS 'Upper bound on Slack messages per hour for this user';
COMMENT ON COLUMN orchestrator.slack_user_preferences.updated_at IS 'Last change';

CREATE TABLE orchestrator.slack_user_mappings (
	user_id uuid PRIMARY KEY,
	org_id uuid NOT NULL,
	slack_user_id text NOT NULL,
	slack_team_id text,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.slack_user_mappings IS 'Which Slack user a user is addressed as';
COMMENT ON COLUMN orchestrator.slack_user_mappings.user_id IS 'User';
COMMENT ON COLUMN orchestrator.slack_user_mappings.org_id IS 'Organisation of the user';
COMMENT ON COLUMN orchestrator.slack_user_mappings.slack_user_id IS 'Slack member id (U...)';
COMMENT ON COLUMN orchestrator.slack_user_mappings.slack_team_id IS 'Slack workspace id (T...)';
COMMENT ON COLUMN orchestrator.slack_user_mappings.updated_at IS 'Last change';

CREATE TABLE orchestrator.cost_budgets (
	org_id uuid PRIMARY KEY,
	monthly_budget_usd numeric NOT NULL CHECK (monthly_budget_usd >= 0),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.cost_budgets IS 'AI cost budget per org and calendar month (UTC); an org with no row has no limit';
COMMENT ON COLUMN orchestrator.cost_budgets.org_id IS 'Organisation';
COMMENT ON COLUMN orchestrator.cost_budgets.monthly_budget_usd IS 'Spend allowed per billing period, in USD';
COMMENT ON COLUMN orchestrator.cost_budgets.updated_at IS 'Last change';

CREATE TABLE orchestrator.cost_ledger (
	id bigserial PRIMARY KEY,
	org_id uuid NOT NULL,
	job_id uuid,
	step_name text,
	cost_usd numeric NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON orchestrator.cost_ledger (org_id, created_at);
COMMENT ON TABLE orchestrator.cost_ledger IS 'AI cost entries, written in the same transaction as the step that spent them';
COMMENT ON COLUMN orchestrator.cost_ledger.id IS 'Entry id';
COMMENT ON COLUMN orchestrator.cost_ledger.org_id IS 'Organisation charged';
COMMENT ON COLUMN orchestrator.cost_ledger.job_id IS 'Job that spent it';
COMMENT ON COLUMN orchestrator.cost_ledger.step_name IS 'Step that spent it';
COMMENT ON COLUMN orchestrator.cost_ledger.cost_usd IS 'Amount in USD';
COMMENT ON COLUMN orchestrator.cost_ledger.created_at IS 'When it was spent';

------------------------------------------------------------------------------
-- Where the engine reads orgs, users and settings: one view per kind.
-- orch_use_table() repoints a view at an application's own table.
------------------------------------------------------------------------------

CREATE VIEW orchestrator.org_source AS
	SELECT id, name FROM orchestrator.orgs;
COMMENT ON VIEW orchestrator.org_source IS 'Orgs as the engine sees them (id, name); see orch_use_table';

CREATE VIEW orchestrator.user_source AS
	SELECT id, org_id, display_name FROM orchestrator.users;
COMMENT ON VIEW orchestrator.user_source IS 'Users as the engine sees them (id, org_id, display_name); see orch_use_table';

CREATE VIEW orchestrator.feature_settings_source AS
	SELECT org_id, feature_key, is_enabled, settings FROM orchestrator.notification_feature_settings;
COMMENT ON VIEW orchestrator.feature_settings_source IS 'Feature switches as the engine sees them; see orch_use_table';

CREATE VIEW orchestrator.user_preferences_source AS
	SELECT user_id, org_id, timezone, quiet_hours_start, quiet_hours_end, max_notifications_per_hour
	FROM orchestrator.slack_user_preferences;
COMMENT ON VIEW orchestrator.user_preferences_source IS 'User preferences as the engine sees them; see orch_use_table';

CREATE VIEW orchestrator.user_mappings_source AS
	SELECT user_id, org_id, slack_user_id, slack_team_id FROM orchestrator.slack_user_mappings;
COMMENT ON VIEW orchestrator.user_mappings_source IS 'Slack addressing as the engine sees it; see orch_use_table';

CREATE TABLE orchestrator.table_mappings (
	kind text PRIMARY KEY CHECK (kind IN ('orgs', 'users', 'notification_feature_settings', 'slack_user_preferences', 'slack_user_mappings')),
	relation text NOT NULL,
	columns jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE orchestrator.table_mappings IS 'Application tables the engine reads instead of its own (written by orch_use_table)';
COMMENT ON COLUMN orchestrator.table_mappings.kind IS 'Which of the engine''s sources is remapped';
COMMENT ON COLUMN orchestrator.table_mappings.relation IS 'The application table or view, schema-qualified';
COMMENT ON COLUMN orchestrator.table_mappings.columns IS 'Engine column name -> column name in the application relation';

------------------------------------------------------------------------------
-- Definitions
------------------------------------------------------------------------------

CREATE TABLE orchestrator.sequence_definitions (
	event_type text NOT NULL,
	version integer NOT NULL,
	steps jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by regrole NOT NULL,
	PRIMARY KEY (event_type, version)
);
COMMENT ON TABLE orchestrator.sequence_definitions IS 'Versioned sequences: event type -> ordered steps; a job keeps the version it started with';
COMMENT ON COLUMN orchestrator.sequence_definitions.event_type IS 'Event type the sequence runs for';
COMMENT ON COLUMN orchestrator.sequence_definitions.version IS 'Version, 1 upwards; submit picks the highest';
COMMENT ON COLUMN orchestrator.sequence_definitions.steps IS 'Validated step array (see orch_define_sequence)';
COMMENT ON COLUMN orchestrator.sequence_definitions.created_at IS 'When this version was defined';
COMMENT ON COLUMN orchestrator.sequence_definitions.created_by IS 'Role that defined it (recorded by the engine, not the caller); the steps'' functions run as this role';

------------------------------------------------------------------------------
-- Endpoints, secrets, notifications
------------------------------------------------------------------------------

CREATE TABLE orchestrator.endpoints (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
	url text NOT NULL CHECK (url ~* '^https?://[^/?#[:space:]]+[^[:space:]]*$'),
	timeout_ms integer NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 1 AND 3600000),
	headers jsonb NOT NULL DEFAULT '{}',
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.endpoints IS 'Where http and notify steps send requests: an edge function, Slack; written by orch_define_endpoint';
COMMENT ON COLUMN orchestrator.endpoints.name IS 'Name steps refer to in their "endpoint" field';
COMMENT ON COLUMN orchestrator.endpoints.url IS 'http or https URL the step POSTs to';
COMMENT ON COLUMN orchestrator.endpoints.timeout_ms IS 'Request timeout unless the step gives its own timeout_ms';
COMMENT ON COLUMN orchestrator.endpoints.headers IS 'Extra request headers; {{secret:NAME}} in a value is replaced by the secret when the request is sent';
COMMENT ON COLUMN orchestrator.endpoints.updated_at IS 'Last change';

CREATE TABLE orchestrator.secrets (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,100}$'),
	value text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.secrets IS 'Secret values referenced by endpoint headers; readable by no role but the extension owner (not dumped: set them again after a restore)';
COMMENT ON COLUMN orchestrator.secrets.name IS 'Name used as {{secret:NAME}} in endpoint headers';
COMMENT ON COLUMN orchestrator.secrets.value IS 'The secret itself; never copied into job state, history, logs or errors';
COMMENT ON COLUMN orchestrator.secrets.updated_at IS 'Last change';

CREATE TABLE orchestrator.notification_log (
	id bigserial PRIMARY KEY,
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	job_id uuid NOT NULL,
	step_name text NOT NULL,
	status text NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'sent', 'failed')),
	sent_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	slack_ts text
);
CREATE INDEX notification_log_user ON orchestrator.notification_log (user_id, sent_at);
CREATE INDEX notification_log_sending ON orchestrator.notification_log (job_id, step_name) WHERE status = 'sending';
COMMENT ON TABLE orchestrator.notification_log IS 'Slack messages sent by notify steps, for max_notifications_per_hour';
COMMENT ON COLUMN orchestrator.notification_log.id IS 'Entry id';
COMMENT ON COLUMN orchestrator.notification_log.org_id IS 'Organisation';
COMMENT ON COLUMN orchestrator.notification_log.user_id IS 'User the message was for';
COMMENT ON COLUMN orchestrator.notification_log.job_id IS 'Job that sent it';
COMMENT ON COLUMN orchestrator.notification_log.step_name IS 'Notify step that sent it';
COMMENT ON COLUMN orchestrator.notification_log.status IS 'sending (request under way), sent, failed';
COMMENT ON COLUMN orchestrator.notification_log.sent_at IS 'When the request was started';
COMMENT ON COLUMN orchestrator.notification_log.slack_ts IS 'Slack message timestamp (ts) of a sent message';

------------------------------------------------------------------------------
-- The queue: one row a job.  Kept lean: finished jobs leave the partial
-- indexes, and per-step updates touch no indexed column (HOT).
------------------------------------------------------------------------------

CREATE TABLE orchestrator.sequence_jobs (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	event_type text NOT NULL,
	event_source text NOT NULL,
	sequence_version integer NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'in_progress', 'awaiting_approval', 'completed', 'failed', 'cancelled')),
	run_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	current_step integer NOT NULL DEFAULT 0,
	attempts integer NOT NULL DEFAULT 0,
	reclaims integer NOT NULL DEFAULT 0,
	lease_owner integer,
	lease_expires_at timestamptz,
	fencing_token bigint NOT NULL DEFAULT 0,
	context jsonb NOT NULL,
	trigger_payload jsonb NOT NULL,
	event_chain jsonb NOT NULL DEFAULT '{"parent": null, "children": []}',
	parent_job_id uuid,
	chain_depth integer NOT NULL DEFAULT 1,
	last_error text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	started_at timestamptz,
	finished_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (fillfactor = 80);

CREATE INDEX sequence_jobs_runnable ON orchestrator.sequence_jobs (run_at) WHERE status = 'pending';
CREATE INDEX sequence_jobs_leased ON orchestrator.sequence_jobs (lease_expires_at) WHERE status = 'in_progress';
CREATE INDEX sequence_jobs_parent ON orchestrator.sequence_jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;

COMMENT ON TABLE orchestrator.sequence_jobs IS 'One row per orchestration job; context holds the seed''s SequenceState';
COMMENT ON COLUMN orchestrator.sequence_jobs.id IS 'Job id (sequence_job_id)';
COMMENT ON COLUMN orchestrator.sequence_jobs.org_id IS 'Organisation (distribution key)';
COMMENT ON COLUMN orchestrator.sequence_jobs.user_id IS 'User the job acts for';
COMMENT ON COLUMN orchestrator.sequence_jobs.event_type IS 'Event type that started the job';
COMMENT ON COLUMN orchestrator.sequence_jobs.event_source IS 'Where the event came from, e.g. webhook:meetingbaas';
COMMENT ON COLUMN orchestrator.sequence_jobs.sequence_version IS 'Sequence version the job runs, fixed at submit';
COMMENT ON COLUMN orchestrator.sequence_jobs.status IS 'pending | in_progress | awaiting_approval | completed | failed | cancelled';
COMMENT ON COLUMN orchestrator.sequence_jobs.run_at IS 'Earliest time a worker may claim the job (deferrals and retry backoff)';
COMMENT ON COLUMN orchestrator.sequence_jobs.current_step IS 'Index of the next step to run (0-based)';
COMMENT ON COLUMN orchestrator.sequence_jobs.attempts IS 'Failed attempts of the current step so far';
COMMENT ON COLUMN orchestrator.sequence_jobs.reclaims IS 'Times the job was taken back from a worker that died holding it; past orchestrator.max_reclaims the job fails';
COMMENT ON COLUMN orchestrator.sequence_jobs.lease_owner IS 'PID of the worker holding the lease';
COMMENT ON COLUMN orchestrator.sequence_jobs.lease_expires_at IS 'When the lease lapses and another worker may reclaim the job';
COMMENT ON COLUMN orchestrator.sequence_jobs.fencing_token IS 'Incremented on every claim; a write carrying an older token is discarded';
COMMENT ON COLUMN orchestrator.sequence_jobs.context IS 'SequenceState: event, context tiers, outputs, execution_metadata';
COMMENT ON COLUMN orchestrator.sequence_jobs.trigger_payload IS 'Raw payload of the event that started the job';
COMMENT ON COLUMN orchestrator.sequence_jobs.event_chain IS 'Links to parent and child jobs: {"parent": uuid, "children": [uuid]}';
COMMENT ON COLUMN orchestrator.sequence_jobs.parent_job_id IS 'Job that queued this one as a follow-up';
COMMENT ON COLUMN orchestrator.sequence_jobs.chain_depth IS 'Chain depth: 1 for an original event, parent''s depth + 1 for a follow-up (at most 3)';
COMMENT ON COLUMN orchestrator.sequence_jobs.last_error IS 'Last step error (redacted)';
COMMENT ON COLUMN orchestrator.sequence_jobs.created_at IS 'Submit time';
COMMENT ON COLUMN orchestrator.sequence_jobs.started_at IS 'First claim';
COMMENT ON COLUMN orchestrator.sequence_jobs.finished_at IS 'When it completed, failed or was cancelled';
COMMENT ON COLUMN orchestrator.sequence_jobs.updated_at IS 'Last state change';

CREATE TABLE orchestrator.event_log (
	id bigserial PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	org_id uuid,
	user_id uuid,
	event_type text NOT NULL,
	event_source text NOT NULL,
	outcome text NOT NULL CHECK (outcome IN ('accepted', 'deferred', 'skipped', 'duplicate')),
	reason text,
	job_id uuid,
	run_at timestamptz,
	parent_job_id uuid,
	dedupe_hash uuid,
	payload jsonb
);
CREATE INDEX event_log_dedupe ON orchestrator.event_log (org_id, dedupe_hash, created_at)
	WHERE outcome IN ('accepted', 'deferred');
CREATE INDEX event_log_job ON orchestrator.event_log (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX event_log_parent ON orchestrator.event_log (parent_job_id) WHERE parent_job_id IS NOT NULL;
COMMENT ON TABLE orchestrator.event_log IS 'Every orch_submit_event outcome, accepted or not: nothing is dropped silently';
COMMENT ON COLUMN orchestrator.event_log.id IS 'Entry id';
COMMENT ON COLUMN orchestrator.event_log.created_at IS 'Submit time';
COMMENT ON COLUMN orchestrator.event_log.org_id IS 'Organisation given by the caller';
COMMENT ON COLUMN orchestrator.event_log.user_id IS 'User given by the caller';
COMMENT ON COLUMN orchestrator.event_log.event_type IS 'Event type';
COMMENT ON COLUMN orchestrator.event_log.event_source IS 'Event source';
COMMENT ON COLUMN orchestrator.event_log.outcome IS 'accepted | deferred | skipped | duplicate';
COMMENT ON COLUMN orchestrator.event_log.reason IS 'Why it was deferred, skipped or a duplicate';
COMMENT ON COLUMN orchestrator.event_log.job_id IS 'Job created (accepted, deferred) or the earlier job it duplicates';
COMMENT ON COLUMN orchestrator.event_log.run_at IS 'When the job becomes runnable';
COMMENT ON COLUMN orchestrator.event_log.parent_job_id IS 'Parent job, for follow-ups';
COMMENT ON COLUMN orchestrator.event_log.dedupe_hash IS 'Identity for deduplication: type, user and payload, or the caller''s dedupe key';
COMMENT ON COLUMN orchestrator.event_log.payload IS 'Payload of an event that created no job, kept so nothing is lost';

CREATE TABLE orchestrator.step_history (
	id bigserial PRIMARY KEY,
	job_id uuid NOT NULL,
	org_id uuid NOT NULL,
	step_index integer,
	step_name text,
	kind text NOT NULL,
	attempt integer NOT NULL DEFAULT 1,
	outcome text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'skipped', 'retry_scheduled', 'deferred', 'lease_expired', 'cancelled', 'retry_requested', 'continuation', 'awaiting_approval', 'approved', 'edited')),
	output jsonb,
	error text,
	started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	finished_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	worker_pid integer,
	fencing_token bigint,
	http_status integer,
	scope text CHECK (scope IN ('user', 'service'))
);
CREATE INDEX step_history_job ON orchestrator.step_history (job_id, id);
CREATE INDEX step_history_service ON orchestrator.step_history (started_at) WHERE scope = 'service';
COMMENT ON TABLE orchestrator.step_history IS 'One row per step attempt, plus operator actions and lease reclaims';
COMMENT ON COLUMN orchestrator.step_history.id IS 'Entry id (orders entries of a job)';
COMMENT ON COLUMN orchestrator.step_history.job_id IS 'Job';
COMMENT ON COLUMN orchestrator.step_history.org_id IS 'Organisation of the job';
COMMENT ON COLUMN orchestrator.step_history.step_index IS 'Index of the step in the sequence (0-based)';
COMMENT ON COLUMN orchestrator.step_history.step_name IS 'Step name';
COMMENT ON COLUMN orchestrator.step_history.kind IS 'Step kind (sql, http, notify), approval for an approval decision, context for a context load, or operator / engine for actions on the job';
COMMENT ON COLUMN orchestrator.step_history.attempt IS 'Attempt number of the step, from 1';
COMMENT ON COLUMN orchestrator.step_history.outcome IS 'succeeded | failed | skipped | retry_scheduled | deferred (429, quiet hours, rate limit: not an attempt) | lease_expired | cancelled | retry_requested | continuation (time slice used, re-queued) | awaiting_approval (gate reached) | approved | edited (approval decisions)';
COMMENT ON COLUMN orchestrator.step_history.output IS 'Step output';
COMMENT ON COLUMN orchestrator.step_history.error IS 'Error message of a failed attempt (redacted)';
COMMENT ON COLUMN orchestrator.step_history.started_at IS 'When the attempt started';
COMMENT ON COLUMN orchestrator.step_history.finished_at IS 'When the attempt ended';
COMMENT ON COLUMN orchestrator.step_history.worker_pid IS 'PID of the worker (or backend) that wrote the row';
COMMENT ON COLUMN orchestrator.step_history.fencing_token IS 'Lease token the write carried';
COMMENT ON COLUMN orchestrator.step_history.http_status IS 'HTTP status of an http or notify step''s response, if one came';
COMMENT ON COLUMN orchestrator.step_history.scope IS 'How the step''s function ran: user (the job''s user''s claims, RLS applies) or service (org-wide, audited); NULL for steps without a function';

------------------------------------------------------------------------------
-- State helpers used by submit and the worker
------------------------------------------------------------------------------

CREATE FUNCTION orchestrator.next_active_time(p_user_id uuid, p_at timestamptz DEFAULT pg_catalog.now())
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	s time;
	e time;
	tz text;
	lt time;
	ld date;
BEGIN
	SELECT p.quiet_hours_start, p.quiet_hours_end, p.timezone INTO s, e, tz
	FROM orchestrator.user_preferences_source p WHERE p.user_id = p_user_id;
	IF s IS NULL OR e IS NULL OR s = e THEN
		RETURN NULL;
	END IF;
	lt := (p_at AT TIME ZONE tz)::time;
	ld := (p_at AT TIME ZONE tz)::date;
	IF s < e AND lt >= s AND lt < e THEN
		RETURN (ld + e) AT TIME ZONE tz;
	ELSIF s > e AND lt >= s THEN
		RETURN (ld + 1 + e) AT TIME ZONE tz;
	ELSIF s > e AND lt < e THEN
		RETURN (ld + e) AT TIME ZONE tz;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION orchestrator.next_active_time(uuid, timestamptz) IS 'NULL when the user is inside active hours at the given time, else the start of the next active window';

CREATE FUNCTION orchestrator.budget_exceeded(p_org_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_budget numeric;
BEGIN
	SELECT b.monthly_budget_usd INTO v_budget FROM orchestrator.cost_budgets b WHERE b.org_id = p_org_id;
	IF v_budget IS NULL THEN
		RETURN false;
	END IF;
	RETURN (SELECT COALESCE(sum(l.cost_usd), 0) FROM orchestrator.cost_ledger l
	        WHERE l.org_id = p_org_id
	          AND l.created_at >= date_trunc('month', pg_catalog.now(), 'UTC')) >= v_budget;
END
$$;
COMMENT ON FUNCTION orchestrator.budget_exceeded(uuid) IS 'True when the org has spent its budget for the current billing period (calendar month, UTC)';

CREATE FUNCTION orchestrator.redact(p_text text) RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'orch_redact_sql';
COMMENT ON FUNCTION orchestrator.redact(text) IS 'Masks email addresses (as [email]) and credentials (after Bearer/Basic/Token, values of secret-bearing keys, Slack tokens, JWTs, as [redacted]) in text stored as an error; workers mask their server log lines the same way';

CREATE FUNCTION orchestrator.initial_state(p_job_id uuid, p_type text, p_source text, p_org_id uuid,
	p_user_id uuid, p_payload jsonb, p_parent_job_id uuid, p_chain_depth integer)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object(
		'event', jsonb_build_object('type', p_type, 'source', p_source, 'org_id', p_org_id,
		                           'user_id', p_user_id, 'payload', p_payload,
		                           'parent_job_id', p_parent_job_id),
		'context', '{}'::jsonb,
		'steps_completed', '[]'::jsonb,
		'current_step', 0,
		'outputs', '{}'::jsonb,
		'pending_approvals', '[]'::jsonb,
		'queued_followups', '[]'::jsonb,
		'started_at', NULL,
		'cost_accumulated', 0,
		'execution_metadata', jsonb_build_object(
			'sequence_job_id', p_job_id, 'event_type', p_type, 'event_source', p_source,
			'steps_attempted', 0, 'steps_completed', 0, 'steps_failed', 0,
			'approval_gates_hit', 0, 'followups_queued', 0, 'total_duration_ms', 0,
			'total_ai_cost', 0, 'chain_depth', p_chain_depth))
$$;
COMMENT ON FUNCTION orchestrator.initial_state(uuid, text, text, uuid, uuid, jsonb, uuid, integer) IS 'The SequenceState a new job starts with';

CREATE FUNCTION orchestrator.load_tier1(p_org_id uuid, p_user_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	RETURN jsonb_build_object(
		'org', (SELECT to_jsonb(o) FROM orchestrator.org_source o WHERE o.id = p_org_id),
		'user', (SELECT jsonb_build_object('id', u.id, 'display_name', u.display_name)
		         FROM orchestrator.user_source u WHERE u.id = p_user_id),
		'preferences', (SELECT to_jsonb(p) - 'user_id' - 'org_id'
		                FROM orchestrator.user_preferences_source p WHERE p.user_id = p_user_id),
		'features', COALESCE((SELECT jsonb_object_agg(f.feature_key, f.is_enabled)
		                      FROM orchestrator.feature_settings_source f WHERE f.org_id = p_org_id), '{}'),
		'cost_budget', (SELECT jsonb_build_object('monthly_budget_usd', b.monthly_budget_usd)
		                FROM orchestrator.cost_budgets b WHERE b.org_id = p_org_id));
END
$$;
COMMENT ON FUNCTION orchestrator.load_tier1(uuid, uuid) IS 'Tier 1 context (org, user preferences, feature settings, budget), loaded when a job first starts';

/*
 * advance_state folds one step result into the SequenceState and its
 * execution_metadata.  STABLE, like the jsonb builders it calls, and a
 * single expression, so it is inlined into the write-back's kept plan.  outcome: succeeded | skipped | failed | retry_scheduled
 * | deferred (a deferral is not an attempt) | awaiting_approval (an approval
 * gate: p_output describes the pending action).
 */
CREATE FUNCTION orchestrator.advance_state(p_state jsonb, p_step_name text, p_outcome text,
	p_output jsonb, p_duration_ms double precision, p_next_step integer, p_followups jsonb DEFAULT NULL,
	p_cost_usd numeric DEFAULT 0)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT p_state
		|| jsonb_build_object(
			'current_step', p_next_step,
			'queued_followups', (p_state->'queued_followups') || COALESCE(p_followups, '[]'),
			'pending_approvals', CASE WHEN p_outcome = 'awaiting_approval'
			                          THEN (p_state->'pending_approvals') || jsonb_build_array(p_output)
			                          ELSE p_state->'pending_approvals' END,
			'cost_accumulated', (p_state->>'cost_accumulated')::numeric + COALESCE(p_cost_usd, 0),
			'outputs', CASE WHEN p_outcome = 'succeeded'
			                THEN p_state->'outputs' || jsonb_build_object(p_step_name, p_output)
			                ELSE p_state->'outputs' END,
			'steps_completed', CASE WHEN p_outcome = 'succeeded'
			                        THEN (p_state->'steps_completed') || to_jsonb(p_step_name)
			                        ELSE p_state->'steps_completed' END,
			'execution_metadata', (p_state->'execution_metadata') || jsonb_build_object(
				'steps_attempted', (p_state->'execution_metadata'->>'steps_attempted')::int
					+ CASE WHEN p_outcome IN ('skipped', 'deferred', 'awaiting_approval') THEN 0 ELSE 1 END,
				'approval_gates_hit', (p_state->'execution_metadata'->>'approval_gates_hit')::int
					+ CASE WHEN p_outcome = 'awaiting_approval' THEN 1 ELSE 0 END,
				'steps_completed', (p_state->'execution_metadata'->>'steps_completed')::int
					+ CASE WHEN p_outcome = 'succeeded' THEN 1 ELSE 0 END,
				'steps_failed', (p_state->'execution_metadata'->>'steps_failed')::int
					+ CASE WHEN p_outcome = 'failed' THEN 1 ELSE 0 END,
				'total_ai_cost', (p_state->'execution_metadata'->>'total_ai_cost')::numeric + COALESCE(p_cost_usd, 0),
				'followups_queued', (p_state->'execution_metadata'->>'followups_queued')::int
					+ COALESCE(jsonb_array_length(jsonb_path_query_array(p_followups,
					           '$[*] ? (@.outcome == "accepted" || @.outcome == "deferred")')), 0),
				'total_duration_ms', round(((p_state->'execution_metadata'->>'total_duration_ms')::numeric
					+ p_duration_ms::numeric), 3)))
$$;
COMMENT ON FUNCTION orchestrator.advance_state(jsonb, text, text, jsonb, double precision, integer, jsonb, numeric) IS 'Folds one step result into a SequenceState (outputs, steps_completed, execution_metadata)';

/*
 * queue_followups turns a finished step's "followups" into events: for each
 * item its jsonpath for_each selects in the state (once when absent), one
 * event of the follow-up's type for the job's org and user, with a payload
 * whose string values starting "$" are read from the state and "@" from the
 * item.  Each goes through orch_submit_event with the job as parent, in the
 * step's transaction: chain depth (at most 3), dedupe and quiet hours apply,
 * and a refused one is logged and creates nothing.  Returns what happened.
 */
CREATE FUNCTION orchestrator.queue_followups(p_job_id uuid, p_step jsonb, p_state jsonb, p_output jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_fu jsonb;
	v_item jsonb;
	v_payload jsonb;
	v_kv record;
	v_val jsonb;
	r record;
	v_out jsonb := '[]';
BEGIN
	-- selectors see the state with this step's output in it
	p_state := jsonb_set(p_state, '{outputs}', (p_state->'outputs') || jsonb_build_object(p_step->>'name', p_output));
	FOR v_fu IN SELECT value FROM jsonb_array_elements(COALESCE(p_step->'followups', '[]')) LOOP
		FOR v_item IN
			SELECT i FROM jsonb_path_query(p_state, (v_fu->>'for_each')::jsonpath, '{}', true) AS i WHERE v_fu ? 'for_each'
			UNION ALL SELECT 'null'::jsonb WHERE NOT v_fu ? 'for_each'
		LOOP
			v_payload := '{}';
			FOR v_kv IN SELECT key, value FROM jsonb_each(COALESCE(v_fu->'payload', '{}')) LOOP
				v_val := v_kv.value;
				IF jsonb_typeof(v_val) = 'string' AND (v_val #>> '{}') ~ '^\$' THEN
					v_val := jsonb_path_query_first(p_state, (v_val #>> '{}')::jsonpath, '{}', true);
				ELSIF jsonb_typeof(v_val) = 'string' AND (v_val #>> '{}') ~ '^@' THEN
					v_val := jsonb_path_query_first(v_item, ('$' || substr(v_val #>> '{}', 2))::jsonpath, '{}', true);
				END IF;
				v_payload := v_payload || jsonb_build_object(v_kv.key, COALESCE(v_val, 'null'::jsonb));
			END LOOP;
			SELECT * INTO r FROM @extschema@.orch_submit_event(v_fu->>'type', 'orchestrator:chain',
				(p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid, v_payload, p_job_id);
			v_out := v_out || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
				'type', v_fu->>'type', 'source', 'orchestrator:chain', 'payload', v_payload,
				'parent_job_id', p_job_id, 'outcome', r.outcome, 'job_id', r.job_id, 'reason', r.reason)));
		END LOOP;
	END LOOP;
	RETURN v_out;
END
$$;
COMMENT ON FUNCTION orchestrator.queue_followups(uuid, jsonb, jsonb, jsonb) IS 'Queues a step''s follow-up events (chain depth at most 3); for the worker only';

CREATE TABLE orchestrator.budget_notices (
	org_id uuid NOT NULL,
	period_start date NOT NULL,
	notified_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	job_id uuid,
	PRIMARY KEY (org_id, period_start)
);
COMMENT ON TABLE orchestrator.budget_notices IS 'One row per org and billing period in which the budget halted a sequence: the Slack notice goes out once';
COMMENT ON COLUMN orchestrator.budget_notices.org_id IS 'Organisation';
COMMENT ON COLUMN orchestrator.budget_notices.period_start IS 'First day of the billing period (calendar month, UTC)';
COMMENT ON COLUMN orchestrator.budget_notices.notified_at IS 'When the first halt of the period happened';
COMMENT ON COLUMN orchestrator.budget_notices.job_id IS 'The job the budget first halted';

/*
 * budget_gate is called before every step marked "ai": true, outside the
 * step's subtransaction.  Within budget it returns true.  Over budget it
 * returns false (the caller halts the whole sequence) and, the first time
 * in the org's billing period, queues the seed's Slack notice as an
 * orchestrator:budget_notice event for the job's user.
 */
CREATE FUNCTION orchestrator.budget_gate(p_job_id uuid, p_state jsonb) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_org uuid := (p_state->'event'->>'org_id')::uuid;
BEGIN
	IF NOT orchestrator.budget_exceeded(v_org) THEN
		RETURN true;
	END IF;
	INSERT INTO orchestrator.budget_notices (org_id, period_start, job_id)
	VALUES (v_org, date_trunc('month', now(), 'UTC')::date, p_job_id)
	ON CONFLICT ON CONSTRAINT budget_notices_pkey DO NOTHING;
	IF FOUND THEN
		PERFORM @extschema@.orch_submit_event('orchestrator:budget_notice', 'orchestrator:budget', v_org,
			(p_state->'event'->>'user_id')::uuid, jsonb_build_object('halted_job_id', p_job_id));
	END IF;
	RETURN false;
END
$$;
COMMENT ON FUNCTION orchestrator.budget_gate(uuid, jsonb) IS 'Checks the org''s AI budget before an ai step; over budget, queues the Slack notice once per billing period; for the worker only';

/*
 * record_cost books what an ai step spent, reported as a number "cost_usd"
 * in its output, to the org's ledger in the step's own transaction.
 */
CREATE FUNCTION orchestrator.record_cost(p_job_id uuid, p_state jsonb, p_step_name text, p_output jsonb) RETURNS numeric
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_cost numeric;
BEGIN
	IF jsonb_typeof(p_output->'cost_usd') IS DISTINCT FROM 'number' THEN
		RETURN 0;
	END IF;
	v_cost := (p_output->>'cost_usd')::numeric;
	IF v_cost < 0 THEN
		RAISE EXCEPTION 'step "%" reported a negative cost_usd', p_step_name USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO orchestrator.cost_ledger (org_id, job_id, step_name, cost_usd)
	VALUES ((p_state->'event'->>'org_id')::uuid, p_job_id, p_step_name, v_cost);
	RETURN v_cost;
END
$$;
COMMENT ON FUNCTION orchestrator.record_cost(uuid, jsonb, text, jsonb) IS 'Books an ai step''s reported cost_usd to the ledger; for the worker only';

-- The seed's budget notice: a built-in sequence for the internal event type,
-- sent to the halted job's user through the endpoint named "slack".
INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
VALUES ('orchestrator:budget_notice', 1,
	'[{"name": "notify-budget", "kind": "notify", "endpoint": "slack",
	   "text": "AI budget limit reached. Pausing proactive workflows until next billing period.",
	   "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 60000}}]',
	CURRENT_USER::regrole);

/*
 * failure_notice: the seed's on_failure stop, "halt the entire sequence and
 * notify the user via Slack with error context".  Queued in the failing
 * job's transaction as the internal event orchestrator:failure_notice, sent
 * by the built-in sequence below.  Not for the engine's own events, and not
 * for a budget halt (that has its own notice).
 */
CREATE FUNCTION orchestrator.failure_notice(p_job_id uuid, p_state jsonb, p_step_name text, p_error text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	PERFORM @extschema@.orch_submit_event('orchestrator:failure_notice', 'orchestrator:failure',
		(p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid,
		jsonb_build_object('failed_job_id', p_job_id, 'event_type', p_state->'event'->>'type',
		                   'step', p_step_name, 'error', left(orchestrator.redact(p_error), 500)));
END
$$;
COMMENT ON FUNCTION orchestrator.failure_notice(uuid, jsonb, text, text) IS 'Queues the Slack notice for a sequence halted by a failing step; for the worker only';

CREATE FUNCTION orchestrator.failure_message(p_state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object(
		'text', format('Workflow %s stopped at step %s: %s',
		               p_state->'event'->'payload'->>'event_type', p_state->'event'->'payload'->>'step',
		               p_state->'event'->'payload'->>'error'),
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('*Workflow %s stopped* at step `%s`', p_state->'event'->'payload'->>'event_type',
				       p_state->'event'->'payload'->>'step'))),
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('>%s', p_state->'event'->'payload'->>'error'))),
			jsonb_build_object('type', 'context', 'elements', jsonb_build_array(jsonb_build_object('type', 'mrkdwn',
				'text', format('job %s', p_state->'event'->'payload'->>'failed_job_id'))))))
$$;
COMMENT ON FUNCTION orchestrator.failure_message(jsonb) IS 'The Slack message of an orchestrator:failure_notice event';

INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
VALUES ('orchestrator:failure_notice', 1,
	'[{"name": "notify-failure", "kind": "notify", "endpoint": "slack", "function": "orchestrator.failure_message",
	   "scope": "service", "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 60000}}]',
	CURRENT_USER::regrole);

/*
 * resolve_state_function resolves the name of a function taking the state
 * (jsonb) in the current search_path: the function, its schema-qualified
 * name, and whether it returns a single jsonb value.  fn is NULL when no
 * such function exists.  Every definition that names a function (steps,
 * context sources) goes through it.
 */
CREATE FUNCTION orchestrator.resolve_state_function(p_name text,
	OUT fn regprocedure, OUT qualified text, OUT returns_jsonb boolean)
RETURNS record
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	BEGIN
		fn := pg_catalog.to_regprocedure(p_name || '(jsonb)');
	EXCEPTION WHEN OTHERS THEN
		fn := NULL;
	END;
	SELECT format('%I.%I', n.nspname, p.proname),
	       p.prorettype = 'jsonb'::regtype AND NOT p.proretset AND p.prokind = 'f'
	INTO qualified, returns_jsonb
	FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
	WHERE p.oid = fn;
END
$$;
COMMENT ON FUNCTION orchestrator.resolve_state_function(text) IS 'Resolves a step or context-source function name (f(jsonb)) in the current search_path: the function, its qualified name, whether it returns jsonb';

------------------------------------------------------------------------------
-- Context tiers 2 and 3: sources are definitions
--
-- Tier 1 (org, user, preferences, features, budget) is built in and loaded
-- when a job is first claimed (orchestrator.load_tier1).  Tier 2 sources are
-- loaded before a step only when the event's payload names a contact_id or
-- deal_id; tier 3 sources only just before a step that names them in
-- requires_context, never speculatively.  Each source is a SQL function
-- (state jsonb -> jsonb, run user-scoped as the source's definer) or an
-- endpoint (POSTed the state like an http step).
------------------------------------------------------------------------------

CREATE TABLE orchestrator.context_sources (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,100}$'),
	tier integer NOT NULL CHECK (tier IN (2, 3)),
	function text,
	endpoint text REFERENCES orchestrator.endpoints (name),
	created_by regrole NOT NULL,
	description text,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK ((function IS NULL) <> (endpoint IS NULL))
);
COMMENT ON TABLE orchestrator.context_sources IS 'Context tiers 2 and 3: where a job''s per-contact and on-demand context comes from (written by orch_define_context_source)';
COMMENT ON COLUMN orchestrator.context_sources.name IS 'Name; state.context.tier2.<name> or tier3.<name> holds what it returned, and steps list tier 3 names in requires_context';
COMMENT ON COLUMN orchestrator.context_sources.tier IS '2: loaded when the payload names a contact_id or deal_id; 3: loaded only for steps that require it';
COMMENT ON COLUMN orchestrator.context_sources.function IS 'SQL function taking the state (jsonb) and returning jsonb, schema-qualified; or NULL';
COMMENT ON COLUMN orchestrator.context_sources.endpoint IS 'Endpoint POSTed the state, like an http step; or NULL';
COMMENT ON COLUMN orchestrator.context_sources.created_by IS 'Role that defined it; a function source runs as this role, user-scoped';
COMMENT ON COLUMN orchestrator.context_sources.description IS 'What it loads';
COMMENT ON COLUMN orchestrator.context_sources.updated_at IS 'Last change';

/*
 * context_needed lists the sources to load: when p_tier2, the tier 2 ones
 * not loaded yet; the tier 3 ones step p_step (NULL: none) requires that
 * are not loaded yet.  A source that failed is recorded (as null) and not
 * tried again for the job.
 */
CREATE FUNCTION orchestrator.context_needed(p_state jsonb, p_step jsonb, p_tier2 boolean,
	OUT name text, OUT tier integer, OUT function text, OUT endpoint text, OUT run_as oid)
RETURNS SETOF record
LANGUAGE sql STABLE
AS $$
	SELECT s.name, s.tier, s.function, s.endpoint, s.created_by::oid
	FROM orchestrator.context_sources s
	WHERE (s.tier = 2 AND p_tier2 AND NOT COALESCE(p_state->'context'->'tier2' ? s.name, false))
	   OR (s.tier = 3 AND COALESCE(p_step->'requires_context' ? s.name, false)
	       AND NOT COALESCE(p_state->'context'->'tier3' ? s.name, false))
	ORDER BY s.tier, s.name
$$;
COMMENT ON FUNCTION orchestrator.context_needed(jsonb, jsonb, boolean) IS 'Context sources not loaded yet: tier 2 when asked for, tier 3 a step requires; for the worker only';

/*
 * with_context_source puts one loaded source into a state: its data under
 * context.tier<N>.<name> (null when it failed) and its error, if any,
 * under context.errors.<name>.  A single expression, inlined into the
 * transition that stores it (job_state.c).
 */
CREATE FUNCTION orchestrator.with_context_source(p_state jsonb, p_tier integer, p_name text, p_data jsonb,
	p_error text)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_set(
		CASE WHEN p_error IS NULL THEN p_state
		     ELSE jsonb_set(p_state, '{context,errors}',
		                    COALESCE(p_state->'context'->'errors', '{}') || jsonb_build_object(p_name, p_error)) END,
		ARRAY['context', 'tier' || p_tier],
		COALESCE(p_state->'context'->('tier' || p_tier), '{}') || jsonb_build_object(p_name, p_data))
$$;
COMMENT ON FUNCTION orchestrator.with_context_source(jsonb, integer, text, jsonb, text) IS 'A state with one loaded context source (or its error) stored in it';

/*
 * without_transcripts drops transcript text from what the engine stores:
 * the seed references meeting transcripts by id and never copies them into
 * orchestrator state.  Keys transcript, transcript_text and transcript_body
 * go, at any depth; ids (transcript_id, meeting_id) stay.  Values whose text
 * never mentions such a key are returned as they are, without a walk.
 */
CREATE FUNCTION orchestrator.strip_transcripts(p_value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF jsonb_typeof(p_value) = 'object' THEN
		RETURN (SELECT COALESCE(jsonb_object_agg(e.key, orchestrator.strip_transcripts(e.value)), '{}'::jsonb)
		        FROM jsonb_each(p_value) e
		        WHERE e.key NOT IN ('transcript', 'transcript_text', 'transcript_body'));
	ELSIF jsonb_typeof(p_value) = 'array' THEN
		RETURN (SELECT COALESCE(jsonb_agg(orchestrator.strip_transcripts(e.value) ORDER BY e.ord), '[]'::jsonb)
		        FROM jsonb_array_elements(p_value) WITH ORDINALITY AS e(value, ord));
	END IF;
	RETURN p_value;
END
$$;
COMMENT ON FUNCTION orchestrator.strip_transcripts(jsonb) IS 'Removes the keys transcript, transcript_text and transcript_body at any depth (used by without_transcripts)';

CREATE FUNCTION orchestrator.without_transcripts(p_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
	SELECT CASE WHEN strpos(p_value::text, '"transcript') = 0 THEN p_value
	            ELSE orchestrator.strip_transcripts(p_value) END
$$;
COMMENT ON FUNCTION orchestrator.without_transcripts(jsonb) IS 'Removes transcript text (keys transcript, transcript_text, transcript_body, at any depth) from a payload, output or edit: transcripts are referenced by id';

/*
 * store_context_source validates a context source and stores it, recording
 * the real caller as the role a function source runs as.  It is the only way
 * into context_sources.  Here nobody's search_path applies: a function must
 * resolve as given (orch_define_context_source qualifies it in the caller's
 * search_path first) and is stored qualified.
 */
CREATE FUNCTION orchestrator.store_context_source(p_name text, p_tier integer, p_function text, p_endpoint text,
	p_description text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_fn record;
BEGIN
	IF p_name IS NULL OR p_tier IS NULL THEN
		RAISE EXCEPTION 'name and tier must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF p_name !~ '^[A-Za-z0-9_.-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid context source name "%"', p_name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 100 letters, digits, "_", "." or "-".';
	END IF;
	IF p_tier NOT IN (2, 3) THEN
		RAISE EXCEPTION 'context source tier must be 2 or 3, not %', p_tier
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Tier 1 (org, user, preferences, features, budget) is built in and always loaded.';
	END IF;
	IF (p_function IS NULL) = (p_endpoint IS NULL) THEN
		RAISE EXCEPTION 'a context source needs exactly one of function and endpoint'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_function IS NOT NULL THEN
		v_fn := orchestrator.resolve_state_function(p_function);
		IF v_fn.fn IS NULL OR NOT v_fn.returns_jsonb THEN
			RAISE EXCEPTION 'context source "%": function "%(jsonb)" does not exist or does not return jsonb', p_name, p_function
				USING ERRCODE = 'undefined_function',
				      HINT = 'The function takes the state as jsonb and returns the context as jsonb.';
		END IF;
		p_function := v_fn.qualified;
	ELSIF NOT EXISTS (SELECT 1 FROM orchestrator.endpoints e WHERE e.name = p_endpoint) THEN
		RAISE EXCEPTION 'context source "%": endpoint "%" does not exist', p_name, p_endpoint
			USING ERRCODE = 'undefined_object', HINT = 'Define it first with orch_define_endpoint.';
	END IF;
	IF orchestrator.guarded_effect(jsonb_build_object('name', p_name, 'function', p_function, 'endpoint', p_endpoint)) IS NOT NULL THEN
		RAISE EXCEPTION 'context source "%" would send email, change a deal stage or create tasks', p_name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Context sources only read; such an action belongs in a step, where it is gated behind approval.';
	END IF;
	INSERT INTO orchestrator.context_sources AS c (name, tier, function, endpoint, created_by, description)
	VALUES (p_name, p_tier, p_function, p_endpoint, orchestrator.calling_role(), p_description)
	ON CONFLICT ON CONSTRAINT context_sources_pkey DO UPDATE
	SET tier = excluded.tier, function = excluded.function, endpoint = excluded.endpoint,
	    created_by = excluded.created_by, description = excluded.description, updated_at = now();
END
$$;
COMMENT ON FUNCTION orchestrator.store_context_source(text, integer, text, text, text) IS 'Validates and stores a context source as the calling role (used by orch_define_context_source)';

/*
 * orch_define_context_source runs as its caller, so the function name
 * resolves in the caller's search_path; store_context_source validates and
 * stores it.
 */
CREATE FUNCTION orch_define_context_source(name text, tier integer, function text DEFAULT NULL,
	endpoint text DEFAULT NULL, description text DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $$
	SELECT orchestrator.store_context_source(name, tier,
		COALESCE((orchestrator.resolve_state_function(function)).qualified, function), endpoint, description)
$$;
COMMENT ON FUNCTION orch_define_context_source(text, integer, text, text, text) IS
'Defines (or replaces) a tier 2 or tier 3 context source: a SQL function or an endpoint';

/*
 * transition_job: the one way SQL moves a job (cancel, retry, an approval
 * decision).  The caller holds the job's row lock and passes the status it
 * saw; job_state.c checks the edge is legal, writes the row and the
 * history row, and returns false when the job was no longer in p_from.
 */
CREATE FUNCTION orchestrator.transition_job(p_job_id uuid, p_from text, p_to text, p_kind text, p_outcome text,
	p_step_index integer, p_step_name text DEFAULT NULL, p_context jsonb DEFAULT NULL,
	p_current_step integer DEFAULT NULL, p_attempts integer DEFAULT NULL, p_reclaims integer DEFAULT NULL,
	p_new_token boolean DEFAULT false, p_clear_error boolean DEFAULT false, p_output jsonb DEFAULT NULL,
	p_note text DEFAULT NULL)
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_transition_job_sql';
COMMENT ON FUNCTION orchestrator.transition_job(uuid, text, text, text, text, integer, text, jsonb, integer, integer, integer, boolean, boolean, jsonb, text) IS
'Moves a job from one status to another along a legal edge, with its history row (for orch_cancel_job, orch_retry_job and approval decisions)';

------------------------------------------------------------------------------
-- Approval gates (HITL)
--
-- A step with requires_approval stops the job before it runs: a pending
-- action row holds what is needed to resume, a Slack message rendered from
-- a HITL pattern goes to the user (the internal event
-- orchestrator:approval_request), and the job waits in awaiting_approval.
-- orch_resolve_approval, or a slack_approval_received event, resumes it.
------------------------------------------------------------------------------

CREATE TABLE orchestrator.hitl_patterns (
	name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
	pattern jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.hitl_patterns IS 'HITL message patterns: how an approval request is shown in Slack (written by orch_define_hitl_pattern)';
COMMENT ON COLUMN orchestrator.hitl_patterns.name IS 'Name a step''s approval.pattern refers to';
COMMENT ON COLUMN orchestrator.hitl_patterns.pattern IS '{"title": text with {{key}} placeholders filled from the draft, "fields": [{"label", "path" (jsonpath over the draft)}], "actions": subset of approve, edit, skip, cancel}';
COMMENT ON COLUMN orchestrator.hitl_patterns.updated_at IS 'Last change';

INSERT INTO orchestrator.hitl_patterns (name, pattern) VALUES
('email_draft', '{"title": "Approve email to {{to}}: {{subject}}",
  "fields": [{"label": "To", "path": "$.to"}, {"label": "Subject", "path": "$.subject"}, {"label": "Body", "path": "$.body"}],
  "actions": ["approve", "edit", "skip", "cancel"]}'),
('crm_update', '{"title": "Approve deal stage change: {{deal_name}} {{from_stage}} -> {{to_stage}}",
  "fields": [{"label": "Deal", "path": "$.deal_name"}, {"label": "From", "path": "$.from_stage"}, {"label": "To", "path": "$.to_stage"}, {"label": "Why", "path": "$.reason"}],
  "actions": ["approve", "edit", "skip", "cancel"]}'),
('task_creation', '{"title": "Create tasks from the meeting?",
  "fields": [{"label": "Tasks", "path": "$.tasks[*].title"}],
  "actions": ["approve", "edit", "skip", "cancel"]}'),
('generic', '{"title": "Approve step {{step}}?", "fields": [], "actions": ["approve", "skip", "cancel"]}');

CREATE TABLE orchestrator.slack_pending_actions (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	job_id uuid NOT NULL,
	step_index integer NOT NULL,
	step_name text NOT NULL,
	effect text,
	pattern text NOT NULL,
	draft_step text,
	draft jsonb,
	message jsonb NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'approved', 'edited', 'skipped', 'cancelled', 'superseded')),
	modifications jsonb,
	resolved_by text,
	resolved_via text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	resolved_at timestamptz
);
CREATE UNIQUE INDEX slack_pending_actions_open ON orchestrator.slack_pending_actions (job_id, step_index)
	WHERE status = 'pending';
CREATE INDEX slack_pending_actions_user ON orchestrator.slack_pending_actions (user_id, created_at)
	WHERE status = 'pending';
COMMENT ON TABLE orchestrator.slack_pending_actions IS 'Approval requests: one per approval gate a job reached, with everything needed to resume it';
COMMENT ON COLUMN orchestrator.slack_pending_actions.id IS 'pending_action_id, carried by the Slack buttons';
COMMENT ON COLUMN orchestrator.slack_pending_actions.org_id IS 'Organisation';
COMMENT ON COLUMN orchestrator.slack_pending_actions.user_id IS 'The user who must approve (or an administrator)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.job_id IS 'The paused job (sequence_job_id)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.step_index IS 'The gated step (resume_step), 0-based';
COMMENT ON COLUMN orchestrator.slack_pending_actions.step_name IS 'The gated step''s name';
COMMENT ON COLUMN orchestrator.slack_pending_actions.effect IS 'email_send, deal_stage_change or task_create when the engine recognised one (always gated)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.pattern IS 'HITL pattern the message was rendered from';
COMMENT ON COLUMN orchestrator.slack_pending_actions.draft_step IS 'Earlier step whose output is the draft; an edit is applied to that output';
COMMENT ON COLUMN orchestrator.slack_pending_actions.draft IS 'The draft as shown to the user';
COMMENT ON COLUMN orchestrator.slack_pending_actions.message IS 'The Slack message sent: text and Block Kit blocks with the action buttons';
COMMENT ON COLUMN orchestrator.slack_pending_actions.status IS 'pending, then approved | edited | skipped | cancelled, or superseded when the job moved on without it';
COMMENT ON COLUMN orchestrator.slack_pending_actions.modifications IS 'The user''s edits (action edit)';
COMMENT ON COLUMN orchestrator.slack_pending_actions.resolved_by IS 'Who resolved it: the user id, or the administrator role';
COMMENT ON COLUMN orchestrator.slack_pending_actions.resolved_via IS 'orch_resolve_approval or slack_approval_received';
COMMENT ON COLUMN orchestrator.slack_pending_actions.created_at IS 'When the job reached the gate';
COMMENT ON COLUMN orchestrator.slack_pending_actions.resolved_at IS 'When it was resolved';

/*
 * guarded_effect recognises the steps the seed always gates, whatever the
 * definition says: an email send, a deal-stage change, a task creation.  A
 * step is recognised by its "effect" field, or by its name, function,
 * endpoint or the endpoint's URL matching (case-insensitively)
 * email-send / send-email, deal-stage, create-task(s) / task-creation,
 * with "-", "_", "." or nothing between the words.
 */
CREATE FUNCTION orchestrator.guarded_effect(p_step jsonb) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_names text;
BEGIN
	IF p_step->>'effect' IN ('email_send', 'deal_stage_change', 'task_create') THEN
		RETURN p_step->>'effect';
	END IF;
	v_names := concat_ws(' ', p_step->>'name', p_step->>'function', p_step->>'endpoint',
		(SELECT e.url FROM orchestrator.endpoints e WHERE e.name = p_step->>'endpoint'));
	IF v_names ~* '(email[-_.]?send|send[-_.]?(an[-_.]?)?e?mail)' THEN
		RETURN 'email_send';
	ELSIF v_names ~* 'deal[-_.]?stage' THEN
		RETURN 'deal_stage_change';
	ELSIF v_names ~* '(create[-_.]?tasks?|tasks?[-_.]?creat)' THEN
		RETURN 'task_create';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION orchestrator.guarded_effect(jsonb) IS 'email_send, deal_stage_change or task_create when a step is one the engine always gates behind approval, else NULL';

/*
 * render_approval builds the Slack message for a pending action from its
 * HITL pattern: a header from the title ({{key}} filled from the draft,
 * {{step}} the step's name), one field per pattern field (its jsonpath over
 * the draft), and one button per action, each carrying the
 * slack_approval_received payload as its value.
 */
CREATE FUNCTION orchestrator.render_approval(p_pattern jsonb, p_draft jsonb, p_id uuid, p_job_id uuid,
	p_step_index integer, p_step_name text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_title text := COALESCE(p_pattern->>'title', 'Approve step {{step}}?');
	v_key text;
	v_fields jsonb := '[]';
	v_field jsonb;
	v_val text;
	v_buttons jsonb := '[]';
	v_action text;
BEGIN
	v_title := replace(v_title, '{{step}}', p_step_name);
	FOR v_key IN SELECT (regexp_matches(v_title, '\{\{([A-Za-z0-9_]+)\}\}', 'g'))[1] LOOP
		v_title := replace(v_title, '{{' || v_key || '}}', COALESCE(p_draft->>v_key, '?'));
	END LOOP;
	FOR v_field IN SELECT value FROM jsonb_array_elements(COALESCE(p_pattern->'fields', '[]')) LOOP
		SELECT string_agg(CASE WHEN jsonb_typeof(x) = 'string' THEN x #>> '{}' ELSE x::text END, E'\n')
		INTO v_val
		FROM jsonb_path_query(COALESCE(p_draft, '{}'), (v_field->>'path')::jsonpath, '{}', true) AS x;
		v_fields := v_fields || jsonb_build_array(jsonb_build_object('type', 'mrkdwn',
			'text', format('*%s*%s%s', v_field->>'label', E'\n', COALESCE(v_val, '-'))));
	END LOOP;
	FOR v_action IN SELECT value #>> '{}' FROM jsonb_array_elements(COALESCE(p_pattern->'actions', '["approve", "skip", "cancel"]')) LOOP
		v_buttons := v_buttons || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
			'type', 'button',
			'action_id', 'orch_' || v_action,
			'text', jsonb_build_object('type', 'plain_text', 'text', initcap(v_action)),
			'style', CASE v_action WHEN 'approve' THEN 'primary' WHEN 'cancel' THEN 'danger' END,
			'value', jsonb_build_object('action', v_action, 'pending_action_id', p_id,
			                            'sequence_job_id', p_job_id, 'resume_step', p_step_index)::text)));
	END LOOP;
	RETURN jsonb_build_object(
		'text', v_title,
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'header', 'text', jsonb_build_object('type', 'plain_text', 'text', left(v_title, 150))))
			|| CASE WHEN jsonb_array_length(v_fields) > 0
			        THEN jsonb_build_array(jsonb_build_object('type', 'section', 'fields', v_fields)) ELSE '[]' END
			|| jsonb_build_array(jsonb_build_object('type', 'actions', 'block_id', 'orch_approval:' || p_id,
			                                         'elements', v_buttons)));
END
$$;
COMMENT ON FUNCTION orchestrator.render_approval(jsonb, jsonb, uuid, uuid, integer, text) IS 'Renders a HITL pattern into a Slack message (text and Block Kit blocks with action buttons)';

/*
 * open_approval is called by the worker when a job reaches a gated step:
 * it records the pending action, renders its message and queues the Slack
 * delivery (orchestrator:approval_request), in the job's transaction.
 * Returns what the step history and state record about the gate.
 */
CREATE FUNCTION orchestrator.open_approval(p_job_id uuid, p_step_index integer, p_step jsonb, p_state jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_id uuid := gen_random_uuid();
	v_effect text := orchestrator.guarded_effect(p_step);
	v_pattern_name text;
	v_pattern jsonb;
	v_draft_step text := p_step->'approval'->>'draft';
	v_draft jsonb;
	v_message jsonb;
BEGIN
	v_pattern_name := COALESCE(p_step->'approval'->>'pattern',
		CASE v_effect WHEN 'email_send' THEN 'email_draft' WHEN 'deal_stage_change' THEN 'crm_update'
		              WHEN 'task_create' THEN 'task_creation' ELSE 'generic' END);
	SELECT h.pattern INTO v_pattern FROM orchestrator.hitl_patterns h WHERE h.name = v_pattern_name;
	IF v_pattern IS NULL THEN
		RAISE EXCEPTION 'HITL pattern "%" of step "%" does not exist', v_pattern_name, p_step->>'name'
			USING ERRCODE = 'undefined_object', HINT = 'Define it with orch_define_hitl_pattern.';
	END IF;
	IF v_draft_step IS NOT NULL THEN
		v_draft := p_state->'outputs'->v_draft_step;
	END IF;
	v_message := orchestrator.render_approval(v_pattern, v_draft, v_id, p_job_id, p_step_index, p_step->>'name');
	INSERT INTO orchestrator.slack_pending_actions
		(id, org_id, user_id, job_id, step_index, step_name, effect, pattern, draft_step, draft, message)
	VALUES (v_id, (p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid, p_job_id,
	        p_step_index, p_step->>'name', v_effect, v_pattern_name, v_draft_step, v_draft, v_message);
	PERFORM @extschema@.orch_submit_event('orchestrator:approval_request', 'orchestrator:approval',
		(p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid,
		jsonb_build_object('pending_action_id', v_id, 'sequence_job_id', p_job_id));
	RETURN jsonb_strip_nulls(jsonb_build_object('pending_action_id', v_id, 'step', p_step->>'name',
		'resume_step', p_step_index, 'pattern', v_pattern_name, 'effect', v_effect));
END
$$;
COMMENT ON FUNCTION orchestrator.open_approval(uuid, integer, jsonb, jsonb) IS 'Opens an approval gate: pending action, rendered Slack message, delivery queued; for the worker only';

-- The approval request's Slack message, sent by the built-in sequence below.
CREATE FUNCTION orchestrator.approval_message(p_state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT COALESCE((SELECT a.message FROM orchestrator.slack_pending_actions a
	                 WHERE a.id = (p_state->'event'->'payload'->>'pending_action_id')::uuid
	                   AND a.user_id = (p_state->'event'->>'user_id')::uuid AND a.status = 'pending'),
	                '{"text": "An approval request was withdrawn."}'::jsonb)
$$;
COMMENT ON FUNCTION orchestrator.approval_message(jsonb) IS 'The rendered Slack message of the pending action an orchestrator:approval_request event names';

INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
VALUES ('orchestrator:approval_request', 1,
	'[{"name": "notify-approval", "kind": "notify", "endpoint": "slack", "function": "orchestrator.approval_message",
	   "scope": "service", "on_failure": "retry", "retry": {"attempts": 5, "backoff_ms": 30000}}]',
	CURRENT_USER::regrole);

/*
 * withdraw_approvals supersedes the approval a job waits for (it was
 * cancelled or is run again); the caller clears state.pending_approvals in
 * the job's transition.
 */
CREATE FUNCTION orchestrator.withdraw_approvals(p_job_id uuid) RETURNS void
LANGUAGE sql VOLATILE
AS $$
	UPDATE orchestrator.slack_pending_actions a SET status = 'superseded', resolved_at = pg_catalog.clock_timestamp()
	WHERE a.job_id = p_job_id AND a.status = 'pending';
$$;
COMMENT ON FUNCTION orchestrator.withdraw_approvals(uuid) IS 'Supersedes the approval a job waits for in slack_pending_actions (orch_cancel_job, orch_retry_job)';

/*
 * resolve_approval applies an approval decision.  The pending action's row
 * lock serialises concurrent decisions; the second finds it resolved and
 * changes nothing (outcome duplicate).  approve and edit put the job back to
 * pending at the gated step, with the decision recorded in state.approvals
 * (edit first merges the modifications into the draft step's output); skip
 * records the step as skipped and moves on; cancel cancels the job.
 */
CREATE FUNCTION orchestrator.resolve_approval(p_id uuid, p_action text, p_modifications jsonb,
	p_acting_user uuid, p_admin boolean, p_via text,
	OUT outcome text, OUT job_id uuid, OUT reason text)
RETURNS record
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_pa orchestrator.slack_pending_actions;
	v_job orchestrator.sequence_jobs;
	v_status text;
	v_by text;
	v_ctx jsonb;
	v_steps integer;
BEGIN
	IF p_id IS NULL OR p_action IS NULL THEN
		RAISE EXCEPTION 'pending_action_id and action must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF p_action NOT IN ('approve', 'edit', 'skip', 'cancel') THEN
		RAISE EXCEPTION 'unrecognized approval action "%"', p_action
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use approve, edit, skip or cancel.';
	END IF;
	IF p_action = 'edit' AND jsonb_typeof(p_modifications) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'action edit needs the modifications as a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'For example ''{"subject": "New subject"}''; its keys replace those of the draft.';
	END IF;
	p_modifications := orchestrator.without_transcripts(p_modifications);
	-- lock the job, then the action: the order orch_cancel_job and
	-- orch_retry_job take them in, so racing them cannot deadlock
	SELECT * INTO v_job FROM orchestrator.sequence_jobs j
	WHERE j.id = (SELECT a.job_id FROM orchestrator.slack_pending_actions a WHERE a.id = p_id) FOR UPDATE;
	SELECT * INTO v_pa FROM orchestrator.slack_pending_actions a WHERE a.id = p_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pending action % does not exist', p_id USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT p_admin AND p_acting_user IS DISTINCT FROM v_pa.user_id THEN
		RAISE EXCEPTION 'pending action % belongs to another user', p_id
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Only the user it was sent to, or a member of orchestrator_admin, can resolve it.';
	END IF;
	job_id := v_pa.job_id;
	IF v_pa.status <> 'pending' THEN
		outcome := 'duplicate';
		reason := 'already ' || v_pa.status;
		RETURN;
	END IF;
	v_by := CASE WHEN p_acting_user IS NOT NULL THEN p_acting_user::text ELSE orchestrator.calling_role()::text END;

	IF v_job.id IS NULL OR v_job.status <> 'awaiting_approval' OR v_job.current_step <> v_pa.step_index THEN
		UPDATE orchestrator.slack_pending_actions a SET status = 'superseded', resolved_at = clock_timestamp(),
			resolved_by = v_by, resolved_via = p_via
		WHERE a.id = p_id;
		outcome := 'skipped';
		reason := 'job is ' || COALESCE(v_job.status, 'gone') || ', no longer waiting for this approval';
		RETURN;
	END IF;

	IF NOT COALESCE((SELECT h.pattern->'actions' FROM orchestrator.hitl_patterns h WHERE h.name = v_pa.pattern),
	                '["approve", "edit", "skip", "cancel"]') ? p_action THEN
		RAISE EXCEPTION 'action % is not offered by this approval request (pattern "%")', p_action, v_pa.pattern
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_action = 'edit' AND v_pa.draft_step IS NULL THEN
		RAISE EXCEPTION 'step "%" has no draft to edit', v_pa.step_name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Approve, skip or cancel it; a step offers edits when its "approval" names the draft step.';
	END IF;

	v_status := CASE p_action WHEN 'approve' THEN 'approved' WHEN 'edit' THEN 'edited'
	                          WHEN 'skip' THEN 'skipped' ELSE 'cancelled' END;
	UPDATE orchestrator.slack_pending_actions a
	SET status = v_status, modifications = p_modifications, resolved_by = v_by, resolved_via = p_via,
	    resolved_at = clock_timestamp()
	WHERE a.id = p_id;

	v_ctx := v_job.context
		|| jsonb_build_object(
			'pending_approvals', '[]'::jsonb,	-- a job waits at one gate at a time
			'approvals', COALESCE(v_job.context->'approvals', '{}') || jsonb_build_object(v_pa.step_name,
				jsonb_strip_nulls(jsonb_build_object('action', p_action, 'pending_action_id', p_id,
					'resolved_by', v_by, 'resolved_at', clock_timestamp(), 'modifications', p_modifications))));
	IF p_action = 'edit' AND v_pa.draft_step IS NOT NULL THEN
		v_ctx := jsonb_set(v_ctx, ARRAY['outputs', v_pa.draft_step],
			COALESCE(v_ctx->'outputs'->v_pa.draft_step, '{}') || p_modifications);
	END IF;

	SELECT jsonb_array_length(d.steps) INTO v_steps FROM orchestrator.sequence_definitions d
	WHERE d.event_type = v_job.event_type AND d.version = v_job.sequence_version;

	-- approve and edit run the gated step; skip moves past it; cancel ends the job
	PERFORM orchestrator.transition_job(v_job.id, 'awaiting_approval',
		CASE WHEN p_action = 'cancel' THEN 'cancelled'
		     WHEN p_action = 'skip' AND v_pa.step_index + 1 >= v_steps THEN 'completed'
		     ELSE 'pending' END,
		'approval', v_status, v_pa.step_index, v_pa.step_name,
		p_context => CASE WHEN p_action = 'skip'
		                  THEN v_ctx || jsonb_build_object('current_step', v_pa.step_index + 1) ELSE v_ctx END,
		p_current_step => CASE WHEN p_action = 'skip' THEN v_pa.step_index + 1 END,
		p_attempts => CASE WHEN p_action = 'skip' THEN 0 END,
		p_new_token => p_action = 'cancel',
		p_output => jsonb_strip_nulls(jsonb_build_object('pending_action_id', p_id, 'action', p_action,
		                                                 'resolved_by', v_by, 'via', p_via,
		                                                 'modifications', p_modifications)));
	outcome := 'resolved';
	reason := v_status;
END
$$;
COMMENT ON FUNCTION orchestrator.resolve_approval(uuid, text, jsonb, uuid, boolean, text) IS 'Applies an approval decision once (row-locked); for orch_resolve_approval and slack_approval_received only';

------------------------------------------------------------------------------
-- C functions
------------------------------------------------------------------------------

CREATE FUNCTION orch_submit_event(
	type text, source text, org_id uuid, user_id uuid,
	payload jsonb DEFAULT '{}', parent_job_id uuid DEFAULT NULL,
	dedupe_key text DEFAULT NULL,
	OUT outcome text, OUT job_id uuid, OUT run_at timestamptz, OUT reason text)
RETURNS record
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orch_submit_event';
COMMENT ON FUNCTION orch_submit_event(text, text, uuid, uuid, jsonb, uuid, text) IS
'Validates an event (org/user exist, type enabled, quiet hours, budget, dedupe) and enqueues a job in the caller''s transaction; returns outcome, job_id, run_at, reason';

CREATE FUNCTION orchestrator.wake_workers() RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_wake_workers_sql';
COMMENT ON FUNCTION orchestrator.wake_workers() IS 'Wakes the orchestrator workers when the calling transaction commits';

CREATE FUNCTION orchestrator.workers_preloaded() RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_workers_preloaded';
COMMENT ON FUNCTION orchestrator.workers_preloaded() IS 'True when the library was loaded through shared_preload_libraries, so workers run';

CREATE FUNCTION orchestrator.claim_jobs(max integer, OUT job_id uuid, OUT fencing_token bigint)
RETURNS SETOF record
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'orch_claim_jobs_sql';
COMMENT ON FUNCTION orchestrator.claim_jobs(integer) IS 'Claims up to max runnable jobs for the calling session exactly as a worker does (for tests and tools)';

CREATE FUNCTION orchestrator.reclaim_expired() RETURNS integer
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_reclaim_expired_sql';
COMMENT ON FUNCTION orchestrator.reclaim_expired() IS 'Returns jobs whose lease lapsed to pending exactly as a worker does (for tests and tools)';

CREATE FUNCTION orchestrator.run_claimed_job(job_id uuid, fencing_token bigint) RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'orch_run_claimed_job_sql';
COMMENT ON FUNCTION orchestrator.run_claimed_job(uuid, bigint) IS 'Runs a job claimed with orchestrator.claim_jobs in the calling session, under its fencing token (for tests and tools)';

/*
 * http_request builds the request an http (or notify) step, or an
 * endpoint context source, sends: the endpoint's URL, its timeout (the
 * step's timeout_ms wins when given), its headers with
 * {{secret:NAME}} replaced, the JSON body (the state's event, context and
 * outputs, unless p_body is given) and the secret values used, so the
 * worker can scrub them from whatever comes back.  Errors name secrets,
 * never their values.
 */
CREATE FUNCTION orchestrator.http_request(p_job_id uuid, p_endpoint text, p_step_name text, p_timeout_ms integer,
	p_state jsonb, p_body jsonb DEFAULT NULL,
	OUT url text, OUT timeout_ms integer, OUT headers text[], OUT body text, OUT secrets text[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	e orchestrator.endpoints;
	h record;
	v text;
	ref text;
	secret text;
BEGIN
	SELECT * INTO e FROM orchestrator.endpoints en WHERE en.name = p_endpoint;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', p_endpoint
			USING ERRCODE = 'undefined_object', HINT = 'Define it with orch_define_endpoint.';
	END IF;
	headers := '{}';
	secrets := '{}';
	FOR h IN SELECT key, value FROM jsonb_each_text(e.headers) LOOP
		v := h.value;
		FOR ref IN SELECT DISTINCT m[1] FROM regexp_matches(h.value, '\{\{secret:([A-Za-z0-9_.-]+)\}\}', 'g') AS m LOOP
			SELECT sc.value INTO secret FROM orchestrator.secrets sc WHERE sc.name = ref;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'secret "%" used by endpoint "%" is not set', ref, e.name
					USING ERRCODE = 'undefined_object', HINT = 'Set it with orch_set_secret.';
			END IF;
			v := replace(v, '{{secret:' || ref || '}}', secret);
			secrets := secrets || secret;
		END LOOP;
		headers := headers || (h.key || ': ' || v);
	END LOOP;
	url := e.url;
	timeout_ms := COALESCE(p_timeout_ms, e.timeout_ms);
	body := COALESCE(p_body, jsonb_build_object(
		'sequence_job_id', p_job_id, 'step', p_step_name, 'event', p_state->'event',
		'context', p_state->'context', 'outputs', p_state->'outputs'))::text;
END
$$;
COMMENT ON FUNCTION orchestrator.http_request(uuid, text, text, integer, jsonb, jsonb) IS 'Builds an http step''s (or an endpoint context source''s) request (URL, timeout, headers with secrets, body); for the worker only';

/*
 * notify_request decides whether a notify step may send now: inside the
 * user's quiet hours, or at max_notifications_per_hour, it returns when to
 * try again (the job is deferred, never dropped).  Otherwise it records the
 * message in notification_log and returns a chat.postMessage request to the
 * user's Slack id, with Block Kit blocks.
 */
CREATE FUNCTION orchestrator.notify_request(p_job_id uuid, p_step jsonb, p_state jsonb, p_message jsonb,
	OUT defer_until timestamptz, OUT defer_reason text,
	OUT url text, OUT timeout_ms integer, OUT headers text[], OUT body text, OUT secrets text[])
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_user uuid := (p_state->'event'->>'user_id')::uuid;
	v_org uuid := (p_state->'event'->>'org_id')::uuid;
	v_max integer;
	v_channel text;
	v_text text;
	v_blocks jsonb;
	r record;
BEGIN
	defer_until := orchestrator.next_active_time(v_user, clock_timestamp());
	IF defer_until IS NOT NULL THEN
		defer_reason := 'quiet_hours';
		RETURN;
	END IF;
	SELECT p.max_notifications_per_hour INTO v_max FROM orchestrator.user_preferences_source p WHERE p.user_id = v_user;
	v_max := COALESCE(v_max, 10);
	-- at the limit when the hour holds v_max messages: one more fits when the
	-- v_max-th most recent falls out of the hour
	IF v_max = 0 THEN
		defer_until := clock_timestamp() + interval '1 hour';
	ELSE
		SELECT l.sent_at + interval '1 hour' INTO defer_until FROM orchestrator.notification_log l
		WHERE l.user_id = v_user AND l.sent_at > clock_timestamp() - interval '1 hour' AND l.status <> 'failed'
		ORDER BY l.sent_at DESC OFFSET v_max - 1 LIMIT 1;
	END IF;
	IF defer_until IS NOT NULL THEN
		defer_reason := 'rate_limit';
		RETURN;
	END IF;
	SELECT m.slack_user_id INTO v_channel FROM orchestrator.user_mappings_source m WHERE m.user_id = v_user;
	IF v_channel IS NULL THEN
		RAISE EXCEPTION 'user % has no Slack mapping', v_user
			USING ERRCODE = 'undefined_object', HINT = 'Add the user to orchestrator.slack_user_mappings.';
	END IF;
	v_text := COALESCE(p_message->>'text', p_step->>'text');
	v_blocks := COALESCE(p_message->'blocks',
		jsonb_build_array(jsonb_build_object('type', 'section',
			'text', jsonb_build_object('type', 'mrkdwn', 'text', v_text))));
	INSERT INTO orchestrator.notification_log (org_id, user_id, job_id, step_name)
	VALUES (v_org, v_user, p_job_id, p_step->>'name');
	SELECT * INTO r FROM orchestrator.http_request(p_job_id, p_step->>'endpoint', p_step->>'name',
		(p_step->>'timeout_ms')::integer, p_state,
		jsonb_strip_nulls(jsonb_build_object('channel', v_channel, 'text', v_text, 'blocks', v_blocks)));
	url := r.url;
	timeout_ms := r.timeout_ms;
	headers := r.headers;
	body := r.body;
	secrets := r.secrets;
END
$$;
COMMENT ON FUNCTION orchestrator.notify_request(uuid, jsonb, jsonb, jsonb) IS 'Defers a notify step (quiet hours, rate limit) or builds its chat.postMessage request; for the worker only';

CREATE FUNCTION orchestrator.notify_result(p_job_id uuid, p_step_name text, p_ok boolean, p_ts text) RETURNS void
LANGUAGE sql VOLATILE
AS $$
	UPDATE orchestrator.notification_log l
	SET status = CASE WHEN p_ok THEN 'sent' ELSE 'failed' END, slack_ts = p_ts
	WHERE l.id = (SELECT max(l2.id) FROM orchestrator.notification_log l2
	              WHERE l2.job_id = p_job_id AND l2.step_name = p_step_name AND l2.status = 'sending')
$$;
COMMENT ON FUNCTION orchestrator.notify_result(uuid, text, boolean, text) IS 'Records whether Slack took a notify step''s message; for the worker only';

CREATE FUNCTION orch_define_endpoint(name text, url text, timeout_ms integer DEFAULT 10000, headers jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h record;
	v_bad text;
BEGIN
	IF name IS NULL OR url IS NULL OR timeout_ms IS NULL OR headers IS NULL THEN
		RAISE EXCEPTION 'name, url, timeout_ms and headers must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid endpoint name "%"', name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 100 letters, digits, "_", ".", ":" or "-".';
	END IF;
	IF url !~* '^https?://' THEN
		RAISE EXCEPTION 'endpoint URL must use http or https'
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('The URL given was "%s".', url),
			      HINT = 'Only http:// and https:// URLs can be called.';
	END IF;
	IF url !~* '^https?://[^/?#[:space:]]+[^[:space:]]*$' THEN
		RAISE EXCEPTION 'invalid endpoint URL "%"', url
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give a full URL with a host, without spaces.';
	END IF;
	IF timeout_ms < 1 OR timeout_ms > 3600000 THEN
		RAISE EXCEPTION 'timeout_ms must be between 1 and 3600000' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF jsonb_typeof(headers) <> 'object' THEN
		RAISE EXCEPTION 'headers must be a JSON object of header names to string values'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR h IN SELECT key, value FROM jsonb_each(headers) LOOP
		IF h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' THEN
			RAISE EXCEPTION 'invalid header name "%"', h.key USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF jsonb_typeof(h.value) <> 'string' OR (h.value #>> '{}') ~ '[\r\n]' THEN
			RAISE EXCEPTION 'header "%" must be a single-line string', h.key USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF (h.value #>> '{}') ~ '\{\{' AND (h.value #>> '{}') !~ '^([^{]|\{[^{]|\{\{secret:[A-Za-z0-9_.-]+\}\})*$' THEN
			RAISE EXCEPTION 'header "%" has a malformed secret reference', h.key
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Write {{secret:NAME}}, for example "Bearer {{secret:service_key}}".';
		END IF;
		IF lower(h.key) IN ('content-type', 'content-length', 'host', 'idempotency-key', 'transfer-encoding') THEN
			RAISE EXCEPTION 'header "%" is set by the engine', h.key USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	INSERT INTO orchestrator.endpoints AS e (name, url, timeout_ms, headers)
	VALUES (orch_define_endpoint.name, orch_define_endpoint.url, orch_define_endpoint.timeout_ms, orch_define_endpoint.headers)
	ON CONFLICT ON CONSTRAINT endpoints_pkey DO UPDATE
	SET url = excluded.url, timeout_ms = excluded.timeout_ms, headers = excluded.headers, updated_at = now();

	-- the safeguards hold when an endpoint changes under a definition: no
	-- ungated step (of a current version, or one a job still runs) and no
	-- context source may come to send email, change a deal stage or create tasks
	SELECT string_agg(DISTINCT format('%s v%s step "%s"', d.event_type, d.version, st->>'name'), ', ') INTO v_bad
	FROM orchestrator.sequence_definitions d, jsonb_array_elements(d.steps) st
	WHERE st->>'endpoint' = orch_define_endpoint.name
	  AND (st->'requires_approval') IS DISTINCT FROM 'true'::jsonb
	  AND orchestrator.guarded_effect(st) IS NOT NULL
	  AND (d.version = (SELECT max(d2.version) FROM orchestrator.sequence_definitions d2 WHERE d2.event_type = d.event_type)
	       OR EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j WHERE j.event_type = d.event_type AND j.sequence_version = d.version
	                  AND j.status IN ('pending', 'in_progress', 'awaiting_approval')));
	IF v_bad IS NOT NULL THEN
		RAISE EXCEPTION 'endpoint "%" at this URL would be an email send, deal-stage change or task creation for ungated steps: %', name, v_bad
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Define those sequences again with "requires_approval": true on those steps first, or use another endpoint name.';
	END IF;
	SELECT string_agg(c.name, ', ') INTO v_bad FROM orchestrator.context_sources c
	WHERE c.endpoint = orch_define_endpoint.name
	  AND orchestrator.guarded_effect(jsonb_build_object('name', c.name, 'endpoint', c.endpoint)) IS NOT NULL;
	IF v_bad IS NOT NULL THEN
		RAISE EXCEPTION 'endpoint "%" at this URL would make context source % send email, change deal stages or create tasks', name, v_bad
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Context sources only read; point them at another endpoint.';
	END IF;
END
$$;
COMMENT ON FUNCTION orch_define_endpoint(text, text, integer, jsonb) IS
'Defines (or replaces) a named endpoint for http and notify steps: http/https URL, default timeout, headers that may reference secrets as {{secret:NAME}}';

CREATE FUNCTION orch_set_secret(name text, value text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF name IS NULL OR value IS NULL THEN
		RAISE EXCEPTION 'name and value must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9_.-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid secret name'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 100 letters, digits, "_", "." or "-".';
	END IF;
	INSERT INTO orchestrator.secrets AS sc (name, value) VALUES (orch_set_secret.name, orch_set_secret.value)
	ON CONFLICT ON CONSTRAINT secrets_pkey DO UPDATE SET value = excluded.value, updated_at = now();
END
$$;
COMMENT ON FUNCTION orch_set_secret(text, text) IS 'Stores a secret for endpoint headers; nobody but the extension owner can read it back';

------------------------------------------------------------------------------
-- Definitions API
------------------------------------------------------------------------------

CREATE FUNCTION orchestrator.validate_jsonpath(p_step text, p_field text, p_path jsonb) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF p_path IS NULL THEN
		RETURN;
	END IF;
	IF jsonb_typeof(p_path) <> 'string' THEN
		RAISE EXCEPTION 'invalid step "%": field "%" must be a jsonpath string', p_step, p_field
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	BEGIN
		PERFORM (p_path #>> '{}')::jsonpath;
	EXCEPTION WHEN OTHERS THEN
		RAISE EXCEPTION 'invalid step "%": field "%" is not a valid jsonpath', p_step, p_field
			USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
	END;
END
$$;
COMMENT ON FUNCTION orchestrator.validate_jsonpath(text, text, jsonb) IS 'Raises an error naming the step and field when a jsonpath does not compile';

CREATE FUNCTION orchestrator.validate_int(p_step text, p_field text, p_value jsonb, p_min integer, p_max integer)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF p_value IS NULL THEN
		RETURN;
	END IF;
	IF jsonb_typeof(p_value) <> 'number' THEN
		RAISE EXCEPTION 'invalid step "%": field "%" must be a number', p_step, p_field
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF (p_value #>> '{}')::numeric <> trunc((p_value #>> '{}')::numeric)
	   OR (p_value #>> '{}')::numeric NOT BETWEEN p_min AND p_max THEN
		RAISE EXCEPTION 'invalid step "%": field "%" must be an integer between % and %', p_step, p_field, p_min, p_max
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;
COMMENT ON FUNCTION orchestrator.validate_int(text, text, jsonb, integer, integer) IS 'Raises an error naming the step and field unless an integer field is absent or a whole number in range';

/*
 * validate_step checks one step and returns it normalised: defaults filled in,
 * an sql step's function resolved to its regprocedure text.
 */
CREATE FUNCTION orchestrator.validate_step(p_step jsonb, p_index integer) RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
	v_name text;
	v_kind text;
	v_fn record;
	v_key text;
	v_on_failure text;
	v_fu jsonb;
	v_effect text;
	v_out jsonb := p_step;
BEGIN
	IF jsonb_typeof(p_step) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'invalid step at position %: a step must be a JSON object', p_index + 1
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_name := p_step->>'name';
	IF jsonb_typeof(p_step->'name') IS DISTINCT FROM 'string' OR v_name = '' THEN
		RAISE EXCEPTION 'invalid step at position %: field "name" must be a non-empty string', p_index + 1
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR v_key IN SELECT jsonb_object_keys(p_step) LOOP
		IF v_key NOT IN ('name', 'kind', 'function', 'endpoint', 'condition', 'requires_approval',
		                 'on_failure', 'retry', 'requires_context', 'ai', 'timeout_ms', 'expect',
		                 'followups', 'description', 'text', 'approval', 'effect', 'scope') THEN
			RAISE EXCEPTION 'invalid step "%": unrecognized field "%"', v_name, v_key
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Known fields: name, kind, function, endpoint, text, condition, requires_approval, approval, effect, on_failure, retry, requires_context, ai, scope, timeout_ms, expect, followups, description.';
		END IF;
	END LOOP;

	v_kind := p_step->>'kind';
	IF v_kind IS NULL THEN
		RAISE EXCEPTION 'invalid step "%": field "kind" is required', v_name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Supported kinds: sql, http, notify.';
	ELSIF v_kind NOT IN ('sql', 'http', 'notify') THEN
		RAISE EXCEPTION 'invalid step "%": unrecognized kind "%" in field "kind"', v_name, v_kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Supported kinds: sql, http, notify.';
	END IF;

	-- http and notify steps name an endpoint that exists (notify: "slack" by default)
	IF v_kind IN ('http', 'notify') THEN
		IF v_kind = 'notify' AND NOT p_step ? 'endpoint' THEN
			v_out := v_out || jsonb_build_object('endpoint', 'slack');
		END IF;
		IF jsonb_typeof(v_out->'endpoint') IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'invalid step "%": field "endpoint" is required for kind %', v_name, v_kind
				USING ERRCODE = 'invalid_parameter_value', HINT = 'Name an endpoint defined with orch_define_endpoint.';
		END IF;
		IF NOT EXISTS (SELECT 1 FROM orchestrator.endpoints e WHERE e.name = v_out->>'endpoint') THEN
			RAISE EXCEPTION 'invalid step "%": endpoint "%" in field "endpoint" does not exist', v_name, v_out->>'endpoint'
				USING ERRCODE = 'undefined_object', HINT = 'Define it first with orch_define_endpoint.';
		END IF;
	ELSIF p_step ? 'endpoint' THEN
		RAISE EXCEPTION 'invalid step "%": field "endpoint" applies to kinds http and notify only', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_step ? 'text' AND (v_kind <> 'notify' OR jsonb_typeof(p_step->'text') <> 'string') THEN
		RAISE EXCEPTION 'invalid step "%": field "text" must be a string, and applies to kind notify only', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF v_kind = 'http' AND p_step ? 'function' THEN
		RAISE EXCEPTION 'invalid step "%": field "function" does not apply to kind http', v_name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'An http step posts the state to its endpoint.';
	END IF;
	IF v_kind = 'notify' AND NOT p_step ? 'function' AND NOT p_step ? 'text' THEN
		RAISE EXCEPTION 'invalid step "%": a notify step needs field "text" or field "function"', v_name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The function returns the message as {"text": ..., "blocks": [...]}.';
	END IF;

	IF v_kind = 'sql' OR (v_kind = 'notify' AND p_step ? 'function') THEN
		IF jsonb_typeof(p_step->'function') IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'invalid step "%": field "function" is required for kind %', v_name, v_kind
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Name a function taking the state as jsonb and returning jsonb.';
		END IF;
		v_fn := orchestrator.resolve_state_function(p_step->>'function');
		IF v_fn.fn IS NULL THEN
			RAISE EXCEPTION 'invalid step "%": function "%(jsonb)" in field "function" does not exist', v_name, p_step->>'function'
				USING ERRCODE = 'undefined_function',
				      HINT = 'The function must take one jsonb argument (the state) and return jsonb.';
		END IF;
		IF NOT v_fn.returns_jsonb THEN
			RAISE EXCEPTION 'invalid step "%": function "%" in field "function" must return jsonb', v_name, v_fn.fn
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'The function must take one jsonb argument (the state) and return a single jsonb value.';
		END IF;
		v_out := v_out || jsonb_build_object('function', v_fn.qualified);
	END IF;

	PERFORM orchestrator.validate_jsonpath(v_name, 'condition', p_step->'condition');
	PERFORM orchestrator.validate_jsonpath(v_name, 'expect', p_step->'expect');

	v_on_failure := COALESCE(p_step->>'on_failure', 'stop');
	IF v_on_failure NOT IN ('stop', 'continue', 'retry') THEN
		RAISE EXCEPTION 'invalid step "%": field "on_failure" must be stop, continue or retry, not "%"', v_name, v_on_failure
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_out := v_out || jsonb_build_object('on_failure', v_on_failure);

	IF p_step ? 'retry' THEN
		IF jsonb_typeof(p_step->'retry') <> 'object' THEN
			RAISE EXCEPTION 'invalid step "%": field "retry" must be an object with attempts and backoff_ms', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF (p_step->'retry') - 'attempts' - 'backoff_ms' <> '{}'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": field "retry" accepts only attempts and backoff_ms', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	PERFORM orchestrator.validate_int(v_name, 'retry.attempts', p_step->'retry'->'attempts', 1, 100);
	PERFORM orchestrator.validate_int(v_name, 'retry.backoff_ms', p_step->'retry'->'backoff_ms', 0, 86400000);
	v_out := v_out || jsonb_build_object('retry', jsonb_build_object(
		'attempts', COALESCE((p_step->'retry'->>'attempts')::int, CASE WHEN v_on_failure = 'retry' THEN 2 ELSE 1 END),
		'backoff_ms', COALESCE((p_step->'retry'->>'backoff_ms')::int, 1000)));

	-- approval gates: the seed's safeguards hold whatever the definition says
	IF p_step ? 'requires_approval' AND jsonb_typeof(p_step->'requires_approval') <> 'boolean' THEN
		RAISE EXCEPTION 'invalid step "%": field "requires_approval" must be true or false', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_step ? 'effect' AND (jsonb_typeof(p_step->'effect') <> 'string'
	    OR p_step->>'effect' NOT IN ('email_send', 'deal_stage_change', 'task_create', 'other')) THEN
		RAISE EXCEPTION 'invalid step "%": field "effect" must be email_send, deal_stage_change, task_create or other', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_effect := orchestrator.guarded_effect(v_out);
	IF v_effect IS NOT NULL THEN
		IF (p_step->'requires_approval') = 'false'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": % always requires approval; "requires_approval": false is rejected', v_name,
				CASE v_effect WHEN 'email_send' THEN 'an email send' WHEN 'deal_stage_change' THEN 'a deal-stage change'
				              ELSE 'task creation from detected intents' END
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = format('The engine recognises step "%s" as %s (see orchestrator.guarded_effect).', v_name, v_effect),
				      HINT = 'Remove "requires_approval": false; the seed''s approval gates cannot be turned off.';
		END IF;
		IF NOT p_step ? 'requires_approval' THEN
			RAISE NOTICE 'step "%" is recognised as %: requires_approval set to true', v_name, v_effect;
		END IF;
		v_out := v_out || jsonb_build_object('requires_approval', true, 'effect', v_effect);
	END IF;
	IF p_step ? 'approval' THEN
		IF jsonb_typeof(p_step->'approval') <> 'object' OR (p_step->'approval') - 'pattern' - 'draft' <> '{}'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": field "approval" is an object with optional "pattern" and "draft"', v_name
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'For example {"pattern": "email_draft", "draft": "draft-email"}.';
		END IF;
		IF (v_out->'requires_approval') IS DISTINCT FROM 'true'::jsonb THEN
			RAISE EXCEPTION 'invalid step "%": field "approval" needs "requires_approval": true', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF p_step->'approval' ? 'pattern' AND NOT EXISTS (SELECT 1 FROM orchestrator.hitl_patterns h
		                                                 WHERE h.name = p_step->'approval'->>'pattern') THEN
			RAISE EXCEPTION 'invalid step "%": HITL pattern "%" in field "approval.pattern" does not exist', v_name,
				p_step->'approval'->>'pattern'
				USING ERRCODE = 'undefined_object', HINT = 'Define it first with orch_define_hitl_pattern.';
		END IF;
		IF p_step->'approval' ? 'draft' AND jsonb_typeof(p_step->'approval'->'draft') <> 'string' THEN
			RAISE EXCEPTION 'invalid step "%": field "approval.draft" must name an earlier step', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	IF p_step ? 'followups' THEN
		IF jsonb_typeof(p_step->'followups') <> 'array' THEN
			RAISE EXCEPTION 'invalid step "%": field "followups" must be an array', v_name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR v_fu IN SELECT value FROM jsonb_array_elements(p_step->'followups') LOOP
			IF jsonb_typeof(v_fu) <> 'object' OR jsonb_typeof(v_fu->'type') IS DISTINCT FROM 'string'
			   OR (v_fu->>'type') !~ '^[A-Za-z0-9_.:-]{1,100}$' OR (v_fu->>'type') LIKE 'orchestrator:%' THEN
				RAISE EXCEPTION 'invalid step "%": each entry of field "followups" needs a valid "type" (not one of the engine''s orchestrator: types)', v_name
					USING ERRCODE = 'invalid_parameter_value',
					      HINT = 'For example {"type": "proposal_generation", "for_each": "$.outputs.x[*]", "payload": {"phrase": "@.phrase"}}.';
			END IF;
			IF v_fu - 'type' - 'for_each' - 'payload' <> '{}'::jsonb THEN
				RAISE EXCEPTION 'invalid step "%": a follow-up accepts only type, for_each and payload', v_name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			PERFORM orchestrator.validate_jsonpath(v_name, 'followups.for_each', v_fu->'for_each');
			IF v_fu ? 'payload' AND jsonb_typeof(v_fu->'payload') <> 'object' THEN
				RAISE EXCEPTION 'invalid step "%": field "followups.payload" must be an object', v_name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			FOR v_key IN SELECT value #>> '{}' FROM jsonb_each(COALESCE(v_fu->'payload', '{}')) WHERE jsonb_typeof(value) = 'string'
			                                                                                 AND value #>> '{}' ~ '^[$@]' LOOP
				PERFORM orchestrator.validate_jsonpath(v_name, 'followups.payload', to_jsonb('$' || substr(v_key, 2)));
			END LOOP;
		END LOOP;
	END IF;
	IF p_step ? 'requires_context' THEN
		IF jsonb_typeof(p_step->'requires_context') <> 'array'
		   OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_step->'requires_context') c WHERE jsonb_typeof(c) <> 'string') THEN
			RAISE EXCEPTION 'invalid step "%": field "requires_context" must be an array of context source names', v_name
				USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ["apollo", "company_news"].';
		END IF;
		FOR v_key IN SELECT c #>> '{}' FROM jsonb_array_elements(p_step->'requires_context') c LOOP
			IF NOT EXISTS (SELECT 1 FROM orchestrator.context_sources s WHERE s.name = v_key AND s.tier = 3) THEN
				RAISE EXCEPTION 'invalid step "%": "%" in field "requires_context" is not a tier 3 context source', v_name, v_key
					USING ERRCODE = 'undefined_object',
					      HINT = 'Define it with orch_define_context_source(name, 3, ...); tier 2 sources load by themselves for contact and deal events.';
			END IF;
		END LOOP;
	END IF;
	IF p_step ? 'scope' AND (jsonb_typeof(p_step->'scope') <> 'string' OR p_step->>'scope' NOT IN ('user', 'service')) THEN
		RAISE EXCEPTION 'invalid step "%": field "scope" must be user or service', v_name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'user (the default) runs the function with the job''s user''s request.jwt.claims, so RLS applies; service is for org-wide work and is audited.';
	END IF;
	IF p_step ? 'scope' AND NOT p_step ? 'function' THEN
		RAISE EXCEPTION 'invalid step "%": field "scope" applies to steps that call a function', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_step ? 'description' AND jsonb_typeof(p_step->'description') <> 'string' THEN
		RAISE EXCEPTION 'invalid step "%": field "description" must be a string', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	PERFORM orchestrator.validate_int(v_name, 'timeout_ms', p_step->'timeout_ms', 1, 3600000);
	IF p_step ? 'ai' AND jsonb_typeof(p_step->'ai') <> 'boolean' THEN
		RAISE EXCEPTION 'invalid step "%": field "ai" must be true or false', v_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN v_out;
END
$$;
COMMENT ON FUNCTION orchestrator.validate_step(jsonb, integer) IS 'Validates one step definition and returns it with defaults filled in; errors name the step and field';

CREATE FUNCTION orchestrator.calling_role() RETURNS regrole
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_calling_role';
COMMENT ON FUNCTION orchestrator.calling_role() IS 'The role the session acts as outside any SECURITY DEFINER function (the real caller)';

/*
 * store_sequence validates steps again (names already schema-qualified, so
 * this does not depend on anyone's search_path) and stores them as the next
 * version, recording the real caller as the role the steps run as.  It is
 * the only way into sequence_definitions: nobody can pick another role.
 */
CREATE FUNCTION orchestrator.store_sequence(p_event_type text, p_steps jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_steps jsonb := '[]';
	v_step jsonb;
	v_idx integer := 0;
	v_names text[] := '{}';
	v_version integer;
BEGIN
	IF p_event_type IS NULL OR p_steps IS NULL THEN
		RAISE EXCEPTION 'event_type and steps must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF p_event_type !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid event type "%"', p_event_type
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Use 1 to 100 letters, digits, "_", ".", ":" or "-".';
	END IF;
	IF jsonb_typeof(p_steps) <> 'array' OR jsonb_array_length(p_steps) = 0 THEN
		RAISE EXCEPTION 'steps must be a non-empty JSON array'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR v_step IN SELECT value FROM jsonb_array_elements(p_steps) LOOP
		v_step := orchestrator.validate_step(v_step, v_idx);
		IF v_step->'approval' ? 'draft' AND NOT (v_step->'approval'->>'draft') = ANY (v_names) THEN
			RAISE EXCEPTION 'invalid step "%": field "approval.draft" names "%", which is not an earlier step', v_step->>'name',
				v_step->'approval'->>'draft'
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'The draft is the output of a step that runs before the gated one.';
		END IF;
		IF (v_step->>'name') = ANY (v_names) THEN
			RAISE EXCEPTION 'invalid step "%": field "name" is not unique in the sequence', v_step->>'name'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		v_names := v_names || (v_step->>'name');
		v_steps := v_steps || jsonb_build_array(v_step);
		v_idx := v_idx + 1;
	END LOOP;

	-- serialise concurrent definitions of one event type
	PERFORM pg_advisory_xact_lock(1330795347, hashtext(p_event_type));
	SELECT COALESCE(max(d.version), 0) + 1 INTO v_version
	FROM orchestrator.sequence_definitions d WHERE d.event_type = p_event_type;
	INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by)
	VALUES (p_event_type, v_version, v_steps, orchestrator.calling_role());
	RETURN v_version;
END
$$;
COMMENT ON FUNCTION orchestrator.store_sequence(text, jsonb) IS 'Validates and stores a sequence version as the calling role (used by orch_define_sequence)';

/*
 * orch_define_sequence runs as its caller (SECURITY INVOKER, no pinned
 * search_path) so step function names resolve in the caller's search_path,
 * exactly as they would in the caller's own SQL; it qualifies them and
 * store_sequence validates and stores the steps.
 */
CREATE FUNCTION orch_define_sequence(event_type text, steps jsonb) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
	v_steps jsonb := '[]';
	v_step jsonb;
	v_qualified text;
BEGIN
	IF jsonb_typeof(steps) = 'array' THEN
		FOR v_step IN SELECT value FROM jsonb_array_elements(steps) LOOP
			IF jsonb_typeof(v_step->'function') = 'string' THEN
				v_qualified := (orchestrator.resolve_state_function(v_step->>'function')).qualified;
				IF v_qualified IS NOT NULL THEN
					v_step := v_step || jsonb_build_object('function', v_qualified);
				END IF;
			END IF;
			v_steps := v_steps || jsonb_build_array(v_step);
		END LOOP;
	ELSE
		v_steps := steps;
	END IF;
	RETURN orchestrator.store_sequence(event_type, v_steps);
END
$$;
COMMENT ON FUNCTION orch_define_sequence(text, jsonb) IS 'Validates and stores a new version of the sequence for an event type; returns the version';

------------------------------------------------------------------------------
-- Who is calling: PostgREST users act for themselves only
------------------------------------------------------------------------------

CREATE FUNCTION orchestrator.caller_user_id() RETURNS uuid
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_caller_user_id';
COMMENT ON FUNCTION orchestrator.caller_user_id() IS 'The user id ("sub") of request.jwt.claims when set (a PostgREST call), else NULL';

CREATE FUNCTION orchestrator.caller_is_admin() RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_caller_is_admin_sql';
COMMENT ON FUNCTION orchestrator.caller_is_admin() IS 'True when the calling role is a superuser or a member of orchestrator_admin';

/*
 * orch_resolve_approval: the rep's decision on a pending action.  Only the
 * user the approval was sent to (request.jwt.claims "sub", as PostgREST
 * sets it) or an administrator may resolve it; resolving twice, or two
 * resolutions racing, executes nothing twice (outcome duplicate).
 */
CREATE FUNCTION orch_resolve_approval(pending_action_id uuid, action text, modifications jsonb DEFAULT NULL,
	OUT outcome text, OUT job_id uuid, OUT reason text)
RETURNS record
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_user uuid := orchestrator.caller_user_id();
	v_admin boolean := orchestrator.caller_is_admin();
BEGIN
	IF NOT v_admin AND v_user IS NULL THEN
		RAISE EXCEPTION 'cannot tell which user is resolving pending action %', pending_action_id
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Call it with request.jwt.claims set to the user''s claims (PostgREST does), or as a member of orchestrator_admin.';
	END IF;
	SELECT r.outcome, r.job_id, r.reason INTO outcome, job_id, reason
	FROM orchestrator.resolve_approval(pending_action_id, action, modifications, v_user, v_admin,
	                                   'orch_resolve_approval') r;
END
$$;
COMMENT ON FUNCTION orch_resolve_approval(uuid, text, jsonb) IS
'Resolves an approval gate: approve, edit (modifications merged into the draft), skip or cancel; returns resolved, or duplicate when already resolved';

/*
 * approval_received is what orch_submit_event does with a
 * slack_approval_received event: the event's user is the one who clicked.
 */
CREATE FUNCTION orchestrator.approval_received(p_payload jsonb, p_user_id uuid,
	OUT outcome text, OUT job_id uuid, OUT reason text)
RETURNS record
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_id uuid;
	r record;
BEGIN
	IF jsonb_typeof(p_payload->'pending_action_id') IS DISTINCT FROM 'string'
	   OR (p_payload->>'pending_action_id') !~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$'
	   OR jsonb_typeof(p_payload->'action') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a slack_approval_received payload needs "pending_action_id" (a uuid) and "action"'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The Slack button''s value carries both: {"action": "approve", "pending_action_id": "...", "sequence_job_id": "...", "resume_step": 3}.';
	END IF;
	v_id := (p_payload->>'pending_action_id')::uuid;
	-- the button's other fields must describe the same gate
	IF EXISTS (SELECT 1 FROM orchestrator.slack_pending_actions a WHERE a.id = v_id
	           AND ((p_payload ? 'sequence_job_id' AND p_payload->>'sequence_job_id' IS DISTINCT FROM a.job_id::text)
	                OR (p_payload ? 'resume_step' AND p_payload->>'resume_step' IS DISTINCT FROM a.step_index::text))) THEN
		RAISE EXCEPTION 'the payload''s sequence_job_id or resume_step does not match pending action %', v_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Send the value of the Slack button as it is.';
	END IF;
	SELECT * INTO r FROM orchestrator.resolve_approval(v_id, p_payload->>'action', p_payload->'user_modifications',
		p_user_id, false, 'slack_approval_received');
	job_id := r.job_id;
	reason := r.reason;
	outcome := CASE r.outcome WHEN 'resolved' THEN 'accepted' ELSE r.outcome END;
END
$$;
COMMENT ON FUNCTION orchestrator.approval_received(jsonb, uuid) IS 'Resolves the approval a slack_approval_received event carries; for orch_submit_event only';

CREATE FUNCTION orch_define_hitl_pattern(name text, pattern jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_f jsonb;
BEGIN
	IF name IS NULL OR pattern IS NULL THEN
		RAISE EXCEPTION 'name and pattern must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid HITL pattern name "%"', name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 100 letters, digits, "_", ".", ":" or "-".';
	END IF;
	IF jsonb_typeof(pattern) <> 'object' OR jsonb_typeof(pattern->'title') IS DISTINCT FROM 'string'
	   OR pattern - 'title' - 'fields' - 'actions' <> '{}'::jsonb THEN
		RAISE EXCEPTION 'a HITL pattern is an object with "title" (text) and optional "fields" and "actions"'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'For example {"title": "Send {{subject}}?", "fields": [{"label": "Body", "path": "$.body"}], "actions": ["approve", "edit", "skip", "cancel"]}.';
	END IF;
	IF pattern ? 'fields' THEN
		IF jsonb_typeof(pattern->'fields') <> 'array' THEN
			RAISE EXCEPTION 'field "fields" of a HITL pattern must be an array' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR v_f IN SELECT value FROM jsonb_array_elements(pattern->'fields') LOOP
			IF jsonb_typeof(v_f->'label') IS DISTINCT FROM 'string' THEN
				RAISE EXCEPTION 'each field of a HITL pattern needs a "label"' USING ERRCODE = 'invalid_parameter_value';
			END IF;
			PERFORM orchestrator.validate_jsonpath(name, 'fields.path', v_f->'path');
			IF v_f->'path' IS NULL THEN
				RAISE EXCEPTION 'each field of a HITL pattern needs a "path"' USING ERRCODE = 'invalid_parameter_value';
			END IF;
		END LOOP;
	END IF;
	IF pattern ? 'actions' AND (jsonb_typeof(pattern->'actions') <> 'array'
	    OR jsonb_array_length(pattern->'actions') = 0
	    OR EXISTS (SELECT 1 FROM jsonb_array_elements(pattern->'actions') a
	               WHERE a #>> '{}' IS NULL OR a #>> '{}' NOT IN ('approve', 'edit', 'skip', 'cancel'))) THEN
		RAISE EXCEPTION 'field "actions" of a HITL pattern must list some of approve, edit, skip, cancel'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO orchestrator.hitl_patterns AS h (name, pattern) VALUES (orch_define_hitl_pattern.name, orch_define_hitl_pattern.pattern)
	ON CONFLICT ON CONSTRAINT hitl_patterns_pkey DO UPDATE SET pattern = excluded.pattern, updated_at = now();
END
$$;
COMMENT ON FUNCTION orch_define_hitl_pattern(text, jsonb) IS 'Defines (or replaces) a HITL pattern: how an approval request is rendered in Slack';

------------------------------------------------------------------------------
-- Operator API
------------------------------------------------------------------------------

CREATE FUNCTION orch_cancel_job(job_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_job orchestrator.sequence_jobs;
BEGIN
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'job_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO v_job FROM orchestrator.sequence_jobs j WHERE j.id = orch_cancel_job.job_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = 'undefined_object';
	END IF;
	IF v_job.status IN ('completed', 'failed', 'cancelled') THEN
		RAISE EXCEPTION 'job % is already %', job_id, v_job.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Only pending, in_progress and awaiting_approval jobs can be cancelled; use orch_retry_job to run a finished job again.';
	END IF;
	-- an approval the job was waiting for is withdrawn: a late click changes nothing
	PERFORM orchestrator.withdraw_approvals(v_job.id);
	PERFORM orchestrator.transition_job(v_job.id, v_job.status, 'cancelled', 'operator', 'cancelled',
		v_job.current_step, p_context => v_job.context || '{"pending_approvals": []}'::jsonb,
		p_new_token => true, p_note => format('cancelled by %s (was %s)', session_user, v_job.status));
	RETURN true;
END
$$;
COMMENT ON FUNCTION orch_cancel_job(uuid) IS 'Cancels a pending, running or paused job; a worker still holding its lease has its writes discarded';

CREATE FUNCTION orch_retry_job(job_id uuid, from_step text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_job orchestrator.sequence_jobs;
	v_steps jsonb;
	v_idx integer;
BEGIN
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'job_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO v_job FROM orchestrator.sequence_jobs j WHERE j.id = orch_retry_job.job_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = 'undefined_object';
	END IF;
	IF v_job.status = 'completed' AND from_step IS NULL THEN
		RAISE EXCEPTION 'job % is completed', job_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Name the step to run again from with from_step.';
	END IF;
	IF v_job.status = 'in_progress' AND v_job.lease_expires_at > clock_timestamp() THEN
		RAISE EXCEPTION 'job % is running under a live lease', job_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Retry a job that is failed, cancelled, completed, pending or whose lease has expired.';
	END IF;
	SELECT d.steps INTO v_steps FROM orchestrator.sequence_definitions d
	WHERE d.event_type = v_job.event_type AND d.version = v_job.sequence_version;
	IF from_step IS NULL THEN
		v_idx := LEAST(v_job.current_step, jsonb_array_length(v_steps) - 1);
	ELSE
		SELECT s.ord - 1 INTO v_idx FROM jsonb_array_elements(v_steps) WITH ORDINALITY AS s(step, ord)
		WHERE s.step->>'name' = from_step;
		IF v_idx IS NULL THEN
			RAISE EXCEPTION 'sequence "%" version % has no step "%"', v_job.event_type, v_job.sequence_version, from_step
				USING ERRCODE = 'undefined_object';
		END IF;
	END IF;
	-- a job run again asks again: earlier decisions and open requests lapse
	PERFORM orchestrator.withdraw_approvals(v_job.id);
	PERFORM orchestrator.transition_job(v_job.id, v_job.status, 'pending', 'operator', 'retry_requested',
		v_idx, v_steps->v_idx->>'name',
		p_context => (v_job.context - 'approvals')
		             || jsonb_build_object('current_step', v_idx, 'pending_approvals', '[]'::jsonb),
		p_current_step => v_idx, p_attempts => 0, p_reclaims => 0, p_new_token => true, p_clear_error => true,
		p_note => format('retry requested by %s (was %s)', session_user, v_job.status));
	RETURN true;
END
$$;
COMMENT ON FUNCTION orch_retry_job(uuid, text) IS 'Puts a failed, cancelled, stuck or completed job back to pending, from the named step (default: where it stopped)';

CREATE FUNCTION orch_job_timeline(job_id uuid)
RETURNS TABLE (at timestamptz, entry text, step text, attempt integer, detail jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT t.at, t.entry, t.step, t.attempt, t.detail FROM (
		SELECT e.created_at AS at, 0 AS ord, e.id AS seq, 'event ' || e.outcome AS entry, NULL::text AS step,
		       NULL::integer AS attempt,
		       jsonb_strip_nulls(jsonb_build_object('type', e.event_type, 'source', e.event_source,
		                                            'reason', e.reason, 'run_at', e.run_at)) AS detail
		FROM orchestrator.event_log e
		WHERE e.job_id = orch_job_timeline.job_id AND e.outcome IN ('accepted', 'deferred')
		UNION ALL
		SELECT h.started_at, 1, h.id, 'step ' || h.outcome, h.step_name, h.attempt,
		       jsonb_strip_nulls(jsonb_build_object('kind', h.kind, 'output', h.output, 'error', h.error,
		           'duration_ms', round((extract(epoch FROM h.finished_at - h.started_at) * 1000)::numeric, 3)))
		FROM orchestrator.step_history h
		WHERE h.job_id = orch_job_timeline.job_id AND h.kind NOT IN ('operator', 'engine', 'approval')
		UNION ALL
		SELECT e.created_at, 1, e.id, 'follow-up ' || e.outcome, e.event_type, NULL,
		       jsonb_strip_nulls(jsonb_build_object('job_id', e.job_id, 'reason', e.reason))
		FROM orchestrator.event_log e
		WHERE e.parent_job_id = orch_job_timeline.job_id
		UNION ALL
		SELECT h.started_at, 1, h.id, 'approval ' || h.outcome, h.step_name, NULL, h.output
		FROM orchestrator.step_history h
		WHERE h.job_id = orch_job_timeline.job_id AND h.kind = 'approval'
		UNION ALL
		SELECT h.started_at, 1, h.id, h.kind || ' ' || h.outcome, h.step_name, NULL,
		       jsonb_strip_nulls(jsonb_build_object('note', h.error))
		FROM orchestrator.step_history h
		WHERE h.job_id = orch_job_timeline.job_id AND h.kind IN ('operator', 'engine')
		UNION ALL
		SELECT j.finished_at, 2, 0, 'job ' || j.status, NULL, NULL,
		       jsonb_build_object('execution_metadata', j.context->'execution_metadata')
		FROM orchestrator.sequence_jobs j
		WHERE j.id = orch_job_timeline.job_id AND j.status IN ('completed', 'failed', 'cancelled')
	) t
	ORDER BY t.ord = 2, t.at, t.ord, t.seq
$$;
COMMENT ON FUNCTION orch_job_timeline(uuid) IS 'One job''s life in order: the submit, each step attempt and context load, approval decisions, the follow-ups it queued, operator actions, the end with its audit metadata';

------------------------------------------------------------------------------
-- Entry points: webhook tables, fan-out, pg_cron schedules
------------------------------------------------------------------------------

/*
 * orch_enqueue_trigger: AFTER INSERT ... FOR EACH ROW EXECUTE FUNCTION
 * orch_enqueue_trigger('meeting_ended', 'webhook:meetingbaas'[, org column,
 * user column]).  The row, as jsonb, is the payload; the event is submitted
 * in the inserting transaction.  A row the engine cannot take (no org or
 * user, or a payload it refuses) is logged as skipped with the reason and
 * the row itself kept: the webhook's insert never fails because of it.
 */
CREATE FUNCTION orch_enqueue_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_row jsonb;
	v_org_col text := COALESCE(TG_ARGV[2], 'org_id');
	v_user_col text := COALESCE(TG_ARGV[3], 'user_id');
	v_org uuid;
	v_user uuid;
	v_msg text;
BEGIN
	IF TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' OR TG_OP <> 'INSERT' THEN
		RAISE EXCEPTION 'orch_enqueue_trigger must be an AFTER INSERT ... FOR EACH ROW trigger'
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF TG_NARGS < 2 THEN
		RAISE EXCEPTION 'orch_enqueue_trigger needs the event type and source as arguments'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'EXECUTE FUNCTION orch_enqueue_trigger(''meeting_ended'', ''webhook:meetingbaas'').';
	END IF;
	v_row := orchestrator.without_transcripts(to_jsonb(NEW));
	IF NOT (v_row ? v_org_col) OR NOT (v_row ? v_user_col) THEN
		RAISE EXCEPTION 'table %.% has no column "%" or "%" for orch_enqueue_trigger', TG_TABLE_SCHEMA, TG_TABLE_NAME, v_org_col, v_user_col
			USING ERRCODE = 'undefined_column',
			      HINT = 'Name the org and user columns as the third and fourth trigger arguments.';
	END IF;
	BEGIN
		v_org := (v_row->>v_org_col)::uuid;
		v_user := (v_row->>v_user_col)::uuid;
		PERFORM @extschema@.orch_submit_event(TG_ARGV[0], TG_ARGV[1], v_org, v_user, v_row);
	EXCEPTION WHEN null_value_not_allowed OR invalid_parameter_value OR invalid_text_representation
	               OR program_limit_exceeded THEN
		GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
		RAISE WARNING 'orchestrator skipped a % row of %.%: %', TG_ARGV[0], TG_TABLE_SCHEMA, TG_TABLE_NAME, v_msg;
		INSERT INTO orchestrator.event_log (org_id, user_id, event_type, event_source, outcome, reason, payload)
		VALUES (v_org, v_user, TG_ARGV[0], TG_ARGV[1], 'skipped', 'invalid_event: ' || v_msg,
		        CASE WHEN pg_column_size(v_row) <= 1048576 THEN v_row END);
	END;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION orch_enqueue_trigger() IS
'Trigger for webhook tables: AFTER INSERT FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger(event_type, source[, org_column, user_column]); submits the row as an event in the inserting transaction';

/*
 * orch_fan_out submits one event per user whose org has the event type
 * enabled (the scheduled sequences: morning brief, pipeline scan, campaign
 * check, coaching digest, pre-meeting prep), in one statement.  Each submit
 * runs the usual checks, so quiet hours defer and duplicates are refused.
 */
CREATE FUNCTION orch_fan_out(event_type text, source text, payload jsonb DEFAULT '{}')
RETURNS TABLE (outcome text, reason text, events bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.outcome, s.reason, count(*)
	FROM orchestrator.user_source u
	CROSS JOIN LATERAL @extschema@.orch_submit_event(orch_fan_out.event_type, orch_fan_out.source,
	                                                 u.org_id, u.id, orch_fan_out.payload) s
	WHERE COALESCE((SELECT bool_and(f.is_enabled) FROM orchestrator.feature_settings_source f
	                WHERE f.org_id = u.org_id AND f.feature_key = orch_fan_out.event_type), true)
	GROUP BY s.outcome, s.reason
	ORDER BY s.outcome, s.reason
$$;
COMMENT ON FUNCTION orch_fan_out(text, text, jsonb) IS
'Submits one event per user whose org has the event type enabled; returns how many of each outcome';

/*
 * orch_schedule runs orch_fan_out on a pg_cron schedule.  pg_cron is
 * optional: without it this fails with a hint, and nothing else needs it.
 */
CREATE FUNCTION orch_schedule(job_name text, schedule text, event_type text,
	source text DEFAULT NULL, payload jsonb DEFAULT '{}') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_cmd text;
BEGIN
	IF job_name IS NULL OR schedule IS NULL OR event_type IS NULL OR payload IS NULL THEN
		RAISE EXCEPTION 'job_name, schedule, event_type and payload must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF to_regnamespace('cron') IS NULL OR to_regprocedure('cron.schedule(text,text,text)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron. Everything else in orchestrator works without it.';
	END IF;
	IF event_type !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid event type "%"', event_type USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_cmd := format('SELECT * FROM %I.orch_fan_out(%L, %L, %L::jsonb)', '@extschema@', event_type,
	                COALESCE(source, 'cron:' || event_type), payload::text);
	RETURN cron.schedule('orch:' || job_name, schedule, v_cmd);
END
$$;
COMMENT ON FUNCTION orch_schedule(text, text, text, text, jsonb) IS
'Schedules a fan-out of event_type over pg_cron (job "orch:<job_name>"); returns the pg_cron job id';

CREATE FUNCTION orch_unschedule(job_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF job_name IS NULL THEN
		RAISE EXCEPTION 'job_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF to_regnamespace('cron') IS NULL OR to_regprocedure('cron.unschedule(name)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM cron.job j WHERE j.jobname = 'orch:' || job_name) THEN
		RAISE EXCEPTION 'no orchestrator schedule named "%"', job_name USING ERRCODE = 'undefined_object';
	END IF;
	RETURN cron.unschedule(('orch:' || job_name)::name);
END
$$;
COMMENT ON FUNCTION orch_unschedule(text) IS 'Removes a schedule made with orch_schedule';

------------------------------------------------------------------------------
-- Pointing the engine at an application's own tables
------------------------------------------------------------------------------

CREATE FUNCTION orch_use_table(kind text, relation regclass DEFAULT NULL, columns jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_view text;
	v_default text;
	v_cols text := '';
	v_att record;
	v_expr text;
BEGIN
	CASE kind
		WHEN 'orgs' THEN v_view := 'org_source'; v_default := 'orchestrator.orgs';
		WHEN 'users' THEN v_view := 'user_source'; v_default := 'orchestrator.users';
		WHEN 'notification_feature_settings' THEN v_view := 'feature_settings_source'; v_default := 'orchestrator.notification_feature_settings';
		WHEN 'slack_user_preferences' THEN v_view := 'user_preferences_source'; v_default := 'orchestrator.slack_user_preferences';
		WHEN 'slack_user_mappings' THEN v_view := 'user_mappings_source'; v_default := 'orchestrator.slack_user_mappings';
		ELSE
			RAISE EXCEPTION 'unrecognized table kind "%"', kind
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Use orgs, users, notification_feature_settings, slack_user_preferences or slack_user_mappings.';
	END CASE;
	IF columns IS NULL OR jsonb_typeof(columns) <> 'object' THEN
		RAISE EXCEPTION 'columns must be a JSON object mapping engine columns to column names'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- every key names an engine column, every value a column of the relation
	SELECT c.key INTO v_expr FROM jsonb_each(columns) c
	WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
	                  WHERE a.attrelid = format('orchestrator.%I', v_view)::regclass
	                    AND a.attnum > 0 AND a.attname = c.key);
	IF v_expr IS NOT NULL THEN
		RAISE EXCEPTION 'orchestrator.% has no column "%"', v_view, v_expr
			USING ERRCODE = 'undefined_column',
			      HINT = 'Keys of columns are the engine''s column names, shown by \d orchestrator.' || v_view || '.';
	END IF;
	SELECT c.value #>> '{}' INTO v_expr FROM jsonb_each(columns) c
	WHERE jsonb_typeof(c.value) <> 'string'
	   OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
	                  WHERE a.attrelid = COALESCE(relation, v_default::regclass)
	                    AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = c.value #>> '{}')
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'relation % has no column "%"', COALESCE(relation::text, v_default), v_expr
			USING ERRCODE = 'undefined_column',
			      HINT = 'Values of columns are column names of the application''s relation.';
	END IF;
	FOR v_att IN
		SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS typ
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = format('orchestrator.%I', v_view)::regclass AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum
	LOOP
		v_expr := quote_ident(COALESCE(columns->>v_att.attname, v_att.attname));
		v_cols := v_cols || CASE WHEN v_cols = '' THEN '' ELSE ', ' END
		          || format('(%s)::%s AS %I', v_expr, v_att.typ, v_att.attname);
	END LOOP;
	EXECUTE format('CREATE OR REPLACE VIEW orchestrator.%I AS SELECT %s FROM %s', v_view, v_cols,
	               COALESCE(relation::text, v_default));
	IF relation IS NULL THEN
		DELETE FROM orchestrator.table_mappings m WHERE m.kind = orch_use_table.kind;
	ELSE
		INSERT INTO orchestrator.table_mappings (kind, relation, columns)
		VALUES (kind, relation::text, columns)
		ON CONFLICT ON CONSTRAINT table_mappings_pkey
		DO UPDATE SET relation = excluded.relation, columns = excluded.columns;
	END IF;
END
$$;
COMMENT ON FUNCTION orch_use_table(text, regclass, jsonb) IS
'Makes the engine read orgs, users or a settings table from an application''s own table; columns maps engine column names to the relation''s column names; relation NULL restores the built-in table (superuser only)';

CREATE FUNCTION orch_reapply_table_mappings() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_m record;
	v_n integer := 0;
BEGIN
	FOR v_m IN SELECT * FROM orchestrator.table_mappings LOOP
		PERFORM @extschema@.orch_use_table(v_m.kind, v_m.relation::regclass, v_m.columns);
		v_n := v_n + 1;
	END LOOP;
	RETURN v_n;
END
$$;
COMMENT ON FUNCTION orch_reapply_table_mappings() IS 'Re-creates the source views from orchestrator.table_mappings (run once after pg_restore)';

------------------------------------------------------------------------------
-- Views for operators
------------------------------------------------------------------------------

CREATE VIEW orchestrator.jobs AS
	SELECT j.id, j.org_id, j.user_id, j.event_type, j.event_source, j.status,
	       j.sequence_version, j.current_step,
	       jsonb_array_length(d.steps) AS step_count,
	       d.steps->j.current_step->>'name' AS current_step_name,
	       j.attempts, j.run_at, j.lease_owner, j.lease_expires_at, j.parent_job_id, j.chain_depth,
	       j.last_error, j.created_at, j.started_at, j.finished_at,
	       COALESCE(j.finished_at, pg_catalog.now()) - j.created_at AS age,
	       j.context->'execution_metadata' AS execution_metadata
	FROM orchestrator.sequence_jobs j
	LEFT JOIN orchestrator.sequence_definitions d
	       ON d.event_type = j.event_type AND d.version = j.sequence_version;
COMMENT ON VIEW orchestrator.jobs IS 'Jobs with their current step, lease and audit metadata';

CREATE VIEW orchestrator.steps AS
	SELECT h.id, h.job_id, h.org_id, j.event_type, h.step_index, h.step_name, h.kind, h.attempt,
	       h.outcome, h.error, h.output, h.started_at, h.finished_at,
	       round((extract(epoch FROM h.finished_at - h.started_at) * 1000)::numeric, 3) AS duration_ms,
	       h.worker_pid
	FROM orchestrator.step_history h
	LEFT JOIN orchestrator.sequence_jobs j ON j.id = h.job_id;
COMMENT ON VIEW orchestrator.steps IS 'Step attempts and operator actions, with durations';

CREATE VIEW orchestrator.service_scope_audit AS
	SELECT h.id, h.started_at, h.job_id, h.org_id, j.user_id, j.event_type, j.event_source,
	       h.step_name, h.outcome, h.attempt, d.created_by AS run_as
	FROM orchestrator.step_history h
	JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
	LEFT JOIN orchestrator.sequence_definitions d ON d.event_type = j.event_type AND d.version = j.sequence_version
	WHERE h.scope = 'service';
COMMENT ON VIEW orchestrator.service_scope_audit IS 'Every attempt of a service-scope step (org-wide work run without the user''s claims): the seed''s "documented and audited"';

CREATE VIEW orchestrator.events AS
	SELECT e.id, e.created_at, e.org_id, e.user_id, e.event_type, e.event_source, e.outcome,
	       e.reason, e.job_id, e.run_at, e.parent_job_id
	FROM orchestrator.event_log e;
COMMENT ON VIEW orchestrator.events IS 'Every submitted event and what became of it';

CREATE VIEW orchestrator.job_counts AS
	SELECT j.event_type, j.status, count(*) AS jobs,
	       min(j.created_at) AS oldest, max(j.updated_at) AS last_change
	FROM orchestrator.sequence_jobs j
	GROUP BY j.event_type, j.status;
COMMENT ON VIEW orchestrator.job_counts IS 'Job counts per event type and status';

------------------------------------------------------------------------------
-- Privileges and pg_dump
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA orchestrator FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orchestrator FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_submit_event(text, text, uuid, uuid, jsonb, uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_define_sequence(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_cancel_job(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_retry_job(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_job_timeline(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_use_table(text, regclass, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_reapply_table_mappings() FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_define_endpoint(text, text, integer, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_set_secret(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_define_endpoint(text, text, integer, jsonb) TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_enqueue_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_fan_out(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_schedule(text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_unschedule(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_enqueue_trigger(), orch_fan_out(text, text, jsonb),
	orch_schedule(text, text, text, text, jsonb), orch_unschedule(text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_set_secret(text, text) TO orchestrator_admin;
GRANT SELECT ON orchestrator.endpoints, orchestrator.notification_log TO orchestrator_admin;
-- orchestrator.secrets: no grants at all; the admin role sets secrets, never reads them

GRANT EXECUTE ON FUNCTION orch_submit_event(text, text, uuid, uuid, jsonb, uuid, text) TO orchestrator_submitter, orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_define_sequence(text, jsonb) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_cancel_job(uuid) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_retry_job(uuid, text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_job_timeline(uuid) TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_define_context_source(text, integer, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_define_context_source(text, integer, text, text, text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.store_context_source(text, integer, text, text, text) TO orchestrator_admin;
GRANT SELECT ON orchestrator.context_sources TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_resolve_approval(uuid, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_define_hitl_pattern(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_resolve_approval(uuid, text, jsonb) TO orchestrator_submitter, orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_define_hitl_pattern(text, jsonb) TO orchestrator_admin;
GRANT SELECT ON orchestrator.slack_pending_actions, orchestrator.hitl_patterns TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.guarded_effect(jsonb) TO orchestrator_admin;
-- orch_use_table and orch_reapply_table_mappings stay superuser-only: they
-- decide which tables the extension's owner reads.
GRANT SELECT ON orchestrator.jobs, orchestrator.steps, orchestrator.events, orchestrator.job_counts,
	orchestrator.service_scope_audit TO orchestrator_admin;
GRANT SELECT ON orchestrator.sequence_definitions TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.store_sequence(text, jsonb) TO orchestrator_admin;
GRANT SELECT ON orchestrator.cost_ledger TO orchestrator_admin;
-- CHECK constraints call it with the privileges of whoever writes preferences
GRANT EXECUTE ON FUNCTION orchestrator.is_valid_timezone(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION orchestrator.resolve_state_function(text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.validate_step(jsonb, integer),
	orchestrator.validate_jsonpath(text, text, jsonb),
	orchestrator.validate_int(text, text, jsonb, integer, integer) TO orchestrator_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON orchestrator.orgs, orchestrator.users,
	orchestrator.notification_feature_settings, orchestrator.slack_user_preferences,
	orchestrator.slack_user_mappings, orchestrator.cost_budgets TO orchestrator_admin;

SELECT pg_catalog.pg_extension_config_dump('orchestrator.orgs', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.users', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.notification_feature_settings', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.slack_user_preferences', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.slack_user_mappings', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.cost_budgets', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.cost_ledger', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.cost_ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.table_mappings', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.sequence_definitions', 'WHERE event_type NOT LIKE ''orchestrator:%''');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.sequence_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.event_log', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.event_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.step_history', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.step_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.budget_notices', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.slack_pending_actions', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.context_sources', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.hitl_patterns', 'WHERE name NOT IN (''email_draft'', ''crm_update'', ''task_creation'', ''generic'')');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.notification_log', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.notification_log_id_seq', '');

-- Tell the user when no worker will run, then wake the workers that do.
DO $preload$
BEGIN
	IF NOT orchestrator.workers_preloaded() THEN
		RAISE WARNING 'orchestrator is not loaded through shared_preload_libraries, so no worker will run jobs'
			USING HINT = 'Add orchestrator to shared_preload_libraries in postgresql.conf, set orchestrator.database to this database, and restart the server.';
	END IF;
	IF orchestrator.workers_preloaded()
	   AND current_setting('orchestrator.database', true) IS DISTINCT FROM current_database() THEN
		RAISE WARNING 'orchestrator workers run in database "%", not in "%"',
			current_setting('orchestrator.database', true), current_database()
			USING HINT = 'Jobs submitted here will wait until orchestrator.database names this database and the server restarts.';
	END IF;
	PERFORM orchestrator.wake_workers();
END
$preload$;
