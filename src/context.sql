/*-------------------------------------------------------------------------
 *
 * context.sql
 *	  Context tiers (context.c): tier 1, loaded at the first claim, and the
 *	  tier 2 and 3 sources as definitions.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/context.sql
 *
 *-------------------------------------------------------------------------
 */

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

-- Context tiers 2 and 3: sources are definitions
--
-- Tier 1 (org, user, preferences, features, budget) is built in and loaded
-- when a job is first claimed (orchestrator.load_tier1).  Tier 2 sources are
-- loaded before a step only when the event's payload names a contact_id or
-- deal_id; tier 3 sources only just before a step that names them in
-- requires_context, never speculatively.  Each source is a SQL function
-- (state jsonb -> jsonb, run user-scoped as the source's definer) or an
-- endpoint (POSTed the state like an http step).

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
