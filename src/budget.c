/*-------------------------------------------------------------------------
 *
 * budget.c
 *	  AI cost: the budget gate before every ai step, and booking what it
 *	  spent.
 *
 * The seed checks the org's budget before every AI-intensive step and,
 * over it, halts the whole sequence and says so once per billing period.
 * orch_budget_allows asks orchestrator.budget_gate (budget.sql), which
 * also queues that once-per-period Slack notice (orchestrator:budget_notice)
 * the first time; the step loop calls it outside the step's subtransaction
 * so the notice stays.  orch_budget_record_cost books the cost_usd an ai
 * step reported to the org's ledger (orchestrator.record_cost), inside the
 * step's subtransaction, so it commits with the step or not at all.
 *
 * src/budget.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "budget.h"
#include "util.h"

static SPIPlanPtr gate_plan = NULL;
static SPIPlanPtr cost_plan = NULL;

/*
 * orch_budget_allows: may an ai step of this job run now?
 */
bool
orch_budget_allows(const OrchClaimedJob *job, Jsonb *state)
{
	Datum		args[2];
	bool		isnull;

	if (gate_plan == NULL)
	{
		Oid			types[2] = {UUIDOID, JSONBOID};

		gate_plan = orch_prepare_kept("SELECT orchestrator.budget_gate($1, $2)", 2, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = JsonbPGetDatum(state);
	return DatumGetBool(orch_exec_scalar(gate_plan, args, NULL, &isnull, "budget check"));
}

/*
 * orch_budget_record_cost books what an ai step reported spending and
 * returns it (0 when it reported nothing).
 */
double
orch_budget_record_cost(const OrchClaimedJob *job, Jsonb *state, const char *step_name, Jsonb *output)
{
	Datum		args[4];
	bool		isnull;

	if (cost_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, JSONBOID, TEXTOID, JSONBOID};

		cost_plan = orch_prepare_kept("SELECT orchestrator.record_cost($1, $2, $3, $4)::float8", 4, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = JsonbPGetDatum(state);
	args[2] = CStringGetTextDatum(step_name);
	args[3] = JsonbPGetDatum(output);
	return DatumGetFloat8(orch_exec_scalar(cost_plan, args, NULL, &isnull, "cost booking"));
}
