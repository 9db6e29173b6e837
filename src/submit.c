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
 * Concurrency: identical submits serialise on a transaction-scoped advisory
 * lock keyed by the dedupe hash, so of two concurrent duplicates the second
 * waits for the first to end and then looks for its log row with a snapshot
 * taken after the lock, whatever the isolation level.  A follow-up is linked
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
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "approval.h"
#include "auth.h"
#include "guc.h"
#include "job_state.h"
#include "util.h"

#define ORCH_MAX_CHAIN_DEPTH 3
#define ORCH_LOCK_CLASS_DEDUPE 1330795348

PG_FUNCTION_INFO_V1(orch_submit_event);

static SPIPlanPtr gate_plan = NULL;
static SPIPlanPtr dedupe_plan = NULL;
static SPIPlanPtr log_plan = NULL;

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

		gate_plan = orch_prepare_kept(
			"SELECT EXISTS (SELECT 1 FROM orchestrator.org_source o WHERE o.id = $1),"
			"       EXISTS (SELECT 1 FROM orchestrator.user_source u WHERE u.id = $2 AND u.org_id = $1),"
			"       COALESCE((SELECT pg_catalog.bool_and(f.is_enabled) FROM orchestrator.feature_settings_source f"
			"                 WHERE f.org_id = $1 AND f.feature_key = $3), true),"
			"       orchestrator.next_active_time($2, pg_catalog.now()),"
			"       orchestrator.budget_exceeded($1),"
			"       (SELECT pg_catalog.max(d.version) FROM orchestrator.sequence_definitions d WHERE d.event_type = $3),"
			"       pg_catalog.md5(CASE WHEN $5 IS NULL"
			"                           THEN 'p:' || $3 || ':' || $2::text || ':' || $4::text"
			"                           ELSE 'k:' || $5 END)::uuid,"
			"       (SELECT j.chain_depth + 1 FROM orchestrator.sequence_jobs j WHERE j.id = $6),"
			"       (SELECT j.org_id = $1 FROM orchestrator.sequence_jobs j WHERE j.id = $6)",
			6, types);
	}
	if (dedupe_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, UUIDOID, FLOAT8OID};

		dedupe_plan = orch_prepare_kept(
			"SELECT e.job_id FROM orchestrator.event_log e"
			" WHERE e.org_id = $1 AND e.dedupe_hash = $2"
			"   AND e.outcome IN ('accepted', 'deferred')"
			"   AND e.created_at > pg_catalog.now() - pg_catalog.make_interval(secs => $3 / 1000.0)"
			" ORDER BY e.created_at DESC LIMIT 1",
			3, types);
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
				 errmsg("argument \"%s\" of orch_submit_event must not be NULL", name)));
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
 * run_gate evaluates every check of Step 1 in one statement.
 */
static void
run_gate(Datum *args, char *nulls, SubmitGate *g)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int			ret;

	ret = SPI_execute_plan(gate_plan, args, nulls, false, 1);
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
 * find_duplicate takes the dedupe lock and looks for an earlier identical
 * event inside the window.  Returns true and the earlier job's id if found.
 */
static bool
find_duplicate(Datum org_id, Datum hash, pg_uuid_t *job_id)
{
	Datum		args[3];
	int			ret;
	Datum		d;
	bool		isnull;

	if (orch_dedupe_window_ms <= 0)
		return false;

	/* the lock's key: org and hash, hashed into 32 bits */
	{
		unsigned char key[2 * UUID_LEN];

		memcpy(key, DatumGetUUIDP(org_id)->data, UUID_LEN);
		memcpy(key + UUID_LEN, DatumGetUUIDP(hash)->data, UUID_LEN);
		(void) DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(ORCH_LOCK_CLASS_DEDUPE),
								   Int32GetDatum((int32) DatumGetUInt32(hash_any(key, sizeof(key)))));
	}
	args[0] = org_id;
	args[1] = hash;

	/*
	 * Look with a fresh snapshot taken after the lock: under REPEATABLE READ
	 * or SERIALIZABLE the transaction's own snapshot predates the commit of
	 * an identical event we just waited for.
	 */
	args[2] = Float8GetDatum((double) orch_dedupe_window_ms);
	ret = SPI_execute_snapshot(dedupe_plan, args, NULL, GetLatestSnapshot(), InvalidSnapshot,
							   true, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator dedupe query failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;

	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return false;
	memcpy(job_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	return true;
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

	check_not_null(fcinfo, 0, "type");
	check_not_null(fcinfo, 1, "source");
	check_not_null(fcinfo, 2, "org_id");
	check_not_null(fcinfo, 3, "user_id");
	check_not_null(fcinfo, 4, "payload");

	type = PG_GETARG_TEXT_PP(0);
	check_event_type(type);
	internal = orch_is_engine_event(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event source must not be empty"),
				 errhint("Name where the event came from, for example \"webhook:meetingbaas\".")));

	payload = PG_GETARG_JSONB_P(4);
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

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	org_id = PG_GETARG_DATUM(2);
	user_id = PG_GETARG_DATUM(3);
	orch_check_acting_for(DatumGetUUIDP(user_id), "submitting an event");
	if (internal && !orch_caller_is_admin())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("event types starting with \"orchestrator:\" are the engine's own"),
				 errhint("Submit your own event types; the engine queues its notices and continuations itself.")));
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
								 g.has_parent, g.has_parent ? g.depth : 1, g.dedupe_hash);
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
