/*-------------------------------------------------------------------------
 *
 * context.h
 *	  Context tiers 2 and 3: loading a job's context sources before a
 *	  step (context.c, context.sql).
 *
 * src/context.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_CONTEXT_H
#define ORCH_CONTEXT_H

#include "http.h"
#include "job_state.h"

extern Jsonb *orch_context_load(const OrchClaimedJob *job, int step_index, Jsonb *step, Jsonb *state,
								OrchHttpRequest **parked);
extern Jsonb *orch_context_resume(const OrchClaimedJob *job, OrchHttpRequest *resume);

#endif							/* ORCH_CONTEXT_H */
