/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background worker: registration and main loop (worker.c).
 *
 * src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_WORKER_H
#define ORCH_WORKER_H

#include "fmgr.h"

extern void orch_worker_register(void);
PGDLLEXPORT void orch_worker_main(Datum main_arg);

#endif							/* ORCH_WORKER_H */
