/*-------------------------------------------------------------------------
 *
 * wake.sql
 *	  Waking the workers at commit, and whether workers run at all (wake.c).
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/wake.sql
 *
 *-------------------------------------------------------------------------
 */

CREATE FUNCTION orchestrator.wake_workers() RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_wake_workers_sql';
COMMENT ON FUNCTION orchestrator.wake_workers() IS 'Wakes the orchestrator workers when the calling transaction commits';

CREATE FUNCTION orchestrator.workers_preloaded() RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_workers_preloaded';
COMMENT ON FUNCTION orchestrator.workers_preloaded() IS 'True when the library was loaded through shared_preload_libraries, so workers run';
