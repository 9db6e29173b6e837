/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Small helpers: kept SPI plans, subtransactions, jsonb fields, jsonpath conditions (util.c).
 *
 * src/util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_UTIL_H
#define ORCH_UTIL_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "utils/elog.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* JSON nested deeper than orchestrator.max_json_depth (orch_check_json_depth) */
#define ORCH_ERRCODE_JSON_TOO_DEEP MAKE_SQLSTATE('5', '4', 'J', '0', '1')

/* The engine's own event types (notices, approval requests) start so. */
#define ORCH_ENGINE_EVENT_PREFIX "orchestrator:"

static inline bool
orch_is_engine_event(const char *type, int len)
{
	int			plen = (int) strlen(ORCH_ENGINE_EVENT_PREFIX);

	return len > plen && strncmp(type, ORCH_ENGINE_EVENT_PREFIX, plen) == 0;
}

/*
 * Arguments of a kept plan, set one by one (1-based, as $n); those never
 * set are NULL.
 */
#define ORCH_MAX_ARGS 32
typedef struct OrchArgs
{
	Datum		values[ORCH_MAX_ARGS];
	char		nulls[ORCH_MAX_ARGS];
} OrchArgs;

extern Datum orch_array_of(Datum *values, bool *isnull, int n, Oid type);
extern void orch_args_init(OrchArgs *a, int n);
extern void orch_arg(OrchArgs *a, int n, Datum value);
extern void orch_arg_text(OrchArgs *a, int n, const char *s);
extern void orch_arg_jsonb(OrchArgs *a, int n, Jsonb *j);
extern void orch_arg_int(OrchArgs *a, int n, int v);
extern void orch_arg_time(OrchArgs *a, int n, TimestampTz t);

extern SPIPlanPtr orch_prepare_kept(const char *sql, int nargs, Oid *argtypes);
extern int	orch_execute_keyed(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count,
							   Snapshot snapshot);
extern ErrorData *orch_in_subxact(void (*fn) (void *arg), void *arg);
extern Datum orch_exec_scalar(SPIPlanPtr plan, Datum *args, const char *nulls,
							  bool *isnull, const char *what);
extern void orch_check_json_depth(Jsonb *value, const char *what, const char *name);
extern char *orch_uuid_str(const pg_uuid_t *id);
extern void orch_new_uuid(pg_uuid_t *id);
extern void orch_uuid_v7_stamp(pg_uuid_t *id, TimestampTz at);
extern Jsonb *orch_jsonb_get(Jsonb *obj, const char *key);
extern char *orch_jsonb_get_text(Jsonb *obj, const char *key);
extern int	orch_jsonb_get_int(Jsonb *obj, const char *key, int default_value);
extern bool orch_jsonb_get_bool(Jsonb *obj, const char *key);
extern Jsonb *orch_jsonb_array_get(Jsonb *array, int index);
extern bool orch_jsonpath_truthy(Jsonb *target, const char *path);

#endif							/* ORCH_UTIL_H */
