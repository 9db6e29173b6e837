/*-------------------------------------------------------------------------
 *
 * flow.c
 *	  Flow control: the claim order by priority, pauses and drain,
 *	  concurrency limits per org, user or event type, and rate limits per
 *	  endpoint.  A job held back by any of them waits in the queue: a
 *	  "deferred" history row, not a failure and not an attempt.
 *
 * Priority: orchestrator.claim_order (here) puts a pending job one minute
 * earlier in the claim order per point of priority; the claim and the
 * index sequence_jobs_runnable both use it (job_state.c).
 *
 * Concurrency limits are kept at the claim (orch_flow_claim): under one
 * advisory lock, so claims of different workers see each other's, the
 * claim first wakes jobs waiting for slots that have freed
 * (orchestrator.flow_wake), then claims as usual, then asks
 * orchestrator.flow_gate which of the jobs it got are over a limit, and
 * hands those back to wait (job_state.c).  A waiting job is woken when a
 * slot frees, and looks again after a minute in any case.
 *
 * Pauses are kept before each step (orch_flow_paused, called by step.c):
 * a paused job's step is deferred to "infinity", and orch_resume makes
 * such jobs due again.  Drain holds only jobs that have run no step yet.
 *
 * Rate limits are kept as a request is built (orchestrator.http_request
 * calls orchestrator.rate_slot): a schedule of slots per endpoint in
 * shared memory (shmem.c); a job over the rate is deferred to the slot
 * reserved for it.
 *
 * With no pause and no concurrency limit set, none of this costs a query:
 * each process caches whether any is set, and reads the tables again only
 * when a commit that changed them has raised the generation in shared
 * memory (orchestrator.flow_changed, a trigger on those tables).
 *
 * src/flow.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "flow.h"
#include "job_state.h"
#include "shmem.h"
#include "util.h"

/* the advisory lock claims take while concurrency limits are set */
#define ORCH_FLOW_LOCK_KEY INT64CONST(0x6f7263685f666c6f)	/* "orch_flo" */

/* a job waiting for a slot looks again after this long at the latest */
#define ORCH_FLOW_WAIT_MS 60000

/* What this process last read of the flow-control tables. */
static struct
{
	bool		valid;
	uint32		generation;
	bool		pauses;
	bool		limits;
}			flow;

static bool changed_pending = false;

static void flow_xact_callback(XactEvent event, void *arg);

PG_FUNCTION_INFO_V1(orch_claim_order);
PG_FUNCTION_INFO_V1(orch_flow_changed);
PG_FUNCTION_INFO_V1(orch_wake_jobs_sql);
PG_FUNCTION_INFO_V1(orch_rate_slot);

void
orch_flow_init(void)
{
	RegisterXactCallback(flow_xact_callback, NULL);
}

/*
 * orchestrator.claim_order(run_at, priority): run_at less one minute per
 * point of priority.  Immutable: the interval has no days or months, so
 * the result does not depend on the time zone.
 */
Datum
orch_claim_order(PG_FUNCTION_ARGS)
{
	TimestampTz run_at = PG_GETARG_TIMESTAMPTZ(0);
	int16		priority = PG_GETARG_INT16(1);

	if (TIMESTAMP_NOT_FINITE(run_at))
		PG_RETURN_TIMESTAMPTZ(run_at);
	PG_RETURN_TIMESTAMPTZ(run_at - (int64) priority * 60 * USECS_PER_SEC);
}

/*
 * orchestrator.flow_changed(): statement trigger on the flow-control
 * tables.  At commit, every process is told to read them again, and the
 * workers are woken (a lifted limit lets jobs run).
 */
Datum
orch_flow_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orchestrator.flow_changed() must be called as a trigger")));
	changed_pending = true;
	flow.valid = false;			/* this transaction reads them again too */
	return PointerGetDatum(NULL);
}

static void
flow_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (changed_pending)
			{
				orch_shmem_flow_changed();
				orch_shmem_wake_all();
			}
			changed_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			if (changed_pending)
				flow.valid = false;
			changed_pending = false;
			break;
		default:
			break;
	}
}

/*
 * refresh reads whether any pause or concurrency limit is set, unless the
 * generation says nothing changed since the last read.  The generation is
 * read first: a change committed after it raises it again.  Without
 * shared memory the tables are read every time.
 */
static void
refresh(void)
{
	static SPIPlanPtr plan = NULL;
	uint32		gen = 0;
	bool		have_gen = orch_shmem_flow_generation(&gen);
	bool		isnull;
	int			ret;

	if (have_gen && flow.valid && flow.generation == gen)
		return;
	if (plan == NULL)
		plan = orch_prepare_kept(
			"SELECT EXISTS (SELECT 1 FROM orchestrator.pauses),"
			"       EXISTS (SELECT 1 FROM orchestrator.concurrency_limits)"
			"       OR EXISTS (SELECT 1 FROM orchestrator.flow_waits)",
			0, NULL);
	ret = orch_execute_keyed(plan, NULL, NULL, true, 1, InvalidSnapshot);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator could not read the flow controls: %s", SPI_result_code_string(ret));
	flow.pauses = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	flow.limits = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	flow.generation = gen;
	flow.valid = have_gen;
}

/* run a kept, argument-less statement of flow control */
static void
run_kept(SPIPlanPtr *plan, const char *sql, int expect)
{
	int			ret;

	if (*plan == NULL)
		*plan = orch_prepare_kept(sql, 0, NULL);
	ret = orch_execute_keyed(*plan, NULL, NULL, false, 0, InvalidSnapshot);
	if (ret != expect)
		elog(ERROR, "orchestrator flow control failed: %s", SPI_result_code_string(ret));
}

/*
 * gate hands back the jobs of jobs[0..n) that are over a concurrency limit
 * (orchestrator.flow_gate says which, and why), and returns how many are
 * left in jobs[], in their order.
 */
static int
gate(OrchClaimedJob *jobs, int n)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum		arg;
	int			ret;
	int			nheld;
	OrchClaimedJob *held;
	const char **notes;
	int			kept = 0;

	for (int i = 0; i < n; i++)
		ids[i] = UUIDPGetDatum(&jobs[i].id);
	if (plan == NULL)
	{
		Oid			types[1] = {UUIDARRAYOID};

		plan = orch_prepare_kept("SELECT g.job_id, g.note FROM orchestrator.flow_gate($1) g", 1, types);
	}
	arg = orch_array_of(ids, NULL, n, UUIDOID);
	ret = orch_execute_keyed(plan, &arg, NULL, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator flow gate failed: %s", SPI_result_code_string(ret));
	nheld = (int) SPI_processed;
	if (nheld == 0)
		return n;

	held = palloc(sizeof(OrchClaimedJob) * nheld);
	notes = palloc(sizeof(char *) * nheld);
	{
		SPITupleTable *tt = SPI_tuptable;
		bool	   *is_held = palloc0(sizeof(bool) * n);
		int			k = 0;

		for (int h = 0; h < nheld; h++)
		{
			bool		isnull;
			pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(tt->vals[h], tt->tupdesc, 1, &isnull));

			for (int i = 0; i < n; i++)
				if (!is_held[i] && memcmp(&jobs[i].id, id, sizeof(pg_uuid_t)) == 0)
				{
					is_held[i] = true;
					held[k] = jobs[i];
					notes[k] = TextDatumGetCString(SPI_getbinval(tt->vals[h], tt->tupdesc, 2, &isnull));
					k++;
					break;
				}
		}
		for (int i = 0; i < n; i++)
			if (!is_held[i])
				jobs[kept++] = jobs[i];
		nheld = k;
	}
	orch_job_hold_back(held, notes, nheld, ORCH_FLOW_WAIT_MS);
	return kept;
}

/*
 * orch_flow_claim is the claim under flow control: up to max runnable jobs
 * leased to this process, in claim order, none of them over a concurrency
 * limit.  With no limit set it is the plain claim (job_state.c).
 */
int
orch_flow_claim(OrchClaimedJob *jobs, int max, long lease_ms)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr wake_plan = NULL;
	int			n;

	refresh();
	if (flow.limits)
	{
		/* a statement of its own: the wake and the gate see every claim before this one */
		run_kept(&lock_plan,
				 psprintf("SELECT pg_catalog.pg_advisory_xact_lock(" INT64_FORMAT ")", ORCH_FLOW_LOCK_KEY),
				 SPI_OK_SELECT);
		run_kept(&wake_plan, "SELECT orchestrator.flow_wake()", SPI_OK_SELECT);
	}
	n = orch_job_claim(jobs, max, lease_ms);
	if (flow.limits && n > 0)
		n = gate(jobs, n);
	return n;
}

/*
 * orch_flow_paused returns why job may not run its next step now (a pause,
 * or a drain when starting: it has run no step yet), or NULL.  Costs
 * nothing while no pause is set.
 */
char *
orch_flow_paused(const OrchClaimedJob *job, bool starting)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];
	bool		isnull;
	Datum		d;
	int			ret;

	refresh();
	if (!flow.pauses)
		return NULL;
	if (plan == NULL)
	{
		Oid			types[2] = {UUIDOID, BOOLOID};

		plan = orch_prepare_kept("SELECT orchestrator.flow_paused($1, $2)", 2, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = BoolGetDatum(starting);
	ret = orch_execute_keyed(plan, args, NULL, false, 1, InvalidSnapshot);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator pause check failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * orchestrator.wake_jobs(ids): the pending jobs among ids are due now
 * (job_state.c), and the workers are woken at commit.
 */
Datum
orch_wake_jobs_sql(PG_FUNCTION_ARGS)
{
	int			n;

	SPI_connect();
	n = orch_job_wake(PG_GETARG_DATUM(0), NULL);
	SPI_finish();
	PG_RETURN_INT32(n);
}

/*
 * orchestrator.rate_slot(endpoint, per_second, job_id): NULL when the job
 * may send to the endpoint now, else the slot reserved for it (shmem.c).
 */
Datum
orch_rate_slot(PG_FUNCTION_ARGS)
{
	char	   *endpoint = text_to_cstring(PG_GETARG_TEXT_PP(0));
	float4		per_second = PG_GETARG_FLOAT4(1);
	pg_uuid_t  *job_id = PG_GETARG_UUID_P(2);
	TimestampTz slot;

	if (!(per_second > 0))
		PG_RETURN_NULL();
	slot = orch_shmem_rate_slot(endpoint, (int64) (USECS_PER_SEC / (double) per_second), job_id,
								GetCurrentTimestamp());
	if (slot == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(slot);
}
