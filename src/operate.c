/*-------------------------------------------------------------------------
 *
 * operate.c
 *	  The engine's internals as SQL, for operators, tools and tests.
 *
 * orchestrator.transition_job is how SQL code (orch_cancel_job,
 * orch_retry_job, an approval decision) moves a job: it hands a
 * transition to job_state.c.  orchestrator.claim_jobs,
 * orchestrator.reclaim_expired and orchestrator.run_claimed_job let a
 * session claim and run jobs exactly as a worker does, so tests can drive
 * the engine by hand (one session, one "worker").  Each connects SPI for
 * itself and runs in the caller's transaction.
 *
 * src/operate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "claim.h"
#include "flow.h"
#include "guc.h"
#include "http.h"
#include "job_state.h"
#include "shmem.h"
#include "util.h"
#include "step.h"

PG_FUNCTION_INFO_V1(orch_transition_job_sql);

/*
 * orchestrator.transition_job(job_id, from, to, kind, outcome, step_index,
 * step_name, context, current_step, attempts, reclaims, new_token,
 * clear_error, output, note): the operator transition for SQL callers
 * (orch_cancel_job, orch_retry_job, resolve_approval), which hold the
 * job's row lock and made its new state.  Returns whether it applied.
 */
Datum
orch_transition_job_sql(PG_FUNCTION_ARGS)
{
	OrchJobTransition t;

#define ARG_TEXT(i) (PG_ARGISNULL(i) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(i)))
#define ARG_INT(i) (PG_ARGISNULL(i) ? -1 : PG_GETARG_INT32(i))
	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("job, from, to, kind and outcome of a transition must not be NULL")));
	memset(&t, 0, sizeof(t));
	t.kind = ORCH_TRANSITION_OPERATOR;
	memcpy(&t.job_id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	t.from = orch_job_status_from_name(ARG_TEXT(1));
	t.to = orch_job_status_from_name(ARG_TEXT(2));
	t.history_kind = ARG_TEXT(3);
	t.outcome = ARG_TEXT(4);
	t.step_index = ARG_INT(5);
	t.step_name = ARG_TEXT(6);
	t.context = PG_ARGISNULL(7) ? NULL : PG_GETARG_JSONB_P(7);
	t.current_step = ARG_INT(8);
	t.attempts = ARG_INT(9);
	t.reclaims = ARG_INT(10);
	t.new_token = !PG_ARGISNULL(11) && PG_GETARG_BOOL(11);
	t.clear_error = !PG_ARGISNULL(12) && PG_GETARG_BOOL(12);
	t.output = PG_ARGISNULL(13) ? NULL : PG_GETARG_JSONB_P(13);
	t.note = ARG_TEXT(14);

	SPI_connect();
	orch_job_transition(&t, 1);
	SPI_finish();
	PG_RETURN_BOOL(t.applied);
}

PG_FUNCTION_INFO_V1(orch_fork_job_sql);

/*
 * orchestrator.fork_job(from, step_index, step_name, state, how):
 * orch_job_fork for orch_fork_job, which holds the old job's row lock and
 * made the new job's state.  Returns the new job's id.
 */
Datum
orch_fork_job_sql(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("every argument of a fork must be given")));
	SPI_connect();
	*id = orch_job_fork(PG_GETARG_UUID_P(0), PG_GETARG_INT32(1), TextDatumGetCString(PG_GETARG_DATUM(2)),
						PG_GETARG_JSONB_P(3), TextDatumGetCString(PG_GETARG_DATUM(4)));
	SPI_finish();
	PG_RETURN_UUID_P(id);
}

PG_FUNCTION_INFO_V1(orch_check_json_depth_sql);

/*
 * orchestrator.check_json_depth(value, what): orch_check_json_depth for
 * the SQL functions that take JSON from an operator (orch_fork_job).
 */
Datum
orch_check_json_depth_sql(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		orch_check_json_depth(PG_GETARG_JSONB_P(0), PG_ARGISNULL(1) ? "value" : text_to_cstring(PG_GETARG_TEXT_PP(1)),
							  NULL);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(orch_workers_sql);

/*
 * orchestrator.worker_status(): one row per running orchestrator worker,
 * from shared memory: its number, process id and HTTP requests in flight.
 */
Datum
orch_workers_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < ORCH_MAX_WORKERS; i++)
	{
		int			pid;
		int			inflight;
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (!orch_shmem_worker(i, &pid, &inflight))
			continue;
		values[0] = Int32GetDatum(i + 1);
		values[1] = Int32GetDatum(pid);
		values[2] = Int32GetDatum(inflight);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(orch_claim_jobs_sql);
PG_FUNCTION_INFO_V1(orch_reclaim_expired_sql);

/*
 * orchestrator.claim_jobs(max): the worker's claim, callable from SQL so
 * tests and tools can drive the engine by hand (one session, one "worker").
 */
Datum
orch_claim_jobs_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		max = PG_GETARG_INT32(0);
	OrchClaimedJob *jobs;
	int			n;

	if (max < 1 || max > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max must be between 1 and 1000")));

	InitMaterializedSRF(fcinfo, 0);
	jobs = palloc(sizeof(OrchClaimedJob) * max);

	SPI_connect();
	n = orch_flow_claim(jobs, max, orch_lease_ms);
	SPI_finish();

	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = UUIDPGetDatum(&jobs[i].id);
		values[1] = Int64GetDatum(jobs[i].token);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * orchestrator.reclaim_expired(): the worker's reclaim of lapsed leases.
 */
Datum
orch_reclaim_expired_sql(PG_FUNCTION_ARGS)
{
	int			n;

	SPI_connect();
	n = orch_reclaim_expired();
	SPI_finish();
	PG_RETURN_INT32(n);
}

PG_FUNCTION_INFO_V1(orch_run_claimed_job_sql);

/*
 * run_jobs runs claimed jobs in the calling session as a worker runs its
 * batch: their rows locked first, their transitions held and written
 * together at the end.  A session has no curl loop: a job that parks on a
 * request is left for a worker to reclaim.
 */
static void
run_jobs(OrchClaimedJob *jobs, int n)
{
	bool		own = orch_job_hold_begin();

	SPI_connect();
	orch_job_lock(jobs, n);
	SPI_finish();
	for (int i = 0; i < n; i++)
	{
		OrchHttpRequest *parked;

		orch_run_job(&jobs[i], NULL, &parked);
		if (parked)
		{
			orch_http_free(parked);
			ereport(NOTICE,
					(errmsg("job is waiting for an HTTP request that only a worker can send")));
		}
	}
	if (own)
		orch_job_hold_end();
}

/*
 * orchestrator.run_claimed_job(job_id, fencing_token): run a job claimed
 * with orchestrator.claim_jobs in the calling session, exactly as a worker
 * would.  For tests and tools.
 */
Datum
orch_run_claimed_job_sql(PG_FUNCTION_ARGS)
{
	OrchClaimedJob job;

	memcpy(&job.id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	job.token = PG_GETARG_INT64(1);
	run_jobs(&job, 1);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(orch_run_claimed_jobs_sql);

/*
 * orchestrator.run_claimed_jobs(job_ids, fencing_tokens): run a batch of
 * claimed jobs in the calling session as a worker runs its batch.
 */
Datum
orch_run_claimed_jobs_sql(PG_FUNCTION_ARGS)
{
	Datum	   *idv;
	Datum	   *tokv;
	bool	   *idn;
	bool	   *tokn;
	int			n;
	int			ntok;
	OrchClaimedJob *jobs;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &idv, &idn, &n);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &tokv, &tokn, &ntok);
	if (n != ntok)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("job_ids and fencing_tokens must have the same length")));
	jobs = palloc(sizeof(OrchClaimedJob) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (idn[i] || tokn[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("job_ids and fencing_tokens must not contain NULL")));
		memcpy(&jobs[i].id, DatumGetUUIDP(idv[i]), sizeof(pg_uuid_t));
		jobs[i].token = DatumGetInt64(tokv[i]);
	}
	run_jobs(jobs, n);
	PG_RETURN_INT32(n);
}

PG_FUNCTION_INFO_V1(orch_write_held_job_sql);

/*
 * orchestrator.write_held_job(job_id): write what this session's running
 * batch holds for the job now (orch_cancel_job, orch_retry_job and an
 * approval decision call it before they read the job).
 */
Datum
orch_write_held_job_sql(PG_FUNCTION_ARGS)
{
	SPI_connect();
	orch_job_write_held(PG_GETARG_UUID_P(0));
	SPI_finish();
	PG_RETURN_VOID();
}
