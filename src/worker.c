/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker: registration, connecting (and waiting for a
 *	  missing database), and the main loop.
 *
 * orchestrator.workers identical workers connect to orchestrator.database.
 * Each loop pass: claim a batch (claim.c) in one short transaction, then
 * run (step.c), in a second one, the jobs whose HTTP responses came in and
 * the jobs just claimed; requests that jobs parked on go to curl (http.c)
 * after that commit.  Then wait, in one WaitEventSet, for the latch (a
 * committed submit sets it: wake.c), postmaster death and curl's sockets,
 * with curl's timer or the earliest future run_at as the timeout.  So one
 * worker keeps up to orchestrator.max_inflight requests going while it
 * claims and runs other jobs; with nothing to do it sleeps without polling
 * and uses no CPU.  A claim is only tried when the latch was set, when
 * something fell due, or after work was done.  The first worker also runs
 * retention (retention.c) in short batches between claims while
 * orchestrator.retention is set.
 *
 * A worker that finds no orchestrator.database exits once with the
 * server's FATAL, and is then started again to wait for the database
 * (wait_for_database), saying so once, instead of failing every second.
 * In a database without the extension it runs nothing and warns once.
 *
 * Signals: SIGHUP reloads the configuration.  SIGTERM sets a flag (not
 * die()) and cancels the step in hand, if any: the step's writes roll back
 * and no result is recorded for it, the worker commits what the batch did
 * so far and hands its leases back before exiting, so the job resumes at
 * that step elsewhere.  Postmaster death ends the wait and the process
 * (WL_EXIT_ON_PM_DEATH).  The loop's memory context is reset every pass.
 * No transaction is open while the worker waits.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "lib/ilist.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "guc.h"
#include "http.h"
#include "job_state.h"
#include "redact.h"
#include "retention.h"
#include "shmem.h"
#include "step.h"
#include "step_http.h"
#include "step_sql.h"
#include "worker.h"

#define ORCH_MAX_BATCH 1000

static int	worker_index = 0;
static MemoryContext loop_context = NULL;
static WaitEventSet *wait_set = NULL;
static bool need_claim = true;
static TimestampTz next_claim_at = 0;	/* 0: nothing scheduled */
static bool connected = false;	/* connected to orchestrator.database */
static bool said_no_extension = false;	/* warned that it is not installed */
static TimestampTz next_purge_at = 0;	/* the first worker's next retention batch */

/* how often the first worker looks for rows past orchestrator.retention */
#define ORCH_PURGE_INTERVAL_MS 10000

static void begin_tx(const char *activity);
static void end_tx(void);
static int	claim_batch(OrchClaimedJob *jobs, int room, TimestampTz *next_wakeup, bool *contended);
static void run_batch(OrchClaimedJob *jobs, int n);
static bool purge_batch(void);
static void release_on_exit(void);
static void unregister_worker(int code, Datum arg);
static void handle_sigterm(SIGNAL_ARGS);

/* A due job locked by another transaction is looked at again this often. */
#define ORCH_CONTENDED_RETRY_MS 1000

/*
 * orch_worker_register registers orchestrator.workers static workers; they
 * start once recovery has finished and are restarted a second after a crash.
 */
void
orch_worker_register(void)
{
	for (int i = 0; i < orch_workers; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "orchestrator");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "orch_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "orchestrator worker %d", i + 1);
		snprintf(worker.bgw_type, BGW_MAXLEN, "orchestrator worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

/*
 * note_connect_failure records, as a worker exits, that it never connected
 * to its database (InitPostgres raised FATAL: it does not exist, or does
 * not accept connections), so that the postmaster's restart a second later
 * waits for the database instead.
 */
static void
note_connect_failure(int code, Datum arg)
{
	orch_shmem_set_connect_failed(worker_index, !connected);
}

/*
 * database_accepts_connections says whether the database exists and may
 * be connected to (not datallowconn = false, not left invalid by an
 * interrupted DROP DATABASE).  It reads pg_database, a shared catalog,
 * from a process connected to no database: a plain heap scan, as the
 * autovacuum launcher does (an index would need pg_class, which such a
 * process cannot read).
 */
static bool
database_accepts_connections(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		found = (strcmp(NameStr(db->datname), name) == 0 &&
				 db->datallowconn && db->datconnlimit != DATCONNLIMIT_INVALID_DB);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * wait_for_database runs instead of the worker after a failed connection:
 * connected to no database, it looks for orchestrator.database in the
 * shared catalog, after 1 s, then 2 and 4, then every 5 s.  It says
 * so once, with what to do; when the database exists and accepts
 * connections, it exits so that the postmaster starts the worker again,
 * which then connects.  So a missing database costs one FATAL and one
 * warning, not one a second.
 */
static void
wait_for_database(void)
{
	long		delay_ms = 1000;

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("orchestrator worker");
	ereport(WARNING,
			(errmsg("orchestrator worker %d waits for database \"%s\", which does not exist or does not accept connections",
					worker_index + 1, orch_database),
			 errhint("Create the database and the extension in it, or set orchestrator.database and restart the server. "
					 "The worker looks for it every few seconds and logs nothing more until it connects.")));
	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, delay_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (database_accepts_connections(orch_database))
		{
			ereport(LOG,
					(errmsg("orchestrator worker %d found database \"%s\" accepting connections and restarts to connect to it",
							worker_index + 1, orch_database)));
			orch_shmem_set_connect_failed(worker_index, false);
			proc_exit(1);
		}
		delay_ms = Min(delay_ms * 2, 5000);
	}
}

/*
 * orch_worker_main is the worker's entry point.
 */
void
orch_worker_main(Datum main_arg)
{
	OrchClaimedJob *jobs;

	worker_index = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();
	/* nothing this worker logs carries an email address or a token */
	orch_redact_log_init();

	/* the database was missing last time: wait for it, quietly */
	if (orch_shmem_connect_failed(worker_index))
		wait_for_database();
	before_shmem_exit(note_connect_failure, (Datum) 0);
	BackgroundWorkerInitializeConnection(orch_database, NULL, 0);
	connected = true;
	pgstat_report_appname("orchestrator worker");

	/*
	 * The engine's own queries run under known settings, whatever the
	 * database's defaults say: the default search_path (pg_catalog first),
	 * READ COMMITTED (claims and dedupe rely on per-statement snapshots),
	 * read-write.
	 */
	SetConfigOption("search_path", "\"$user\", public", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_SESSION);

	orch_shmem_register_worker(worker_index);
	before_shmem_exit(unregister_worker, (Datum) 0);

	ereport(LOG,
			(errmsg("orchestrator worker %d started in database \"%s\"",
					worker_index + 1, orch_database)));

	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "orchestrator worker loop",
										 ALLOCSET_DEFAULT_SIZES);
	jobs = MemoryContextAlloc(TopMemoryContext, sizeof(OrchClaimedJob) * ORCH_MAX_BATCH);

	/* one wait for everything: new work, signals, postmaster death, HTTP */
	orch_http_init();
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, orch_http_wait_fd(), NULL, NULL);

	for (;;)
	{
		bool		worked = false;
		long		timeout_ms = -1;
		WaitEvent	events[3];
		int			nevents;

		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ereport(LOG,
					(errmsg("orchestrator worker %d reloaded its configuration (batch_size %d, lease_duration %d ms)",
							worker_index + 1, orch_batch_size, orch_lease_ms)));
		}
		if (ShutdownRequestPending)
			break;

		/* claim when told to (latch), when something falls due, or after work */
		if (next_claim_at != 0 && next_claim_at <= GetCurrentTimestamp())
			need_claim = true;
		if (need_claim && orch_http_room() > 0)
		{
			int			room = Min(Min(orch_batch_size, ORCH_MAX_BATCH), orch_http_room());
			TimestampTz next_wakeup = 0;
			bool		contended = false;
			int			n = claim_batch(jobs, room, &next_wakeup, &contended);

			if (n > 0 || orch_http_has_done())
			{
				run_batch(jobs, n);
				worked = true;
			}
			else
			{
				/* nothing runnable now: sleep until the next due time */
				need_claim = false;
				next_claim_at = next_wakeup;
				if (contended)
				{
					/* due rows another transaction holds: look again shortly */
					TimestampTz soon = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																   ORCH_CONTENDED_RETRY_MS);

					next_claim_at = (next_claim_at == 0) ? soon : Min(next_claim_at, soon);
				}
			}
		}
		else if (orch_http_has_done())
		{
			run_batch(jobs, 0);
			worked = true;
		}

		/* retention: the first worker, one short batch between claims */
		if (worker_index == 0 && orch_retention_s > 0 && GetCurrentTimestamp() >= next_purge_at)
		{
			bool		more = purge_batch();

			next_purge_at = more ? 0 : TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ORCH_PURGE_INTERVAL_MS);
			worked |= more;
		}

		if (worked)
		{
			/* finished work may have made more: look again before sleeping */
			need_claim = true;
			timeout_ms = 0;
		}
		else
		{
			/* at max_inflight only a finishing request can make room: wait for curl */
			if (next_claim_at != 0 && orch_http_room() > 0)
			{
				TimestampTz now = GetCurrentTimestamp();

				timeout_ms = (next_claim_at <= now) ? 0 :
					(long) Min((next_claim_at - now + 999) / 1000, (int64) 24 * 3600 * 1000);
			}
			if (orch_http_timeout() >= 0)
				timeout_ms = (timeout_ms < 0) ? orch_http_timeout() : Min(timeout_ms, orch_http_timeout());
			if (worker_index == 0 && orch_retention_s > 0)
			{
				TimestampTz now = GetCurrentTimestamp();
				long		purge_ms = (next_purge_at <= now) ? 0 :
					(long) Min((next_purge_at - now + 999) / 1000, (int64) ORCH_PURGE_INTERVAL_MS);

				timeout_ms = (timeout_ms < 0) ? purge_ms : Min(timeout_ms, purge_ms);
			}
			if (orch_http_inflight() > 0)
				pgstat_report_activity(STATE_IDLE,
									   psprintf("orchestrator: %d HTTP request(s) in flight", orch_http_inflight()));
			else
				pgstat_report_activity(STATE_IDLE, NULL);
		}

		nevents = WaitEventSetWait(wait_set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < nevents; i++)
		{
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				/* woken for work, not by a signal of PostgreSQL's own */
				if (orch_shmem_take_work(worker_index))
					need_claim = true;
			}
		}
		/* let curl act on ready sockets and its timer; collect finished requests */
		orch_http_drive();
	}

	orch_http_abort_all();
	release_on_exit();
	ereport(LOG,
			(errmsg("orchestrator worker %d shutting down", worker_index + 1),
			 errdetail("The most HTTP requests it had in flight at once was %d.",
					   orch_http_max_seen_inflight())));
	proc_exit(1);
}

static void
begin_tx(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_tx(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* commit leaves us in TopMemoryContext: the loop allocates in its own */
	MemoryContextSwitchTo(loop_context);
	pgstat_report_stat(false);
}

/*
 * claim_batch runs the claim pass (claim.c) in one short transaction.
 */
static int
claim_batch(OrchClaimedJob *jobs, int room, TimestampTz *next_wakeup, bool *contended)
{
	int			n = 0;

	begin_tx("orchestrator: claiming jobs");

	/*
	 * A claim need not be durable: lost in a crash, it leaves the job
	 * pending, as it was, or leased to a dead worker, whose jobs the next
	 * worker to start takes back at once (claim.c).
	 * So the claim commits without waiting for its WAL flush; the run
	 * transaction that follows commits synchronously and flushes both.
	 */
	(void) set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);

	if (OidIsValid(get_extension_oid("orchestrator", true)))
	{
		SPI_connect();
		n = orch_claim_pass(jobs, room, next_wakeup, contended);
		SPI_finish();
		said_no_extension = false;
	}
	else if (!said_no_extension)
	{
		/* once, until the extension is there (and again if it is dropped) */
		ereport(WARNING,
				(errmsg("orchestrator worker %d finds no extension \"orchestrator\" in database \"%s\"",
						worker_index + 1, orch_database),
				 errhint("Run CREATE EXTENSION orchestrator in database \"%s\", or point orchestrator.database "
						 "at the database that has it. Until then the worker runs nothing.", orch_database)));
		said_no_extension = true;
	}

	end_tx();
	return n;
}

/*
 * purge_batch runs one batch of retention (retention.c) in its own short
 * transaction; returns whether more is waiting.
 */
static bool
purge_batch(void)
{
	bool		more = false;

	begin_tx("orchestrator: retention");
	if (OidIsValid(get_extension_oid("orchestrator", true)))
	{
		SPI_connect();
		more = orch_retention_pass();
		SPI_finish();
	}
	end_tx();
	return more;
}

/*
 * run_batch runs, in one transaction, the jobs whose HTTP responses are in
 * and the jobs just claimed, each job in its own subtransaction.  Jobs that
 * park on a new HTTP request have their request sent after the commit, so
 * no transaction is open while it travels.  On SIGTERM the rest are left
 * leased and handed back by release_on_exit.
 */
static void
run_batch(OrchClaimedJob *jobs, int n)
{
	dlist_head	to_send = DLIST_STATIC_INIT(to_send);
	OrchHttpRequest *req;
	OrchHttpRequest *parked;

	dlist_head	done = DLIST_STATIC_INIT(done);
	OrchClaimedJob *all;
	int			nall = 0;
	int			ndone = 0;

	begin_tx("orchestrator: running jobs");
	/* the jobs' transitions are written together, before the commit */
	(void) orch_job_hold_begin();

	/* every job of the batch is locked first, by the batch's transaction */
	while ((req = orch_http_take_done()) != NULL)
	{
		dlist_push_tail(&done, &req->node);
		ndone++;
	}
	all = palloc(sizeof(OrchClaimedJob) * Max(ndone + n, 1));
	{
		dlist_iter	it;

		dlist_foreach(it, &done)
			all[nall++] = orch_step_request(dlist_container(OrchHttpRequest, node, it.cur))->job;
	}
	for (int i = 0; i < n; i++)
		all[nall++] = jobs[i];
	SPI_connect();
	orch_job_lock(all, nall);
	SPI_finish();

	while (!dlist_is_empty(&done))
	{
		req = dlist_container(OrchHttpRequest, node, dlist_pop_head_node(&done));
		if (ShutdownRequestPending)
		{
			/* its job stays leased; release_on_exit hands it back */
			orch_http_free(req);
			continue;
		}
		/* each job sees what the previous ones committed into this batch */
		PopActiveSnapshot();
		PushActiveSnapshot(GetTransactionSnapshot());
		orch_run_job(&orch_step_request(req)->job, req, &parked);
		orch_http_free(req);
		if (parked)
			dlist_push_tail(&to_send, &parked->node);
	}
	for (int i = 0; i < n && !ShutdownRequestPending; i++)
	{
		PopActiveSnapshot();
		PushActiveSnapshot(GetTransactionSnapshot());
		orch_run_job(&jobs[i], NULL, &parked);
		if (parked)
			dlist_push_tail(&to_send, &parked->node);
	}
	orch_job_hold_end();
	end_tx();

	while (!dlist_is_empty(&to_send))
	{
		req = dlist_container(OrchHttpRequest, node, dlist_pop_head_node(&to_send));
		if (ShutdownRequestPending)
			orch_http_free(req);
		else
			orch_http_start(req);
	}
}

/*
 * release_on_exit hands this worker's leases back after SIGTERM, so jobs in
 * flight return to pending at once instead of waiting for lease expiry.
 */
static void
release_on_exit(void)
{
	int			n = 0;

	begin_tx("orchestrator: releasing leases");
	if (OidIsValid(get_extension_oid("orchestrator", true)))
	{
		SPI_connect();
		n = orch_job_release();
		SPI_finish();
	}
	end_tx();
	if (n > 0)
		ereport(LOG,
				(errmsg("orchestrator worker %d returned %d job(s) to pending", worker_index + 1, n)));
}

static void
unregister_worker(int code, Datum arg)
{
	orch_shmem_unregister_worker(worker_index);
}

/*
 * handle_sigterm asks the loop to stop and, while a step's function runs,
 * cancels it as pg_cancel_backend would, so shutdown never waits for a
 * long step.
 */
static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ShutdownRequestPending = true;
	if (orch_step_running)
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}
