/*-------------------------------------------------------------------------
 *
 * wake.h
 *	  Waking the workers when a transaction that made work commits (wake.c).
 *
 * src/wake.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_WAKE_H
#define ORCH_WAKE_H

extern void orch_wake_init(void);
extern void orch_wake_at_commit(void);

#endif							/* ORCH_WAKE_H */
