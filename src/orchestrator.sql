/*-------------------------------------------------------------------------
 *
 * orchestrator.sql
 *	  The install script's start: the schema "orchestrator" and the two roles.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/orchestrator.sql
 *
 *-------------------------------------------------------------------------
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION orchestrator" to load this file. \quit

/*
 * Layout.  API functions (orch_*) live in the extension's schema (the one
 * given to CREATE EXTENSION, "public" by default).  State lives in schema
 * "orchestrator": the queue (sequence_jobs), the event log, step history,
 * versioned definitions and the seed's own settings tables.  Every row of job
 * state carries org_id so the state tables can later be distributed by org.
 */

CREATE SCHEMA orchestrator;
COMMENT ON SCHEMA orchestrator IS 'State of the orchestrator extension: jobs, events, step history, definitions and settings';

-- Roles: one submits events, one administers definitions.  PUBLIC gets nothing.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orchestrator_submitter') THEN
		CREATE ROLE orchestrator_submitter NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orchestrator_admin') THEN
		CREATE ROLE orchestrator_admin NOLOGIN;
	END IF;
END
$roles$;

REVOKE ALL ON SCHEMA orchestrator FROM PUBLIC;
GRANT USAGE ON SCHEMA orchestrator TO orchestrator_admin, orchestrator_submitter;
