/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory: the registry of running workers, their latches and
 *	  work flags, and whether each worker's last connection attempt failed.
 *
 * One slot per configured worker holds the pgprocno of the process running
 * it, or -1.  A worker writes its own slot when it starts and clears it when
 * it exits; any backend reads the slots to set latches.  A stale slot can
 * only cause a spurious latch set on some other process, which is harmless,
 * so no lock is taken on the wake path: it costs one SetLatch per worker.
 * Before setting a latch the waker raises the worker's "work" flag: the
 * latch is also set by PostgreSQL itself (a signal to catch up with the
 * shared invalidation queue, which an idle backend gets when others
 * change catalogs), and a worker claims only when its flag says so.
 *
 * A second flag per slot says that the worker's last attempt to connect to
 * orchestrator.database failed (the database does not exist), so the next
 * one waits for it instead of failing again every second (worker.c).
 *
 * src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "guc.h"
#include "shmem.h"

typedef struct OrchShared
{
	volatile int procno[ORCH_MAX_WORKERS];
	volatile bool connect_failed[ORCH_MAX_WORKERS];
	pg_atomic_uint32 work[ORCH_MAX_WORKERS];
	pg_atomic_uint32 inflight[ORCH_MAX_WORKERS];	/* HTTP requests in flight */
} OrchShared;

static OrchShared *orch_shared = NULL;

/* this process's worker slot, or -1: not a worker */
static int	my_index = -1;

bool		orch_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void orch_shmem_request(void);
static void orch_shmem_startup(void);

/*
 * orch_shmem_init chains the PG15 shared-memory hooks.
 */
void
orch_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = orch_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = orch_shmem_startup;
}

static void
orch_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(OrchShared)));
}

static void
orch_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	orch_shared = ShmemInitStruct("orchestrator", sizeof(OrchShared), &found);
	if (!found)
	{
		for (int i = 0; i < ORCH_MAX_WORKERS; i++)
		{
			orch_shared->procno[i] = -1;
			orch_shared->connect_failed[i] = false;
			pg_atomic_init_u32(&orch_shared->work[i], 0);
			pg_atomic_init_u32(&orch_shared->inflight[i], 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * orch_shmem_register_worker publishes the calling worker's latch.
 */
void
orch_shmem_register_worker(int index)
{
	Assert(index >= 0 && index < ORCH_MAX_WORKERS);
	my_index = index;
	if (orch_shared)
	{
		orch_shared->procno[index] = MyProc->pgprocno;
		pg_atomic_write_u32(&orch_shared->inflight[index], 0);
	}
}

void
orch_shmem_unregister_worker(int index)
{
	if (orch_shared && orch_shared->procno[index] == MyProc->pgprocno)
	{
		orch_shared->procno[index] = -1;
		pg_atomic_write_u32(&orch_shared->inflight[index], 0);
	}
}

/*
 * orch_shmem_take_work says whether worker index was woken for work since
 * it last asked, and lowers its flag.  Call it after ResetLatch.
 */
bool
orch_shmem_take_work(int index)
{
	if (orch_shared == NULL)
		return true;
	return pg_atomic_exchange_u32(&orch_shared->work[index], 0) != 0;
}

/*
 * orch_shmem_connect_failed says whether worker index's last attempt to
 * connect to its database failed; orch_shmem_set_connect_failed records it.
 * Only that worker's process writes its flag.
 */
bool
orch_shmem_connect_failed(int index)
{
	return orch_shared != NULL && orch_shared->connect_failed[index];
}

void
orch_shmem_set_connect_failed(int index, bool failed)
{
	if (orch_shared)
		orch_shared->connect_failed[index] = failed;
}

/*
 * orch_shmem_wake_all sets the latch of every running worker.  SetLatch on a
 * latch that is already set returns at once, so repeated wakes are cheap.
 */
void
orch_shmem_wake_all(void)
{
	if (orch_shared == NULL)
		return;

	for (int i = 0; i < ORCH_MAX_WORKERS; i++)
	{
		int			procno = orch_shared->procno[i];

		if (procno >= 0 && procno < (int) ProcGlobal->allProcCount)
		{
			/* the flag first: SetLatch is a barrier, and the worker reads it after ResetLatch */
			pg_atomic_write_u32(&orch_shared->work[i], 1);
			SetLatch(&ProcGlobal->allProcs[procno].procLatch);
		}
	}
}

/*
 * orch_shmem_report_inflight publishes how many HTTP requests this worker
 * has in flight (http.c, at each start and end); a plain write, read by
 * orchestrator.workers.  Nothing for a process that is not a worker.
 */
void
orch_shmem_report_inflight(int n)
{
	if (orch_shared && my_index >= 0)
		pg_atomic_write_u32(&orch_shared->inflight[my_index], (uint32) n);
}

/*
 * orch_shmem_worker returns whether worker slot index has a live worker,
 * and then its process id and HTTP requests in flight.
 */
bool
orch_shmem_worker(int index, int *pid, int *inflight)
{
	int			procno;

	if (orch_shared == NULL || index < 0 || index >= ORCH_MAX_WORKERS)
		return false;
	procno = orch_shared->procno[index];
	if (procno < 0 || procno >= (int) ProcGlobal->allProcCount)
		return false;
	*pid = ProcGlobal->allProcs[procno].pid;
	*inflight = (int) pg_atomic_read_u32(&orch_shared->inflight[index]);
	return *pid != 0;
}
