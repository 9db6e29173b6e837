/*-------------------------------------------------------------------------
 *
 * step.h
 *	  Running a claimed job's steps: the step loop and dispatch (step.c).
 *
 * src/step.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_STEP_H
#define ORCH_STEP_H

#include "http.h"
#include "job_state.h"

extern void orch_run_job(const OrchClaimedJob *job, OrchHttpRequest *resume, OrchHttpRequest **parked);

#endif							/* ORCH_STEP_H */
