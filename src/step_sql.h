/*-------------------------------------------------------------------------
 *
 * step_sql.h
 *	  Steps of kind sql, and every call of a state function (step_sql.c).
 *
 * src/step_sql.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_STEP_SQL_H
#define ORCH_STEP_SQL_H

#include <signal.h>

#include "utils/jsonb.h"

extern Jsonb *orch_step_sql_execute(const char *fname, const char *scope, Jsonb *state, Oid run_as,
									int timeout_ms, const char **scope_out);

/* true while a state function runs: SIGTERM then cancels it (worker.c) */
extern volatile sig_atomic_t orch_step_running;

#endif							/* ORCH_STEP_SQL_H */
