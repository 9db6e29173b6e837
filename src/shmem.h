/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared memory: the registry of running workers, their latches and work
 *	  flags, failed connection attempts, and flow control's generation and
 *	  endpoint rate limiters (shmem.c).
 *
 * src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_SHMEM_H
#define ORCH_SHMEM_H

#include "datatype/timestamp.h"
#include "utils/uuid.h"

/* true when loaded through shared_preload_libraries: workers exist */
extern bool orch_preloaded;

extern void orch_shmem_init(void);
extern void orch_shmem_register_worker(int index);
extern void orch_shmem_unregister_worker(int index);
extern void orch_shmem_wake_all(void);
extern bool orch_shmem_take_work(int index);
extern bool orch_shmem_connect_failed(int index);
extern void orch_shmem_set_connect_failed(int index, bool failed);
extern void orch_shmem_report_inflight(int n);
extern bool orch_shmem_worker(int index, int *pid, int *inflight);
extern bool orch_shmem_flow_generation(uint32 *gen);
extern void orch_shmem_flow_changed(void);
extern TimestampTz orch_shmem_rate_slot(const char *endpoint, int64 interval_us, const pg_uuid_t *job_id,
										TimestampTz now);

#endif							/* ORCH_SHMEM_H */
