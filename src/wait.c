/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  Steps that wait: "signal" (for a named signal sent with orch_signal or
 *	  orch_signal_key, with a timeout) and "sleep" (for an interval, or until
 *	  a time taken from the state).
 *
 * A waiting job holds no worker and no lease: its step is deferred (not
 * an attempt) to the end of the sleep or the signal's timeout, so it is a
 * pending job with a later run_at, and orchestrator.waits says what it
 * waits for.  A signal sent to it makes it due at once (wait.sql,
 * deliver_signal); when it runs the step again it takes the signal, whose
 * payload becomes the step's output.  A signal sent before the job waits
 * is kept until it does.  At the timeout the step fails (and on_failure
 * decides) or, with "on_timeout": "skip", is skipped.  The decisions are
 * orchestrator.step_wait's; this file runs it and records its answer.
 * Waits survive crashes and restarts: they are rows and run_at.
 *
 * src/wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "util.h"
#include "wait.h"

/*
 * orch_step_wait runs the signal or sleep step "step" of job at
 * r->step_index, and records in r what came of it: succeeded (with the
 * signal's payload, or when the sleep ended), skipped or failed (timeout),
 * or deferred to when the job should look again.
 */
void
orch_step_wait(const OrchClaimedJob *job, Jsonb *step, Jsonb *state, OrchStepRecord *r)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[4];
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *outcome;
	Datum		d;

	if (plan == NULL)
	{
		Oid			types[4] = {UUIDOID, INT4OID, JSONBOID, JSONBOID};

		plan = orch_prepare_kept("SELECT w.outcome, w.output, w.until, w.error"
								 " FROM orchestrator.step_wait($1, $2, $3, $4) w", 4, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int32GetDatum(r->step_index);
	args[2] = JsonbPGetDatum(step);
	args[3] = JsonbPGetDatum(state);
	ret = SPI_execute_plan(plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator wait step failed: %s", SPI_result_code_string(ret));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	outcome = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	d = SPI_getbinval(tup, desc, 4, &isnull);
	r->error = isnull ? NULL : TextDatumGetCString(d);

	if (strcmp(outcome, "succeeded") == 0)
	{
		r->outcome = ORCH_STEP_SUCCEEDED;
		r->output = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 2, &isnull));
		r->error = NULL;
	}
	else if (strcmp(outcome, "skipped") == 0)
	{
		r->outcome = ORCH_STEP_SKIPPED;
		r->error = NULL;
	}
	else if (strcmp(outcome, "failed") == 0)
		r->outcome = ORCH_STEP_FAILED;
	else
	{
		r->outcome = ORCH_STEP_DEFERRED;
		r->run_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
	}
}
