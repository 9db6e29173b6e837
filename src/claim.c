/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Claiming runnable jobs: SKIP LOCKED batches, leases, reclaim, release.
 *
 * All reads and writes of a job's lease columns (status in_progress,
 * lease_owner, lease_expires_at, fencing_token) happen here.  A claim
 * takes up to orchestrator.batch_size pending jobs whose run_at has come,
 * in run_at order, with FOR UPDATE SKIP LOCKED so concurrent workers never
 * take the same row; each claim bumps the job's fencing token, and every
 * later write for the job (writeback.c) carries the token it was claimed
 * with, so a worker that lost its lease cannot overwrite the new holder.
 *
 * A lease that has expired (its worker died or hung) is reclaimed: the job
 * goes back to pending and the reclaim is recorded in the step history.
 * On SIGTERM a worker hands its own leases back the same way.
 *
 * Every function here runs inside the caller's transaction with SPI
 * connected; plans are prepared once per worker and kept.
 *
 * src/claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "orchestrator.h"

static SPIPlanPtr reclaim_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr release_plan = NULL;
static SPIPlanPtr wakeup_plan = NULL;

/*
 * orch_reclaim_expired returns jobs whose lease has lapsed to pending and
 * records each reclaim.  Returns the number reclaimed.
 */
int
orch_reclaim_expired(void)
{
	Datum		args[2];
	int			ret;

	if (reclaim_plan == NULL)
	{
		Oid			types[2] = {INT4OID, INT4OID};

		/* a job whose workers keep dying while running it is failed, not retried forever */
		reclaim_plan = orch_prepare_kept(
			"WITH r AS (SELECT j.id, j.lease_owner FROM orchestrator.sequence_jobs j"
			"           WHERE j.status = 'in_progress' AND j.lease_expires_at < pg_catalog.now()"
			"           ORDER BY j.lease_expires_at LIMIT 100 FOR UPDATE SKIP LOCKED),"
			" u AS (UPDATE orchestrator.sequence_jobs j"
			"       SET status = CASE WHEN j.reclaims >= $2 THEN 'failed' ELSE 'pending' END,"
			"           reclaims = j.reclaims + 1,"
			"           last_error = CASE WHEN j.reclaims >= $2"
			"                        THEN 'given up: its worker died while running it ' || (j.reclaims + 1) || ' times'"
			"                        ELSE j.last_error END,"
			"           finished_at = CASE WHEN j.reclaims >= $2 THEN pg_catalog.clock_timestamp() END,"
			"           run_at = pg_catalog.now(), lease_owner = NULL,"
			"           lease_expires_at = NULL, updated_at = pg_catalog.clock_timestamp()"
			"       FROM r WHERE j.id = r.id"
			"       RETURNING j.id, j.org_id, j.current_step, j.fencing_token, j.status, j.last_error, r.lease_owner)"
			" INSERT INTO orchestrator.step_history"
			"  (job_id, org_id, step_index, kind, outcome, error, worker_pid, fencing_token)"
			" SELECT u.id, u.org_id, u.current_step, 'engine',"
			"        CASE u.status WHEN 'failed' THEN 'failed' ELSE 'lease_expired' END,"
			"        CASE u.status WHEN 'failed' THEN u.last_error"
			"             ELSE 'lease of worker pid ' || COALESCE(u.lease_owner::text, '?') || ' expired; job returned to the queue' END,"
			"        $1, u.fencing_token FROM u",
			2, types);
	}

	args[0] = Int32GetDatum(MyProcPid);
	args[1] = Int32GetDatum(orch_max_reclaims);
	ret = SPI_execute_plan(reclaim_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator reclaim failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("orchestrator worker reclaimed %llu job(s) whose lease expired",
						(unsigned long long) SPI_processed)));
	return (int) SPI_processed;
}

/*
 * orch_claim_jobs leases up to max runnable jobs to this worker and fills
 * jobs[] with their ids and new fencing tokens.  On a job's first claim its
 * tier 1 context is loaded into the state.
 */
int
orch_claim_jobs(OrchClaimedJob *jobs, int max)
{
	Datum		args[3];
	int			ret;

	if (claim_plan == NULL)
	{
		Oid			types[3] = {INT4OID, INT4OID, FLOAT8OID};

		claim_plan = orch_prepare_kept(
			"WITH c AS (SELECT j.id FROM orchestrator.sequence_jobs j"
			"           WHERE j.status = 'pending' AND j.run_at <= pg_catalog.now()"
			"           ORDER BY j.run_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
			" UPDATE orchestrator.sequence_jobs j"
			" SET status = 'in_progress', lease_owner = $2,"
			"     lease_expires_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0),"
			"     fencing_token = j.fencing_token + 1,"
			"     started_at = COALESCE(j.started_at, pg_catalog.clock_timestamp()),"
			"     updated_at = pg_catalog.clock_timestamp(),"
			"     context = CASE WHEN (j.context->'context') ? 'tier1' THEN j.context"
			"               ELSE j.context || pg_catalog.jsonb_build_object("
			"                      'context', (j.context->'context') || pg_catalog.jsonb_build_object("
			"                                 'tier1', orchestrator.load_tier1(j.org_id, j.user_id)),"
			"                      'started_at', pg_catalog.clock_timestamp()) END"
			" FROM c WHERE j.id = c.id"
			" RETURNING j.id, j.fencing_token",
			3, types);
	}

	args[0] = Int32GetDatum(max);
	args[1] = Int32GetDatum(MyProcPid);
	args[2] = Float8GetDatum((double) orch_lease_ms);
	ret = SPI_execute_plan(claim_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "orchestrator claim failed: %s", SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed && i < (uint64) max; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		pg_uuid_t  *id;

		id = DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		memcpy(&jobs[i].id, id, sizeof(pg_uuid_t));
		jobs[i].token = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
	return (int) Min(SPI_processed, (uint64) max);
}

/*
 * orch_release_leases hands this worker's leased jobs back to the queue
 * (SIGTERM).  The next claim bumps the fencing token as usual.
 */
int
orch_release_leases(void)
{
	Datum		args[1];
	int			ret;

	if (release_plan == NULL)
	{
		Oid			types[1] = {INT4OID};

		release_plan = orch_prepare_kept(
			"UPDATE orchestrator.sequence_jobs j"
			" SET status = 'pending', run_at = pg_catalog.now(), lease_owner = NULL,"
			"     lease_expires_at = NULL, updated_at = pg_catalog.clock_timestamp()"
			" WHERE j.status = 'in_progress' AND j.lease_owner = $1",
			1, types);
	}
	args[0] = Int32GetDatum(MyProcPid);
	ret = SPI_execute_plan(release_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "orchestrator lease release failed: %s", SPI_result_code_string(ret));
	return (int) SPI_processed;
}

/*
 * orch_next_wakeup returns when the worker next has something to do without
 * being woken: the earliest future run_at of a pending job, or the earliest
 * future lease expiry to reclaim.  0 means nothing is scheduled: sleep until
 * woken.  It runs in the claim's transaction, so "due" means due at the
 * claim's now(): a due job the claim did not get is locked by another
 * transaction (a worker running it past its lease, an operator's update),
 * and *contended says so.
 */
TimestampTz
orch_next_wakeup(bool *contended)
{
	int			ret;
	bool		isnull;
	Datum		d;

	if (wakeup_plan == NULL)
		wakeup_plan = orch_prepare_kept(
			"SELECT LEAST((SELECT pg_catalog.min(j.run_at) FROM orchestrator.sequence_jobs j"
			"              WHERE j.status = 'pending' AND j.run_at > pg_catalog.now()),"
			"             (SELECT pg_catalog.min(j.lease_expires_at) FROM orchestrator.sequence_jobs j"
			"              WHERE j.status = 'in_progress' AND j.lease_expires_at > pg_catalog.now())),"
			"       EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j"
			"               WHERE j.status = 'pending' AND j.run_at <= pg_catalog.now())"
			"       OR EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j"
			"                  WHERE j.status = 'in_progress' AND j.lease_expires_at <= pg_catalog.now())",
			0, NULL);

	ret = SPI_execute_plan(wakeup_plan, NULL, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator wake-up query failed: %s", SPI_result_code_string(ret));
	*contended = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
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
	n = orch_claim_jobs(jobs, max);
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
