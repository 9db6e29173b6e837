/*-------------------------------------------------------------------------
 *
 * budget.sql
 *	  AI cost (budget.c): budgets, the cost ledger, the budget gate and its
 *	  once-per-period notice.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/budget.sql
 *
 *-------------------------------------------------------------------------
 */

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
