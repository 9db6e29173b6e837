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
 * For flow control (flow.c): a generation counter that any commit changing
 * pauses or concurrency limits raises, so processes re-read them only when
 * they changed; and the endpoints' rate limiters, one slot per endpoint
 * with the time its next request may go, and the slots reserved for jobs
 * told to wait, under one LWLock.  All of it is lost in a restart, which
 * only lets each endpoint start again from an empty schedule.
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
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "guc.h"
#include "shmem.h"

#define ORCH_RATE_ENDPOINTS 64
#define ORCH_RATE_RESERVATIONS 4096
#define ORCH_ENDPOINT_NAME_MAX 101	/* orchestrator.endpoints.name: up to 100 */

/* An endpoint's rate limiter: when its next request may go. */
typedef struct OrchRateEndpoint
{
	char		name[ORCH_ENDPOINT_NAME_MAX];	/* "" : free */
	TimestampTz next_free;
} OrchRateEndpoint;

/* A slot given to a job told to wait for it (endpoint 0-based; -1: free). */
typedef struct OrchRateReservation
{
	int			endpoint;
	pg_uuid_t	job_id;
	TimestampTz slot;
} OrchRateReservation;

typedef struct OrchShared
{
	volatile int procno[ORCH_MAX_WORKERS];
	volatile bool connect_failed[ORCH_MAX_WORKERS];
	pg_atomic_uint32 work[ORCH_MAX_WORKERS];
	pg_atomic_uint32 inflight[ORCH_MAX_WORKERS];	/* HTTP requests in flight */
	pg_atomic_uint32 flow_generation;
	LWLock	   *rate_lock;
	OrchRateEndpoint rate[ORCH_RATE_ENDPOINTS];
	OrchRateReservation reserved[ORCH_RATE_RESERVATIONS];
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
	RequestNamedLWLockTranche("orchestrator", 1);
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
		pg_atomic_init_u32(&orch_shared->flow_generation, 1);
		orch_shared->rate_lock = &(GetNamedLWLockTranche("orchestrator"))->lock;
		memset(orch_shared->rate, 0, sizeof(orch_shared->rate));
		for (int i = 0; i < ORCH_RATE_RESERVATIONS; i++)
			orch_shared->reserved[i].endpoint = -1;
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

/*
 * orch_shmem_flow_generation reads the flow-control generation into *gen;
 * false when there is no shared memory (not preloaded).
 */
bool
orch_shmem_flow_generation(uint32 *gen)
{
	if (orch_shared == NULL)
		return false;
	*gen = pg_atomic_read_u32(&orch_shared->flow_generation);
	return true;
}

/* orch_shmem_flow_changed raises the generation (after a commit). */
void
orch_shmem_flow_changed(void)
{
	if (orch_shared)
		pg_atomic_fetch_add_u32(&orch_shared->flow_generation, 1);
}

/*
 * orch_shmem_rate_slot is an endpoint's rate limiter, shared by every
 * process: a schedule of slots interval_us apart.  A job may send now
 * (returns 0) when it holds a reserved slot that has come, or when the
 * endpoint's next free slot has come (taking it).  Otherwise the next free
 * slot is reserved for the job and returned: the job waits for it, and
 * those after it get the slots after.  A job asking again before its slot
 * gets the same one back.  When the tables are full, the job is told to
 * come back at the next free slot without a reservation.
 */
TimestampTz
orch_shmem_rate_slot(const char *endpoint, int64 interval_us, const pg_uuid_t *job_id, TimestampTz now)
{
	OrchRateEndpoint *e = NULL;
	int			ei = -1;
	int			free_res = -1;
	TimestampTz slot = 0;

	if (orch_shared == NULL)
		return 0;
	LWLockAcquire(orch_shared->rate_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ORCH_RATE_ENDPOINTS && ei < 0; i++)
		if (strncmp(orch_shared->rate[i].name, endpoint, ORCH_ENDPOINT_NAME_MAX) == 0)
			ei = i;
	if (ei < 0)
	{
		/* a free entry, or one whose schedule is long past */
		for (int i = 0; i < ORCH_RATE_ENDPOINTS && ei < 0; i++)
			if (orch_shared->rate[i].name[0] == '\0' ||
				orch_shared->rate[i].next_free < now - 3600 * USECS_PER_SEC)
				ei = i;
		if (ei < 0)
		{
			LWLockRelease(orch_shared->rate_lock);
			ereport(WARNING,
					(errmsg("orchestrator tracks the rate limits of at most %d endpoints at once; endpoint \"%s\" is not limited",
							ORCH_RATE_ENDPOINTS, endpoint)));
			return 0;
		}
		/* a reused entry's reservations are void */
		for (int r = 0; r < ORCH_RATE_RESERVATIONS; r++)
			if (orch_shared->reserved[r].endpoint == ei)
				orch_shared->reserved[r].endpoint = -1;
		strlcpy(orch_shared->rate[ei].name, endpoint, ORCH_ENDPOINT_NAME_MAX);
		orch_shared->rate[ei].next_free = now;
	}
	e = &orch_shared->rate[ei];

	for (int r = 0; r < ORCH_RATE_RESERVATIONS; r++)
	{
		OrchRateReservation *res = &orch_shared->reserved[r];

		if (res->endpoint == ei && memcmp(&res->job_id, job_id, sizeof(pg_uuid_t)) == 0)
		{
			slot = res->slot;
			if (slot <= now)
			{
				res->endpoint = -1;
				slot = 0;
			}
			LWLockRelease(orch_shared->rate_lock);
			return slot;
		}
		/* free, or given to a job that has not come for it in a minute */
		if (free_res < 0 && (res->endpoint < 0 || res->slot < now - 60 * USECS_PER_SEC))
			free_res = r;
	}

	if (e->next_free <= now)
		e->next_free = now + interval_us;
	else
	{
		slot = e->next_free;
		if (free_res >= 0)
		{
			orch_shared->reserved[free_res].endpoint = ei;
			orch_shared->reserved[free_res].job_id = *job_id;
			orch_shared->reserved[free_res].slot = slot;
			e->next_free = slot + interval_us;
		}
	}
	LWLockRelease(orch_shared->rate_lock);
	return slot;
}
