/*-------------------------------------------------------------------------
 *
 * orchestrator.c
 *	  Module entry point: _PG_init calls each part's init, nothing else.
 *
 * GUCs (guc.c), shared memory for the wake registry (shmem.c), the commit
 * callback that wakes workers (wake.c) and the background workers
 * (worker.c).  Shared memory and workers exist only when the library is
 * loaded through shared_preload_libraries; loaded later (CREATE EXTENSION in
 * a server without the preload) it still serves the SQL functions.
 *
 * src/orchestrator.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "flow.h"
#include "guc.h"
#include "shmem.h"
#include "wake.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init registers GUCs everywhere, and shared memory and workers when
 * preloaded.
 */
void
_PG_init(void)
{
	orch_preloaded = process_shared_preload_libraries_in_progress;

	orch_guc_init();
	orch_wake_init();
	orch_flow_init();

	if (!orch_preloaded)
		return;

	orch_shmem_init();
	orch_worker_register();
}
