/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Claiming runnable jobs: the worker's claim pass, and when to look next.
 *
 * A claim takes up to orchestrator.batch_size pending jobs whose run_at
 * has come, in run_at order, with FOR UPDATE SKIP LOCKED so concurrent
 * workers never take the same row, and leases them to this worker for
 * orchestrator.lease_duration; each claim bumps the job's fencing token,
 * and every later write for the job carries the token it was claimed with,
 * so a worker that lost its lease cannot overwrite the new holder.  A
 * lease that has lapsed (its worker died or hung) is reclaimed first: the
 * job goes back to pending, or fails past orchestrator.max_reclaims.  A
 * worker's first pass also reclaims, without waiting for their lapse, the
 * leases of processes that no longer exist: after a crash restart, jobs
 * (HTTP ones too) run again within a second of the server coming up.  On
 * SIGTERM a worker hands its own leases back.  The statements themselves
 * are transitions of job_state.c, which alone writes a job's status and
 * lease; this file decides when they run and reads when the next job
 * falls due.
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
#include "miscadmin.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "approval.h"
#include "claim.h"
#include "flow.h"
#include "guc.h"
#include "util.h"

/* how often a worker looks for lapsed leases while it is busy */
#define ORCH_RECLAIM_INTERVAL_MS 1000

static SPIPlanPtr wakeup_plan = NULL;

static TimestampTz next_wakeup(bool *contended);

/*
 * orch_reclaim_expired returns jobs whose lease has lapsed to pending and
 * records each reclaim.  Returns the number reclaimed.
 */
int
orch_reclaim_expired(void)
{
	int			n = orch_job_reclaim_expired(orch_max_reclaims);

	if (n > 0)
		ereport(LOG,
				(errmsg("orchestrator worker reclaimed %d job(s) whose lease expired", n)));
	return n;
}

/*
 * next_wakeup returns when the worker next has something to do without
 * being woken: the earliest future run_at of a pending job (found through
 * the claim order, which is never later than run_at), or the earliest
 * future lease expiry to reclaim, or approval request to expire.  A job
 * paused until resumed ("infinity") is not waited for.  0 means nothing is scheduled: sleep until
 * woken.  It runs in the claim's transaction, so "due" means due at the
 * claim's now(): a due job the claim did not get is locked by another
 * transaction (a worker running it past its lease, an operator's update),
 * and *contended says so.
 */
static TimestampTz
next_wakeup(bool *contended)
{
	int			ret;
	bool		isnull;
	Datum		d;

	if (wakeup_plan == NULL)
		wakeup_plan = orch_prepare_kept(
			"SELECT LEAST((SELECT pg_catalog.min(" CLAIM_ORDER ") FROM orchestrator.sequence_jobs j"
			"              WHERE j.status = 'pending' AND " CLAIM_ORDER " > pg_catalog.now()"
			"                AND " CLAIM_ORDER " < 'infinity'),"
			/* jobs of some priority whose place in the order has come, but not their run_at */
			"             (SELECT pg_catalog.min(j.run_at) FROM orchestrator.sequence_jobs j"
			"              WHERE j.status = 'pending' AND " CLAIM_ORDER " <= pg_catalog.now()"
			"                AND j.run_at > pg_catalog.now()),"
			"             (SELECT pg_catalog.min(j.lease_expires_at) FROM orchestrator.sequence_jobs j"
			"              WHERE j.status = 'in_progress' AND j.lease_expires_at > pg_catalog.now()),"
			"             (SELECT pg_catalog.min(a.expires_at) FROM orchestrator.slack_pending_actions a"
			"              WHERE a.status = 'pending' AND a.expires_at IS NOT NULL"
			"                AND a.expires_at > pg_catalog.now())),"
			"       EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j"
			"               WHERE j.status = 'pending' AND " CLAIM_ORDER " <= pg_catalog.now()"
			"                 AND j.run_at <= pg_catalog.now())"
			"       OR EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j"
			"                  WHERE j.status = 'in_progress' AND j.lease_expires_at <= pg_catalog.now())",
			0, NULL);

	ret = orch_execute_keyed(wakeup_plan, NULL, NULL, true, 1, InvalidSnapshot);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator wake-up query failed: %s", SPI_result_code_string(ret));
	*contended = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * orch_claim_pass is the worker's claim pass, in the caller's transaction:
 * reclaim lapsed leases (at most once a second), then lease up to room runnable jobs into jobs[]
 * (returning how many).  When it got none, it also reads when the next
 * delayed job falls due (*next_due, 0: nothing scheduled), so an idle pass
 * costs one transaction, and whether some job was due but locked by
 * another transaction (*contended), which no commit of ours will announce.
 */
int
orch_claim_pass(OrchClaimedJob *jobs, int room, TimestampTz *next_due, bool *contended)
{
	static TimestampTz next_reclaim = 0;
	static bool orphans_reclaimed = false;
	TimestampTz now = GetCurrentTimestamp();
	int			n;

	/*
	 * A worker's first pass takes back the jobs of workers that are gone
	 * (a crash restart killed them all): they need not wait for their
	 * leases to lapse.
	 */
	if (!orphans_reclaimed)
	{
		int			total = 0;

		while ((n = orch_job_reclaim_orphaned(orch_max_reclaims)) > 0)
			total += n;
		if (total > 0)
			ereport(LOG,
					(errmsg("orchestrator worker reclaimed %d job(s) leased to processes that no longer exist",
							total)));
		orphans_reclaimed = true;
	}

	/*
	 * lapsed leases, and approval requests nobody answered in time, are
	 * looked for at most once a second, not every pass
	 */
	if (now >= next_reclaim)
	{
		orch_reclaim_expired();
		orch_approval_expire_due();
		next_reclaim = TimestampTzPlusMilliseconds(now, ORCH_RECLAIM_INTERVAL_MS);
	}
	n = orch_flow_claim(jobs, room, orch_lease_ms);
	if (n == 0)
		*next_due = next_wakeup(contended);
	return n;
}
