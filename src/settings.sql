/*-------------------------------------------------------------------------
 *
 * settings.sql
 *	  Who exists and their settings: orgs, users, the seed's settings tables, the
 *	  views the engine reads them through, and orch_use_table to point those at
 *	  an application's own tables.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/settings.sql
 *
 *-------------------------------------------------------------------------
 */

-- Who exists: orgs and users

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

-- The seed's own settings tables

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

-- Where the engine reads orgs, users and settings: one view per kind.
-- orch_use_table() repoints a view at an application's own table.

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

-- Pointing the engine at an application's own tables

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
