/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers shared by several files: kept SPI plans and their
 *	  arguments, running code in a subtransaction, reading fields of a
 *	  jsonb object, bounding the nesting of user JSON
 *	  (orchestrator.max_json_depth), and evaluating a jsonpath as a
 *	  condition.
 *
 * Nothing here touches orchestrator tables or holds state.
 *
 * src/util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "miscadmin.h"

#include "guc.h"
#include "util.h"

/*
 * orch_prepare_kept prepares a statement and keeps it for the life of the
 * process (SPI_keepplan); the plan cache re-plans it after DDL.
 */
SPIPlanPtr
orch_prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/*
 * orch_execute_keyed runs one of the engine's kept statements that look
 * rows up by key (a job by id, the runnable jobs by run_at, an event by
 * its dedupe hash) with the planner kept off sequential and bitmap scans
 * (a bitmap of a whole partial index, ANDed with the keys, costs more
 * than the keys' own lookups as the index grows).  A plan
 * made while a table was empty and analyzed (a fresh install, after
 * autovacuum) would otherwise scan the whole table for as long as the plan
 * is kept, however big the table grows; an index lookup is right from an
 * empty table to millions of rows.  (Statements that join a table to a
 * set of ids also say "id = ANY (those ids)", so the table is reached
 * through its primary key whatever join the planner picks.)  The setting
 * lasts for this statement only: functions it calls see it, the step
 * functions a worker runs do not.  snapshot: InvalidSnapshot for the
 * current one.
 */
int
orch_execute_keyed(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count,
				   Snapshot snapshot)
{
	int			level = NewGUCNestLevel();
	int			ret;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (snapshot != InvalidSnapshot)
		ret = SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot, read_only, false, count);
	else
		ret = SPI_execute_plan(plan, values, nulls, read_only, count);
	AtEOXact_GUC(true, level);
	return ret;
}

/*
 * orch_array_of builds a one-dimensional array of n values of type
 * (isnull: NULL, or which of them are NULL), for a kept plan's array
 * argument.
 */
Datum
orch_array_of(Datum *values, bool *isnull, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, isnull, 1, dims, lbs, type, typlen, typbyval, typalign));
}

/*
 * orch_args_init starts an argument list of n arguments, all NULL.
 */
void
orch_args_init(OrchArgs *a, int n)
{
	Assert(n <= ORCH_MAX_ARGS);
	memset(a->nulls, 'n', sizeof(a->nulls));
}

/* orch_arg sets $n to value */
void
orch_arg(OrchArgs *a, int n, Datum value)
{
	Assert(n >= 1 && n <= ORCH_MAX_ARGS);
	a->values[n - 1] = value;
	a->nulls[n - 1] = ' ';
}

/* orch_arg_text sets $n to s as text; a NULL pointer leaves it NULL */
void
orch_arg_text(OrchArgs *a, int n, const char *s)
{
	if (s)
		orch_arg(a, n, CStringGetTextDatum(s));
}

/* orch_arg_jsonb sets $n to j; a NULL pointer leaves it NULL */
void
orch_arg_jsonb(OrchArgs *a, int n, Jsonb *j)
{
	if (j)
		orch_arg(a, n, JsonbPGetDatum(j));
}

/* orch_arg_int sets $n to v; a negative v (none) leaves it NULL */
void
orch_arg_int(OrchArgs *a, int n, int v)
{
	if (v >= 0)
		orch_arg(a, n, Int32GetDatum(v));
}

/* orch_arg_time sets $n to t; 0 (none) leaves it NULL */
void
orch_arg_time(OrchArgs *a, int n, TimestampTz t)
{
	if (t != 0)
		orch_arg(a, n, TimestampTzGetDatum(t));
}

static bool
get_value(Jsonb *obj, const char *key, JsonbValue *v)
{
	if (obj == NULL || !JB_ROOT_IS_OBJECT(obj) || JB_ROOT_IS_SCALAR(obj))
		return false;
	return getKeyJsonValueFromContainer(&obj->root, key, strlen(key), v) != NULL;
}

/*
 * orch_in_subxact runs fn(arg) in an internal subtransaction.  Returns NULL
 * when it succeeded (the subtransaction is released), or the error it
 * raised, copied into the caller's memory context: the subtransaction is
 * rolled back.  So a failing job, step or context source rolls back its own
 * writes only, and the caller decides what the error means.
 */
ErrorData *
orch_in_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

/*
 * orch_exec_scalar runs a kept plan that yields one row and returns its
 * first column; "what" names the statement in the can't-happen error.
 */
Datum
orch_exec_scalar(SPIPlanPtr plan, Datum *args, const char *nulls, bool *isnull, const char *what)
{
	int			ret = SPI_execute_plan(plan, args, nulls, false, 1);

	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator %s failed: %s", what, SPI_result_code_string(ret));
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
}

/*
 * orch_check_json_depth raises ORCH_ERRCODE_JSON_TOO_DEEP when value nests
 * arrays and objects more than orchestrator.max_json_depth deep, so no
 * walk over user JSON, ours or PostgreSQL's, meets a deeper one.  What
 * and name (NULL for none) name the value in the message: "output of
 * step" "draft".  A loop over the
 * value's tokens, stopping at the first one too deep; none at all for a
 * value too small to nest that deep (each level takes a container header
 * and an entry: at least 8 bytes).
 */
void
orch_check_json_depth(Jsonb *value, const char *what, const char *name)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;

	if (value == NULL || VARSIZE(value) <= (Size) 8 * orch_max_json_depth)
		return;
	it = JsonbIteratorInit(&value->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT)
		{
			if (++depth > orch_max_json_depth)
				ereport(ERROR,
						(errcode(ORCH_ERRCODE_JSON_TOO_DEEP),
						 name ? errmsg("%s \"%s\" is nested too deeply", what, name)
						 : errmsg("%s is nested too deeply", what),
						 errdetail("It nests arrays and objects more than %d levels deep.", orch_max_json_depth),
						 errhint("Flatten the value, or raise orchestrator.max_json_depth.")));
		}
		else if (tok == WJB_END_ARRAY || tok == WJB_END_OBJECT)
			depth--;
	}
}

/*
 * orch_uuid_str formats a job id for messages.
 */
char *
orch_uuid_str(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/*
 * orch_new_uuid makes a job id: a version 7 uuid (RFC 9562), the Unix time
 * in milliseconds followed by 74 random bits.  Ids made close in time sort
 * close together, so the primary key's new entries and the lookups of
 * recent jobs stay on the index's few right-most pages, however many old
 * jobs the table holds.
 */
void
orch_new_uuid(pg_uuid_t *id)
{
	if (!pg_strong_random(id->data + 6, UUID_LEN - 6))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	orch_uuid_v7_stamp(id, GetCurrentTimestamp());
}

/*
 * orch_uuid_v7_stamp writes time "at" (its Unix milliseconds), the version
 * and the variant into id, keeping its other bits.  On a zeroed id it gives
 * the smallest job id made at "at": every job created earlier sorts below
 * it (retention.c).
 */
void
orch_uuid_v7_stamp(pg_uuid_t *id, TimestampTz at)
{
	uint64		ms = (uint64) ((at / 1000) +
							   (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000);

	for (int i = 0; i < 6; i++)
		id->data[i] = (unsigned char) (ms >> (8 * (5 - i)));
	id->data[6] = (id->data[6] & 0x0f) | 0x70;
	id->data[8] = (id->data[8] & 0x3f) | 0x80;
}

/*
 * orch_jsonb_get returns obj->key as a jsonb value, or NULL if absent.
 */
Jsonb *
orch_jsonb_get(Jsonb *obj, const char *key)
{
	JsonbValue	v;

	if (!get_value(obj, key, &v))
		return NULL;
	return JsonbValueToJsonb(&v);
}

/*
 * orch_jsonb_get_text returns obj->>key, or NULL if absent or JSON null.
 */
char *
orch_jsonb_get_text(Jsonb *obj, const char *key)
{
	JsonbValue	v;

	if (!get_value(obj, key, &v))
		return NULL;
	switch (v.type)
	{
		case jbvString:
			return pnstrdup(v.val.string.val, v.val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
		case jbvBool:
			return pstrdup(v.val.boolean ? "true" : "false");
		case jbvNull:
			return NULL;
		default:
			return JsonbToCString(NULL, &JsonbValueToJsonb(&v)->root, 0);
	}
}

/*
 * orch_jsonb_get_int returns obj->key as an integer, or default_value when
 * absent or not a number.
 */
int
orch_jsonb_get_int(Jsonb *obj, const char *key, int default_value)
{
	JsonbValue	v;

	if (!get_value(obj, key, &v) || v.type != jbvNumeric)
		return default_value;
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
}

/*
 * orch_jsonb_get_bool returns obj->key when it is JSON true, else false.
 */
bool
orch_jsonb_get_bool(Jsonb *obj, const char *key)
{
	JsonbValue	v;

	return get_value(obj, key, &v) && v.type == jbvBool && v.val.boolean;
}

/*
 * orch_jsonb_array_get returns array[index] as jsonb, or NULL.
 */
Jsonb *
orch_jsonb_array_get(Jsonb *array, int index)
{
	JsonbValue *v;

	if (array == NULL || !JB_ROOT_IS_ARRAY(array) || JB_ROOT_IS_SCALAR(array))
		return NULL;
	v = getIthJsonbValueFromContainer(&array->root, (uint32) index);
	if (v == NULL)
		return NULL;
	return JsonbValueToJsonb(v);
}

/*
 * orch_jsonpath_truthy evaluates a jsonpath against target with
 * PostgreSQL's own SQL/JSON path engine (lax, errors suppressed) and reads
 * the first item as a condition: no item, JSON null or false are false; a
 * predicate's true, or any other item, is true.  So both "$.x > 1" and
 * "$.items[*] ? (@.ok)" work as conditions.
 */
bool
orch_jsonpath_truthy(Jsonb *target, const char *path)
{
	static Datum empty_vars = (Datum) 0;
	LOCAL_FCINFO(fcinfo, 4);
	Datum		result;
	Jsonb	   *item;
	JsonbValue	v;

	if (empty_vars == (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		empty_vars = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		MemoryContextSwitchTo(old);
	}

	InitFunctionCallInfoData(*fcinfo, NULL, 4, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(target);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = DirectFunctionCall1(jsonpath_in, CStringGetDatum(path));
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = empty_vars;
	fcinfo->args[2].isnull = false;
	fcinfo->args[3].value = BoolGetDatum(true);
	fcinfo->args[3].isnull = false;

	result = jsonb_path_query_first(fcinfo);
	if (fcinfo->isnull)
		return false;

	item = DatumGetJsonbP(result);
	if (!JB_ROOT_IS_SCALAR(item))
		return true;
	if (!JsonbExtractScalar(&item->root, &v))
		return true;
	if (v.type == jbvNull)
		return false;
	if (v.type == jbvBool)
		return v.val.boolean;
	return true;
}
