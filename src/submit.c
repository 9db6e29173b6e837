/*-------------------------------------------------------------------------
 *
 * submit.c
 *	  orch_submit_event: validate an event and enqueue its job.
 *
 * Runs the seed's Step 1 in order: org and user exist, the event type is
 * enabled for the org, the user is inside active hours (quiet hours defer,
 * never drop), the org's budget is not spent, the event is not a duplicate
 * inside orchestrator.dedupe_window.  Then the sequence for the type is
 * looked up and the job inserted.  Every outcome, accepted or not, is one
 * row in orchestrator.event_log, written in the caller's transaction: a
 * rollback leaves neither job nor log row.
 *
 * Malformed arguments (NULLs, a payload that is not an object or is larger
 * than orchestrator.max_payload_bytes, a parent job that does not exist) are
 * ERRORs.  Unknown org or user, a disabled type, a spent budget, too deep a
 * chain and a type with no sequence are logged skips.
 *
 * orch_submit_events does the same for many events of one type, source and
 * org at once, set-based: one statement for the org's checks, one for the
 * users' (quiet hours, the dedupe hash), one for the earlier duplicates
 * (under one lock for the org, not one per event),
 * one to write every job and log row.  Each event gets the outcome it
 * would have had submitted alone, in the order given (an event identical
 * to an earlier one of the batch is its duplicate).
 *
 * Concurrency: identical submits serialise on a transaction-scoped advisory
 * lock chosen by the dedupe hash (dedupe_lock), so of two concurrent
 * duplicates the second waits for the first to end and then looks for its
 * log row with a snapshot taken after the lock, whatever the isolation
 * level (a batch takes one lock for its whole org instead).  A follow-up is linked
 * both ways: parent_job_id on the child, the child's id appended to the
 * parent's event_chain.children.  The workers are woken when the
 * transaction commits (wake.c).
 *
 * src/submit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "approval.h"
#include "auth.h"
#include "guc.h"
#include "job_state.h"
#include "state.h"
#include "util.h"

#define ORCH_MAX_CHAIN_DEPTH 3

PG_FUNCTION_INFO_V1(orch_submit_event);
PG_FUNCTION_INFO_V1(orch_submit_events);
PG_FUNCTION_INFO_V1(orch_dedupe_bucket_sql);

/*
 * A dedupe lookup probes two buckets of the dedupe index (job_state.sql),
 * $4 and $5, each with the org, the bucket and the hash all equal: an
 * index lookup whatever the table's size or statistics (with the buckets
 * as an array the planner may make the bucket a filter, and scan all of
 * the org's events).  dedupe_probe runs it for each pair of buckets the
 * window spans, newest first: one pair for windows up to five minutes.
 */
#define DEDUPE_BRANCH(cols, hash_cond, bucket) \
	"SELECT " cols " FROM orchestrator.event_log e" \
	" WHERE e.org_id = $1 AND orchestrator.dedupe_bucket(e.created_at) = " bucket " AND " hash_cond \
	"   AND e.outcome IN ('accepted', 'deferred')" \
	"   AND e.created_at > pg_catalog.now() - pg_catalog.make_interval(secs => $3 / 1000.0)"
#define DEDUPE_PAIR(cols, hash_cond) \
	"(" DEDUPE_BRANCH(cols, hash_cond, "$4") " UNION ALL " DEDUPE_BRANCH(cols, hash_cond, "$5") ") d"

static SPIPlanPtr gate_plan = NULL;
static SPIPlanPtr parent_gate_plan = NULL;
static SPIPlanPtr dedupe_plan = NULL;
static SPIPlanPtr log_plan = NULL;
static SPIPlanPtr org_gate_plan = NULL;
static SPIPlanPtr users_gate_plan = NULL;
static SPIPlanPtr dedupe_many_plan = NULL;

/* Everything the gate query learns about an event, in one round trip. */
typedef struct SubmitGate
{
	bool		org_ok;
	bool		user_ok;
	bool		enabled;
	bool		deferred;
	TimestampTz defer_until;
	bool		over_budget;
	bool		has_sequence;
	int32		version;
	Datum		dedupe_hash;
	bool		has_parent;
	int32		depth;
	bool		parent_same_org;
} SubmitGate;

/*
 * prepare_plans prepares the submit path's statements once per backend.
 */
static void
prepare_plans(void)
{
	if (gate_plan == NULL)
	{
		Oid			types[6] = {UUIDOID, UUIDOID, TEXTOID, JSONBOID, TEXTOID, UUIDOID};

		const char *gate_sql =
			"SELECT EXISTS (SELECT 1 FROM orchestrator.org_source o WHERE o.id = $1),"
			"       EXISTS (SELECT 1 FROM orchestrator.user_source u WHERE u.id = $2 AND u.org_id = $1),"
			"       COALESCE((SELECT pg_catalog.bool_and(f.is_enabled) FROM orchestrator.feature_settings_source f"
			"                 WHERE f.org_id = $1 AND f.feature_key = $3), true),"
			"       orchestrator.next_active_time($2, pg_catalog.now()),"
			"       orchestrator.budget_exceeded($1),"
			"       (SELECT pg_catalog.max(d.version) FROM orchestrator.sequence_definitions d WHERE d.event_type = $3),"
			"       pg_catalog.md5(CASE WHEN $5 IS NULL"
			"                           THEN 'p:' || $3 || ':' || $2::text || ':' || $4::text"
			"                           ELSE 'k:' || $5 END)::uuid,";

		/* a follow-up's gate also reads its parent; an event's does not */
		gate_plan = orch_prepare_kept(psprintf("%s NULL::integer, NULL::boolean", gate_sql), 5, types);
		parent_gate_plan = orch_prepare_kept(
			psprintf("%s"
					 "       (SELECT j.chain_depth + 1 FROM orchestrator.sequence_jobs j WHERE j.id = $6),"
					 "       (SELECT j.org_id = $1 FROM orchestrator.sequence_jobs j WHERE j.id = $6)", gate_sql),
			6, types);
	}
	if (dedupe_plan == NULL)
	{
		Oid			types[5] = {UUIDOID, UUIDOID, FLOAT8OID, INT8OID, INT8OID};

		dedupe_plan = orch_prepare_kept(
			"SELECT d.job_id FROM " DEDUPE_PAIR("e.job_id, e.created_at", "e.dedupe_hash = $2")
			" ORDER BY d.created_at DESC LIMIT 1",
			5, types);
	}
	if (log_plan == NULL)
	{
		Oid			types[10] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, UUIDOID, UUIDOID, UUIDOID, JSONBOID};

		log_plan = orch_prepare_kept(
			"INSERT INTO orchestrator.event_log"
			" (org_id, user_id, event_type, event_source, outcome, reason, job_id,"
			"  parent_job_id, dedupe_hash, payload)"
			" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, orchestrator.without_transcripts($10))",
			10, types);
	}
}

static void
check_not_null(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" of %s must not be NULL", name,
						get_func_name(fcinfo->flinfo->fn_oid))));
}

/*
 * check_event_type accepts what orch_define_sequence accepts: 1 to 100
 * letters, digits, "_", ".", ":" or "-".
 */
static void
check_event_type(text *type)
{
	const char *p = VARDATA_ANY(type);
	int			len = VARSIZE_ANY_EXHDR(type);
	bool		ok = (len >= 1 && len <= 100);

	for (int i = 0; ok && i < len; i++)
		ok = (!IS_HIGHBIT_SET(p[i]) && isalnum((unsigned char) p[i])) ||
			p[i] == '_' || p[i] == '.' || p[i] == ':' || p[i] == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event type"),
				 errhint("Use 1 to 100 letters, digits, \"_\", \".\", \":\" or \"-\", as orch_define_sequence does.")));
}

/*
 * check_event checks what a single and a batch submit share: type, source
 * and org given, a valid type, a named source, and the engine's own types
 * only for admins.  Returns whether the type is one of the engine's own.
 */
static bool
check_event(FunctionCallInfo fcinfo)
{
	text	   *type;
	bool		internal;

	check_not_null(fcinfo, 0, "type");
	check_not_null(fcinfo, 1, "source");
	check_not_null(fcinfo, 2, "org_id");
	type = PG_GETARG_TEXT_PP(0);
	check_event_type(type);
	internal = orch_is_engine_event(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event source must not be empty"),
				 errhint("Name where the event came from, for example \"webhook:meetingbaas\".")));
	if (internal && !orch_caller_is_admin())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("event types starting with \"orchestrator:\" are the engine's own"),
				 errhint("Submit your own event types; the engine queues its notices and continuations itself.")));
	return internal;
}

/*
 * run_gate evaluates every check of Step 1 in one statement.
 */
static void
run_gate(Datum *args, char *nulls, SubmitGate *g)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int			ret;

	ret = orch_execute_keyed(nulls[5] == 'n' ? gate_plan : parent_gate_plan, args, nulls, false, 1,
							 InvalidSnapshot);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator gate query failed: %s", SPI_result_code_string(ret));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	g->org_ok = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
	g->user_ok = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	g->enabled = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	g->defer_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
	g->deferred = !isnull;
	g->over_budget = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	g->version = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	g->has_sequence = !isnull;
	g->dedupe_hash = SPI_getbinval(tup, desc, 7, &isnull);
	g->dedupe_hash = datumCopy(g->dedupe_hash, false, UUID_LEN);
	g->depth = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
	g->has_parent = !isnull;
	g->parent_same_org = g->has_parent && DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
}

/*
 * check_payload: a JSON object within orchestrator.max_payload_bytes and
 * orchestrator.max_json_depth
 */
static void
check_payload(Jsonb *payload)
{
	if (JB_ROOT_IS_SCALAR(payload) || !JB_ROOT_IS_OBJECT(payload))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event payload must be a JSON object"),
				 errhint("Wrap the value in an object, for example '{\"meeting_id\": \"...\"}'.")));
	if (VARSIZE(payload) > (Size) orch_max_payload_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event payload is too large"),
				 errdetail("The payload takes %zu bytes; the limit is %d bytes.",
						   (Size) VARSIZE(payload), orch_max_payload_bytes),
				 errhint("Store large data in a table and pass its id, or raise orchestrator.max_payload_bytes.")));
	orch_check_json_depth(payload, "event payload", NULL);
}

/*
 * The dedupe locks: transaction-scoped advisory locks in a space of the
 * engine's own (locktag_field4 ORCH_LOCKTAG_DEDUPE_*, which
 * pg_advisory_lock never uses), keyed by the org and, for an event, by 32
 * bits of its dedupe hash.  A single submit takes its org's lock in share
 * mode and its event's own lock exclusively, so identical events
 * serialise and others never wait for each other (a lock shared by
 * unrelated events would make bulk submits deadlock).  Each distinct
 * event is one lock until commit, so one transaction can submit only as
 * many distinct events as the lock table holds.  A batch takes its org's
 * lock alone, exclusively: it waits for the org's single submits in
 * flight to end, and they for it, however many events it holds.
 */
#define ORCH_LOCKTAG_DEDUPE_ORG 0x4f31
#define ORCH_LOCKTAG_DEDUPE 0x4f32

static uint32
org_key(Datum org_id)
{
	return DatumGetUInt32(hash_any(DatumGetUUIDP(org_id)->data, UUID_LEN));
}

static void
dedupe_org_lock(Datum org_id, bool exclusive)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, org_key(org_id), 0, ORCH_LOCKTAG_DEDUPE_ORG);
	(void) LockAcquire(&tag, exclusive ? ExclusiveLock : ShareLock, false, false);
}

static void
dedupe_lock(Datum org_id, Datum hash)
{
	LOCKTAG		tag;
	uint32		event_key;

	/* the hash is an md5: any 32 bits of it are as good as any other */
	memcpy(&event_key, DatumGetUUIDP(hash)->data, sizeof(event_key));
	dedupe_org_lock(org_id, false);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, org_key(org_id), event_key, ORCH_LOCKTAG_DEDUPE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * dedupe_bucket: the five-minute slot of Unix time of a submit time, the
 * dedupe index's key after the org (SQL: orchestrator.dedupe_bucket).
 */
#define ORCH_DEDUPE_BUCKET_USECS INT64CONST(300000000)

static int64
dedupe_bucket(TimestampTz t)
{
	int64		unix_us = t + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	/* floor division: times before 1970 fall in the slot below */
	return unix_us >= 0 ? unix_us / ORCH_DEDUPE_BUCKET_USECS
		: -((-unix_us + ORCH_DEDUPE_BUCKET_USECS - 1) / ORCH_DEDUPE_BUCKET_USECS);
}

/*
 * orchestrator.dedupe_bucket(timestamptz): dedupe_bucket for the index and
 * the lookups.  In C, not SQL, so the planner never inlines it and the
 * lookups' expression stays the index's own.
 */
Datum
orch_dedupe_bucket_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(dedupe_bucket(PG_GETARG_TIMESTAMPTZ(0)));
}

/*
 * dedupe_probe runs a dedupe lookup (args[0..2] set by the caller) for
 * each pair of buckets from the window's start to the wall clock (which an
 * identical event committed by a transaction younger than this one may be
 * stamped past), newest first, with a snapshot taken now.  found is called
 * with each pair's rows, and says whether to stop.
 */
static void
dedupe_probe(SPIPlanPtr plan, Datum *args, bool (*found) (void *arg), void *arg)
{
	int64		from = dedupe_bucket(GetCurrentTransactionStartTimestamp() -
									 (int64) orch_dedupe_window_ms * 1000);

	for (int64 b = dedupe_bucket(GetCurrentTimestamp()); b >= from; b -= 2)
	{
		int			ret;

		args[3] = Int64GetDatum(b);
		args[4] = Int64GetDatum(b - 1);
		ret = orch_execute_keyed(plan, args, NULL, true, 0, GetLatestSnapshot());
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "orchestrator dedupe query failed: %s", SPI_result_code_string(ret));
		if (found(arg))
			return;
	}
}

/* for find_duplicate: the newest identical event's job, if a pair has one */
typedef struct FoundJob
{
	bool		found;
	pg_uuid_t	job_id;
} FoundJob;

static bool
found_one(void *arg)
{
	FoundJob   *f = arg;
	bool		isnull;
	Datum		d;

	if (SPI_processed == 0)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return false;
	memcpy(&f->job_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	f->found = true;
	return true;
}

/* a dedupe hash taken, and the job that took it */
typedef struct TakenHash
{
	unsigned char hash[UUID_LEN];
	pg_uuid_t	job_id;
} TakenHash;

/*
 * for orch_submit_events: each hash's newest earlier event (the pairs come
 * newest first, so a hash already taken keeps its job); never stops early
 */
static bool
found_many(void *arg)
{
	HTAB	   *taken = arg;

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		no_hash;
		bool		no_job;
		bool		had;
		Datum		h = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &no_hash);
		Datum		job = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &no_job);
		TakenHash  *t;

		if (no_hash || no_job)
			continue;
		t = hash_search(taken, DatumGetUUIDP(h)->data, HASH_ENTER, &had);
		if (!had)
			memcpy(&t->job_id, DatumGetUUIDP(job), sizeof(pg_uuid_t));
	}
	return false;
}

/*
 * find_duplicate takes the dedupe lock and looks for an earlier identical
 * event inside the window.  Returns true and the earlier job's id if found.
 */
static bool
find_duplicate(Datum org_id, Datum hash, pg_uuid_t *job_id)
{
	Datum		args[5];
	FoundJob	f = {false};

	if (orch_dedupe_window_ms <= 0)
		return false;

	dedupe_lock(org_id, hash);
	args[0] = org_id;
	args[1] = hash;
	args[2] = Float8GetDatum((double) orch_dedupe_window_ms);

	/*
	 * Look with a fresh snapshot taken after the lock (dedupe_probe): under
	 * REPEATABLE READ or SERIALIZABLE the transaction's own snapshot
	 * predates the commit of an identical event we just waited for.
	 */
	dedupe_probe(dedupe_plan, args, found_one, &f);
	if (f.found)
		*job_id = f.job_id;
	return f.found;
}

Datum
orch_submit_event(PG_FUNCTION_ARGS)
{
	text	   *type;
	Jsonb	   *payload;
	Datum		org_id,
				user_id;
	SubmitGate	g;
	const char *outcome = NULL;
	const char *reason = NULL;
	pg_uuid_t	job_id;			/* copied out of SPI: outlives SPI_finish */
	bool		have_job = false;
	TimestampTz run_at = 0;
	bool		have_run_at = false;
	TupleDesc	result_desc;
	bool		internal;
	bool		is_approval;
	Datum		values[4];
	bool		rnulls[4] = {false, false, false, false};
	int			ret;
	int32		priority = -1;	/* -1: the event type's (flow.c) */

	check_not_null(fcinfo, 3, "user_id");
	check_not_null(fcinfo, 4, "payload");
	internal = check_event(fcinfo);
	type = PG_GETARG_TEXT_PP(0);
	if (PG_NARGS() > 7 && !PG_ARGISNULL(7))
	{
		pg_uuid_t	caller;

		/* priority is the operator's to give, not a PostgREST user's */
		if (orch_caller_user(&caller) && !orch_caller_is_admin())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("a caller acting as a user cannot set an event's priority"),
					 errhint("Submit without priority (the event type's applies), or call as a member of orchestrator_admin.")));
		priority = PG_GETARG_INT32(7);
		if (priority < 0 || priority > 1000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("priority %d is out of range", priority),
					 errhint("A priority is 0 (the default) to 1000; each point is a minute ahead in the queue.")));
	}

	payload = PG_GETARG_JSONB_P(4);
	check_payload(payload);

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	org_id = PG_GETARG_DATUM(2);
	user_id = PG_GETARG_DATUM(3);
	orch_check_acting_for(DatumGetUUIDP(user_id), "submitting an event");
	is_approval = (VARSIZE_ANY_EXHDR(type) == strlen(ORCH_APPROVAL_EVENT) &&
				   strncmp(VARDATA_ANY(type), ORCH_APPROVAL_EVENT, strlen(ORCH_APPROVAL_EVENT)) == 0);

	SPI_connect();
	prepare_plans();

	{
		Datum		args[6];
		char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

		args[0] = org_id;
		args[1] = user_id;
		args[2] = PointerGetDatum(type);
		args[3] = JsonbPGetDatum(payload);
		args[4] = PG_ARGISNULL(6) ? (Datum) 0 : PG_GETARG_DATUM(6);
		nulls[4] = PG_ARGISNULL(6) ? 'n' : ' ';
		args[5] = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
		nulls[5] = PG_ARGISNULL(5) ? 'n' : ' ';
		run_gate(args, nulls, &g);
	}

	if (!PG_ARGISNULL(5) && !g.has_parent)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parent job %s does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(5)))),
				 errhint("Pass parent_job_id only for follow-ups of an existing job.")));

	if (g.has_parent && !g.parent_same_org)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parent job %s belongs to another organisation",
						DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(5)))),
				 errhint("A follow-up event stays in the organisation of the job that queued it.")));

	if (!g.org_ok)
		outcome = "skipped", reason = "unknown_org";
	else if (!g.user_ok)
		outcome = "skipped", reason = "unknown_user";
	/* a rep's decision on an approval gate: applied now, never deferred */
	else if (is_approval)
		orch_approval_received(payload, user_id, &outcome, &reason, &job_id, &have_job);
	/* the engine's own events (orchestrator:...) are not features and not billed */
	else if (!g.enabled && !internal)
		outcome = "skipped", reason = "feature_disabled";
	/* the seed's order: a user in quiet hours is deferred before any budget check */
	else if (g.over_budget && !g.deferred && !internal)
		outcome = "skipped", reason = "budget";
	else if (g.has_parent && g.depth > ORCH_MAX_CHAIN_DEPTH)
	{
		outcome = "skipped", reason = "chain_depth_exceeded";
		ereport(WARNING,
				(errmsg("follow-up event not queued: chain depth %d exceeds %d", g.depth, ORCH_MAX_CHAIN_DEPTH)));
	}
	else if (find_duplicate(org_id, g.dedupe_hash, &job_id))
		outcome = "duplicate", reason = "duplicate", have_job = true;
	else if (!g.has_sequence)
		outcome = "skipped", reason = "no_sequence";

	if (outcome == NULL)
	{
		run_at = g.deferred ? g.defer_until : GetCurrentTransactionStartTimestamp();
		job_id = orch_job_create(org_id, user_id, PointerGetDatum(type), PG_GETARG_DATUM(1), g.version,
								 run_at, payload, PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5),
								 g.has_parent, g.has_parent ? g.depth : 1, g.dedupe_hash, priority);
		have_job = true;
		have_run_at = true;
		outcome = g.deferred ? "deferred" : "accepted";
		reason = g.deferred ? "quiet_hours" : NULL;
	}
	else
	{
		/* every outcome is one row in the event log (a new job's: job_state.c) */
		Datum		args[10];
		char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

		args[0] = org_id;
		args[1] = user_id;
		args[2] = PointerGetDatum(type);
		args[3] = PG_GETARG_DATUM(1);
		args[4] = CStringGetTextDatum(outcome);
		args[5] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
		nulls[5] = reason ? ' ' : 'n';
		args[6] = have_job ? UUIDPGetDatum(&job_id) : (Datum) 0;
		nulls[6] = have_job ? ' ' : 'n';
		args[7] = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
		nulls[7] = PG_ARGISNULL(5) ? 'n' : ' ';
		args[8] = g.dedupe_hash;
		/* keep the payload of an event that created no job: nothing is lost */
		args[9] = JsonbPGetDatum(payload);

		ret = SPI_execute_plan(log_plan, args, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "orchestrator event log insert failed: %s", SPI_result_code_string(ret));
	}

	SPI_finish();

	values[0] = CStringGetTextDatum(outcome);
	values[1] = UUIDPGetDatum(&job_id);
	rnulls[1] = !have_job;
	values[2] = TimestampTzGetDatum(run_at);
	rnulls[2] = !have_run_at;
	values[3] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	rnulls[3] = (reason == NULL);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc), values, rnulls)));
}


/*
 * orch_submit_events(type, source, org_id, user_ids, payloads, dedupe_keys):
 * many events of one type and source for one org, the i-th for
 * user_ids[i] with payloads[i] (and dedupe_keys[i], when given).  Returns
 * one row per event, in order: ord, outcome, job_id, run_at, reason.
 */
Datum
orch_submit_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *type;
	Datum		org_id;
	Datum	   *users;
	Datum	   *payload_d;
	Datum	   *keys = NULL;
	bool	   *users_null;
	bool	   *payloads_null;
	bool	   *keys_null = NULL;
	int			n;
	int			npayloads;
	int			nkeys = 0;
	bool		internal;
	bool		org_ok;
	bool		enabled;
	bool		over_budget;
	bool		has_sequence;
	int32		version = 0;
	OrchEventBatch b;
	bool	   *deferred;
	TimestampTz *defer_until;
	bool	   *user_ok;
	bool		isnull;
	int			ret;
	HTAB	   *taken = NULL;
	MemoryContext outer = CurrentMemoryContext;

	check_not_null(fcinfo, 3, "user_ids");
	check_not_null(fcinfo, 4, "payloads");
	internal = check_event(fcinfo);
	type = PG_GETARG_TEXT_PP(0);
	if (VARSIZE_ANY_EXHDR(type) == strlen(ORCH_APPROVAL_EVENT) &&
		strncmp(VARDATA_ANY(type), ORCH_APPROVAL_EVENT, strlen(ORCH_APPROVAL_EVENT)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("approval decisions cannot be submitted in a batch"),
				 errhint("Submit each %s event with orch_submit_event.", ORCH_APPROVAL_EVENT)));
	org_id = PG_GETARG_DATUM(2);

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &users, &users_null, &n);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(4), JSONBOID, -1, false, TYPALIGN_INT, &payload_d, &payloads_null,
					  &npayloads);
	if (!PG_ARGISNULL(5))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(5), TEXTOID, -1, false, TYPALIGN_INT, &keys, &keys_null, &nkeys);
	if (npayloads != n || (keys != NULL && nkeys != n))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("user_ids, payloads and dedupe_keys must have the same length"),
				 errdetail("%d user ids, %d payloads, %d dedupe keys.", n, npayloads, keys ? nkeys : n)));

	memset(&b, 0, sizeof(b));
	b.n = n;
	b.org_id = org_id;
	b.type = PointerGetDatum(type);
	b.source = PG_GETARG_DATUM(1);
	b.user_ids = users;
	b.payloads = palloc(sizeof(Jsonb *) * Max(n, 1));
	b.dedupe_hashes = palloc(sizeof(Datum) * Max(n, 1));
	b.outcomes = palloc0(sizeof(char *) * Max(n, 1));
	b.reasons = palloc0(sizeof(char *) * Max(n, 1));
	b.run_ats = palloc0(sizeof(TimestampTz) * Max(n, 1));
	b.new = palloc0(sizeof(bool) * Max(n, 1));
	b.has_job = palloc0(sizeof(bool) * Max(n, 1));
	b.job_ids = palloc0(sizeof(pg_uuid_t) * Max(n, 1));
	deferred = palloc0(sizeof(bool) * Max(n, 1));
	defer_until = palloc0(sizeof(TimestampTz) * Max(n, 1));
	user_ok = palloc0(sizeof(bool) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (users_null[i] || payloads_null[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("user_ids and payloads must not contain NULL"),
					 errdetail("Event %d has none.", i + 1)));
		check_payload(DatumGetJsonbP(payload_d[i]));
		orch_check_acting_for(DatumGetUUIDP(users[i]), "submitting an event");
	}

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	prepare_plans();
	if (org_gate_plan == NULL)
	{
		Oid			types[2] = {UUIDOID, TEXTOID};
		Oid			utypes[5] = {UUIDOID, UUIDARRAYOID, TEXTOID, JSONBARRAYOID, TEXTARRAYOID};
		Oid			dtypes[5] = {UUIDOID, UUIDARRAYOID, FLOAT8OID, INT8OID, INT8OID};

		org_gate_plan = orch_prepare_kept(
			"SELECT EXISTS (SELECT 1 FROM orchestrator.org_source o WHERE o.id = $1),"
			"       COALESCE((SELECT pg_catalog.bool_and(f.is_enabled) FROM orchestrator.feature_settings_source f"
			"                 WHERE f.org_id = $1 AND f.feature_key = $2), true),"
			"       orchestrator.budget_exceeded($1),"
			"       (SELECT pg_catalog.max(d.version) FROM orchestrator.sequence_definitions d WHERE d.event_type = $2)",
			2, types);
		/* each distinct user is looked at once, however many events it has */
		users_gate_plan = orch_prepare_kept(
			"WITH v AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($4), pg_catalog.unnest($5))"
			"           WITH ORDINALITY AS v(user_id, payload, key, n)),"
			" g AS MATERIALIZED (SELECT d.user_id,"
			"              EXISTS (SELECT 1 FROM orchestrator.user_source u WHERE u.id = d.user_id AND u.org_id = $1) AS ok,"
			"              orchestrator.next_active_time(d.user_id, pg_catalog.now()) AS active"
			"       FROM (SELECT DISTINCT v.user_id FROM v) d)"
			" SELECT g.ok, g.active,"
			"       pg_catalog.md5(CASE WHEN v.key IS NULL"
			"                           THEN 'p:' || $3 || ':' || v.user_id::text || ':' || v.payload::text"
			"                           ELSE 'k:' || v.key END)::uuid"
			" FROM v JOIN g ON g.user_id = v.user_id"
			" ORDER BY v.n",
			5, utypes);
		dedupe_many_plan = orch_prepare_kept(
			"SELECT DISTINCT ON (d.dedupe_hash) d.dedupe_hash, d.job_id FROM "
			DEDUPE_PAIR("e.dedupe_hash, e.job_id, e.created_at", "e.dedupe_hash = ANY ($2)")
			" ORDER BY d.dedupe_hash, d.created_at DESC",
			5, dtypes);
	}

	/* the org's checks, once */
	{
		Datum		args[2] = {org_id, PointerGetDatum(type)};

		ret = SPI_execute_plan(org_gate_plan, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "orchestrator gate query failed: %s", SPI_result_code_string(ret));
		org_ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		enabled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		over_budget = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
		has_sequence = !isnull;
	}

	/* each user's: known, quiet hours; each event's dedupe hash */
	if (n > 0)
	{
		Datum		args[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

		args[0] = org_id;
		args[1] = PG_GETARG_DATUM(3);
		args[2] = PointerGetDatum(type);
		args[3] = PG_GETARG_DATUM(4);
		if (keys)
			args[4] = PG_GETARG_DATUM(5);
		else
		{
			Datum	   *none = palloc0(sizeof(Datum) * n);
			bool	   *all = palloc(sizeof(bool) * n);

			memset(all, true, sizeof(bool) * n);
			args[4] = orch_array_of(none, all, n, TEXTOID);
		}
		ret = SPI_execute_plan(users_gate_plan, args, nulls, false, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != (uint64) n)
			elog(ERROR, "orchestrator gate query failed: %s", SPI_result_code_string(ret));
		for (int i = 0; i < n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			MemoryContext old;

			user_ok[i] = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
			defer_until[i] = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
			deferred[i] = !isnull;
			old = MemoryContextSwitchTo(outer);
			b.dedupe_hashes[i] = datumCopy(SPI_getbinval(tup, desc, 3, &isnull), false, UUID_LEN);
			MemoryContextSwitchTo(old);
		}
	}

	/*
	 * Step 1 for each event, in the seed's order, as orch_submit_event
	 * decides it; the dedupe check comes last and is done for all at once.
	 */
	for (int i = 0; i < n; i++)
	{
		if (!org_ok)
			b.outcomes[i] = "skipped", b.reasons[i] = "unknown_org";
		else if (!user_ok[i])
			b.outcomes[i] = "skipped", b.reasons[i] = "unknown_user";
		else if (!enabled && !internal)
			b.outcomes[i] = "skipped", b.reasons[i] = "feature_disabled";
		else if (over_budget && !deferred[i] && !internal)
			b.outcomes[i] = "skipped", b.reasons[i] = "budget";
	}
	/* the dedupe hashes already taken: in the log, or earlier in this batch */
	if (orch_dedupe_window_ms > 0)
	{
		HASHCTL		ctl;
		Datum	   *hashes = palloc(sizeof(Datum) * Max(n, 1));
		int			nh = 0;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = UUID_LEN;
		ctl.entrysize = sizeof(TakenHash);
		ctl.hcxt = CurrentMemoryContext;
		taken = hash_create("orchestrator batch dedupe", Max(n, 16), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < n; i++)
			if (b.outcomes[i] == NULL)
				hashes[nh++] = b.dedupe_hashes[i];
		if (nh > 0)
		{
			Datum		args[5];

			dedupe_org_lock(org_id, true);
			args[0] = org_id;
			args[1] = orch_array_of(hashes, NULL, nh, UUIDOID);
			args[2] = Float8GetDatum((double) orch_dedupe_window_ms);
			/* a snapshot taken after the lock, as orch_submit_event's */
			dedupe_probe(dedupe_many_plan, args, found_many, taken);
		}
	}
	for (int i = 0; i < n; i++)
	{
		TakenHash  *t;
		bool		found;

		if (b.outcomes[i] != NULL)
			continue;
		t = taken ? hash_search(taken, DatumGetUUIDP(b.dedupe_hashes[i])->data, HASH_ENTER, &found) : NULL;
		if (t && found)
		{
			b.outcomes[i] = "duplicate", b.reasons[i] = "duplicate";
			b.has_job[i] = true;
			b.job_ids[i] = t->job_id;
			continue;
		}
		if (!has_sequence)
		{
			if (t)
				hash_search(taken, DatumGetUUIDP(b.dedupe_hashes[i])->data, HASH_REMOVE, NULL);
			b.outcomes[i] = "skipped", b.reasons[i] = "no_sequence";
			continue;
		}
		orch_new_uuid(&b.job_ids[i]);
		if (t)
			t->job_id = b.job_ids[i];
		b.new[i] = true;
		b.run_ats[i] = deferred[i] ? defer_until[i] : GetCurrentTransactionStartTimestamp();
		b.outcomes[i] = deferred[i] ? "deferred" : "accepted";
		b.reasons[i] = deferred[i] ? "quiet_hours" : NULL;
	}
	for (int i = 0; i < n; i++)
		b.payloads[i] = orch_without_transcripts(DatumGetJsonbP(payload_d[i]));
	b.version = version;
	if (n > 0)
		orch_job_create_batch(&b);
	SPI_finish();

	for (int i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = Int32GetDatum(i + 1);
		values[1] = CStringGetTextDatum(b.outcomes[i]);
		values[2] = UUIDPGetDatum(&b.job_ids[i]);
		nulls[2] = !(b.new[i] || b.has_job[i]);
		values[3] = TimestampTzGetDatum(b.run_ats[i]);
		nulls[3] = !b.new[i];
		values[4] = b.reasons[i] ? CStringGetTextDatum(b.reasons[i]) : (Datum) 0;
		nulls[4] = (b.reasons[i] == NULL);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
