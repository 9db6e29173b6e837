/*-------------------------------------------------------------------------
 *
 * flow.h
 *	  Flow control: priority order, pauses and drain, concurrency limits,
 *	  endpoint rate limits (flow.c).
 *
 * src/flow.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_FLOW_H
#define ORCH_FLOW_H

#include "job_state.h"

extern void orch_flow_init(void);
extern int	orch_flow_claim(OrchClaimedJob *jobs, int max, long lease_ms);
extern char *orch_flow_paused(const OrchClaimedJob *job, bool starting);

#endif							/* ORCH_FLOW_H */
