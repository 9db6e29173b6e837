/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Retention: finished jobs (with their history, events, fan-out records
 *	  and approval requests), notifications and signals are removed once
 *	  older than orchestrator.retention, in batches of
 *	  orchestrator.retention_batch, each batch its own short transaction.
 *
 * The first worker runs a pass every ORCH_PURGE_INTERVAL_MS while a
 * retention is set, and at once again while the last one found a full
 * batch, between its claims: a backlog is worked off without delaying
 * jobs, and no lock is held longer than one batch.  Each batch reads only
 * the old end of each table: jobs by their time-ordered ids below the
 * cutoff, the logs by a cursor in id order (retention.sql).  Running jobs
 * and their audit trail are never touched.  With no workers, orch_purge
 * does the same from pg_cron.
 *
 * src/retention.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "guc.h"
#include "job_state.h"
#include "retention.h"
#include "util.h"

PG_FUNCTION_INFO_V1(orch_purge_jobs_sql);

/* the smallest job id made at "at": every job created earlier has a smaller one */
static Datum
job_id_bound(TimestampTz at)
{
	pg_uuid_t  *id = palloc0(sizeof(pg_uuid_t));

	orch_uuid_v7_stamp(id, at);
	return UUIDPGetDatum(id);
}

/*
 * orchestrator.purge_jobs(cutoff, batch): up to batch jobs finished before
 * cutoff, and created before it, removed with what is only theirs.
 */
Datum
orch_purge_jobs_sql(PG_FUNCTION_ARGS)
{
	TimestampTz cutoff = PG_GETARG_TIMESTAMPTZ(0);
	int32		batch = PG_GETARG_INT32(1);
	int			n;

	if (batch < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch must be at least 1")));
	SPI_connect();
	n = orch_job_purge(job_id_bound(cutoff), cutoff, batch);
	SPI_finish();
	PG_RETURN_INT32(n);
}

/*
 * orch_retention_pass runs one batch of retention in the caller's
 * transaction, with SPI connected.  Returns whether it found a full batch
 * of something (more may be waiting).
 */
bool
orch_retention_pass(void)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];
	int			ret;
	int			total = 0;
	bool		full = false;

	if (plan == NULL)
	{
		Oid			types[2] = {INTERVALOID, INT4OID};

		plan = orch_prepare_kept("SELECT p.jobs, p.events, p.notifications, p.signals"
								 " FROM orchestrator.purge($1, $2) p", 2, types);
	}
	{
		Interval   *iv = palloc0(sizeof(Interval));

		iv->time = (int64) orch_retention_s * USECS_PER_SEC;
		args[0] = IntervalPGetDatum(iv);
	}
	args[1] = Int32GetDatum(orch_retention_batch);
	ret = SPI_execute_plan(plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator retention failed: %s", SPI_result_code_string(ret));
	for (int c = 1; c <= 4; c++)
	{
		bool		isnull;
		int			n = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, c, &isnull));

		total += n;
		/* jobs come in full batches while a backlog lasts; a log chunk removed whole means more */
		if (n >= orch_retention_batch)
			full = true;
	}
	if (total > 0)
		elog(DEBUG1, "orchestrator retention removed %d rows", total);
	return full;
}
