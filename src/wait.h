/*-------------------------------------------------------------------------
 *
 * wait.h
 *	  Steps of kinds "signal" and "sleep" (wait.c).
 *
 * src/wait.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_WAIT_H
#define ORCH_WAIT_H

#include "job_state.h"

extern void orch_step_wait(const OrchClaimedJob *job, Jsonb *step, Jsonb *state, OrchStepRecord *r);

#endif							/* ORCH_WAIT_H */
