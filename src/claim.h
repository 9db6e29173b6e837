/*-------------------------------------------------------------------------
 *
 * claim.h
 *	  Claiming: one pass of reclaim and claim, and when to look next (claim.c).
 *
 * src/claim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_CLAIM_H
#define ORCH_CLAIM_H

#include "datatype/timestamp.h"

#include "job_state.h"

extern int	orch_claim_pass(OrchClaimedJob *jobs, int room, TimestampTz *next_due, bool *contended);
extern int	orch_reclaim_expired(void);

#endif							/* ORCH_CLAIM_H */
