/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  Retention: removing finished jobs and old log rows (retention.c).
 *
 * src/retention.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_RETENTION_H
#define ORCH_RETENTION_H

extern bool orch_retention_pass(void);

#endif							/* ORCH_RETENTION_H */
