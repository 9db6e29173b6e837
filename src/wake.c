/*-------------------------------------------------------------------------
 *
 * wake.c
 *	  Waking workers when a transaction that enqueued work commits.
 *
 * A submit (or retry) calls orch_wake_at_commit(), which only sets a
 * backend-local flag.  The transaction callback sets the workers' latches
 * once, after the commit is durable, so a worker never looks for a job whose
 * row it cannot yet see, and an aborted transaction wakes nobody.  No
 * NOTIFY: its commit-time lock would serialise every notifying commit.
 *
 * src/wake.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"

#include "shmem.h"
#include "wake.h"

static bool wake_pending = false;

static void orch_xact_callback(XactEvent event, void *arg);

PG_FUNCTION_INFO_V1(orch_wake_workers_sql);
PG_FUNCTION_INFO_V1(orch_workers_preloaded);

void
orch_wake_init(void)
{
	RegisterXactCallback(orch_xact_callback, NULL);
}

/*
 * orch_wake_at_commit asks for the workers to be woken when the current
 * top-level transaction commits.
 */
void
orch_wake_at_commit(void)
{
	wake_pending = true;
}

static void
orch_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				orch_shmem_wake_all();
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/*
 * orchestrator.wake_workers(): SQL access to orch_wake_at_commit.
 */
Datum
orch_wake_workers_sql(PG_FUNCTION_ARGS)
{
	orch_wake_at_commit();
	PG_RETURN_VOID();
}

/*
 * orchestrator.workers_preloaded(): whether workers can run at all.
 */
Datum
orch_workers_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(orch_preloaded);
}
