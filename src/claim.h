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

extern int	orch_reclaim_expired(void);
extern int	orch_claim_jobs(OrchClaimedJob *jobs, int max);
extern int	orch_release_leases(void);
extern TimestampTz orch_next_wakeup(bool *contended);

#endif							/* ORCH_CLAIM_H */
