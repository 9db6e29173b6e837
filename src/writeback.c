/*-------------------------------------------------------------------------
 *
 * writeback.c
 *	  Writing a step's result: the job's state and its step-history row.
 *
 * One statement per step result updates sequence_jobs (state folded by
 * orchestrator.advance_state, next step, status, retry time) and inserts
 * the step_history row, with the output's transcript text dropped and the
 * error redacted once for both, in the transaction that ran the step, so the
 * output, the state, the history and the step function's own writes
 * commit together.  The update carries the fencing token the job was
 * claimed with.  The job's row is locked by this transaction from the moment
 * it was loaded, so the only thing that can make that check fail is the
 * step itself (a step function that cancels or retries its own job): then
 * nothing is written and the caller stops running the job.
 *
 * While a job stays in_progress the update leaves every indexed column
 * alone, so per-step writes are HOT updates; only the final transition
 * (completed, failed, back to pending) touches the indexes.
 *
 * src/writeback.c
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

#include "orchestrator.h"

static SPIPlanPtr step_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr park_plan = NULL;
static SPIPlanPtr continue_plan = NULL;

static const char *
outcome_name(OrchStepOutcome o)
{
	switch (o)
	{
		case ORCH_STEP_SUCCEEDED:
			return "succeeded";
		case ORCH_STEP_SKIPPED:
			return "skipped";
		case ORCH_STEP_FAILED:
			return "failed";
		case ORCH_STEP_RETRY:
			return "retry_scheduled";
		case ORCH_STEP_DEFERRED:
			return "deferred";
		case ORCH_STEP_AWAITING:
			return "awaiting_approval";
		case ORCH_STEP_PARKED:
			break;
	}
	return "failed";
}

/*
 * orch_write_step_result writes one step result under the job's fencing
 * token and returns the new state, or NULL when the lease was lost.
 */
Jsonb *
orch_write_step_result(const OrchClaimedJob *job, const OrchStepResult *r)
{
	Datum		args[20];
	char		nulls[20];
	int			ret;
	bool		isnull;
	Datum		state;

	if (step_plan == NULL)
	{
		Oid			types[20] = {UUIDOID, INT8OID, TEXTOID, TEXTOID, JSONBOID, FLOAT8OID,
			INT4OID, INT4OID, TEXTOID, TIMESTAMPTZOID, INT4OID, TEXTOID, TEXTOID, INT4OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, JSONBOID, FLOAT8OID, TEXTOID};

		step_plan = orch_prepare_kept(
			"WITH r AS (SELECT orchestrator.without_transcripts($5) AS output, orchestrator.redact($12) AS error),"
			" u AS ("
			"  UPDATE orchestrator.sequence_jobs j SET"
			"    context = orchestrator.advance_state(j.context, $3, $4, r.output, $6, $7, $18, $19::numeric),"
			"    current_step = $7, attempts = $8, status = $9,"
			"    run_at = COALESCE($10, j.run_at),"
			"    lease_owner = CASE WHEN $9 = 'in_progress' THEN j.lease_owner END,"
			"    lease_expires_at = CASE WHEN $9 = 'in_progress' THEN j.lease_expires_at END,"
			"    last_error = COALESCE(r.error, j.last_error),"
			"    finished_at = CASE WHEN $9 IN ('completed', 'failed') THEN pg_catalog.clock_timestamp() END,"
			"    updated_at = pg_catalog.clock_timestamp()"
			"  FROM r"
			"  WHERE j.id = $1 AND j.fencing_token = $2 AND j.status = 'in_progress'"
			"  RETURNING j.id, j.org_id, j.context),"
			" h AS ("
			"  INSERT INTO orchestrator.step_history"
			"   (job_id, org_id, step_index, step_name, kind, attempt, outcome, output, error,"
			"    started_at, finished_at, worker_pid, fencing_token, http_status, scope)"
			"  SELECT u.id, u.org_id, $11, $3, $13, $14, $4, r.output, r.error, $15, $16,"
			"         pg_catalog.pg_backend_pid(), $2, $17, $20 FROM u, r)"
			" SELECT u.context FROM u",
			20, types);
	}

	memset(nulls, ' ', sizeof(nulls));
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int64GetDatum(job->token);
	args[2] = CStringGetTextDatum(r->step_name);
	args[3] = CStringGetTextDatum(outcome_name(r->outcome));
	args[4] = r->output ? JsonbPGetDatum(r->output) : (Datum) 0;
	nulls[4] = r->output ? ' ' : 'n';
	args[5] = Float8GetDatum((double) (r->finished_at - r->started_at) / 1000.0);
	args[6] = Int32GetDatum(r->next_step);
	args[7] = Int32GetDatum(r->job_attempts);
	args[8] = CStringGetTextDatum(r->job_status);
	args[9] = TimestampTzGetDatum(r->run_at);
	nulls[9] = r->run_at ? ' ' : 'n';
	args[10] = Int32GetDatum(r->step_index);
	args[11] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
	nulls[11] = r->error ? ' ' : 'n';
	args[12] = CStringGetTextDatum(r->kind);
	args[13] = Int32GetDatum(r->attempt);
	args[14] = TimestampTzGetDatum(r->started_at);
	args[15] = TimestampTzGetDatum(r->finished_at);
	args[16] = Int32GetDatum((int32) r->http_status);
	nulls[16] = r->http_status ? ' ' : 'n';
	args[17] = r->followups ? JsonbPGetDatum(r->followups) : (Datum) 0;
	nulls[17] = r->followups ? ' ' : 'n';
	args[18] = Float8GetDatum(r->cost_usd);
	args[19] = r->scope ? CStringGetTextDatum(r->scope) : (Datum) 0;
	nulls[19] = r->scope ? ' ' : 'n';

	ret = SPI_execute_plan(step_plan, args, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator step write-back failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return NULL;

	state = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return DatumGetJsonbP(state);
}

/*
 * orch_write_job_failure marks a job failed after an error outside any step
 * (for example a step definition the engine cannot read), under its token.
 */
void
orch_write_job_failure(const OrchClaimedJob *job, const char *error)
{
	Datum		args[3];
	int			ret;

	if (fail_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, INT8OID, TEXTOID};

		fail_plan = orch_prepare_kept(
			"WITH u AS ("
			"  UPDATE orchestrator.sequence_jobs j SET status = 'failed', last_error = orchestrator.redact($3),"
			"    lease_owner = NULL, lease_expires_at = NULL,"
			"    finished_at = pg_catalog.clock_timestamp(), updated_at = pg_catalog.clock_timestamp()"
			"  WHERE j.id = $1 AND j.fencing_token = $2 AND j.status = 'in_progress'"
			"  RETURNING j.id, j.org_id, j.current_step)"
			" INSERT INTO orchestrator.step_history"
			"  (job_id, org_id, step_index, kind, outcome, error, worker_pid, fencing_token)"
			" SELECT u.id, u.org_id, u.current_step, 'engine', 'failed', orchestrator.redact($3),"
			"        pg_catalog.pg_backend_pid(), $2 FROM u",
			3, types);
	}

	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int64GetDatum(job->token);
	args[2] = CStringGetTextDatum(error);
	ret = SPI_execute_plan(fail_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator job failure write-back failed: %s", SPI_result_code_string(ret));
}

/*
 * orch_write_park stretches a job's lease to cover an HTTP request about to
 * be sent (its timeout plus orchestrator.lease_duration), so no other worker
 * reclaims it meanwhile; a worker that dies mid-request leaves a lease that
 * lapses.  Returns false when the lease was already lost.
 */
bool
orch_write_park(const OrchClaimedJob *job, long lease_ms)
{
	Datum		args[3];
	int			ret;

	if (park_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, INT8OID, FLOAT8OID};

		park_plan = orch_prepare_kept(
			"UPDATE orchestrator.sequence_jobs j"
			" SET lease_expires_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0),"
			"     updated_at = pg_catalog.clock_timestamp()"
			" WHERE j.id = $1 AND j.fencing_token = $2 AND j.status = 'in_progress'",
			3, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int64GetDatum(job->token);
	args[2] = Float8GetDatum((double) lease_ms);
	ret = SPI_execute_plan(park_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "orchestrator park write-back failed: %s", SPI_result_code_string(ret));
	return SPI_processed == 1;
}

/*
 * orch_write_continuation checkpoints a job that used its time slice: it
 * goes back to pending at the step it reached, runnable now but behind the
 * jobs already due, and the history says so (orchestrator:continuation).
 * Returns false when the job was moved on by its own step meanwhile.
 */
bool
orch_write_continuation(const OrchClaimedJob *job, int next_step)
{
	Datum		args[4];
	int			ret;

	if (continue_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, INT8OID, INT4OID, INT4OID};

		continue_plan = orch_prepare_kept(
			"WITH u AS ("
			"  UPDATE orchestrator.sequence_jobs j"
			"  SET status = 'pending', run_at = pg_catalog.clock_timestamp(), lease_owner = NULL,"
			"      lease_expires_at = NULL, updated_at = pg_catalog.clock_timestamp()"
			"  WHERE j.id = $1 AND j.fencing_token = $2 AND j.status = 'in_progress'"
			"  RETURNING j.id, j.org_id)"
			" INSERT INTO orchestrator.step_history"
			"  (job_id, org_id, step_index, kind, outcome, error, worker_pid, fencing_token)"
			" SELECT u.id, u.org_id, $3, 'engine', 'continuation',"
			"        'orchestrator:continuation: time slice of ' || $4 || ' ms used; re-queued at step ' || ($3 + 1),"
			"        pg_catalog.pg_backend_pid(), $2 FROM u",
			4, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int64GetDatum(job->token);
	args[2] = Int32GetDatum(next_step);
	args[3] = Int32GetDatum(orch_max_slice_ms);
	ret = SPI_execute_plan(continue_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator continuation write-back failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
		orch_wake_at_commit();
	return SPI_processed == 1;
}
