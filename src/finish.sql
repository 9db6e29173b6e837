/*-------------------------------------------------------------------------
 *
 * finish.sql
 *	  The install script's end: privileges (PUBLIC gets nothing; each role
 *	  what it needs), the tables pg_dump keeps, and a warning when no worker
 *	  will run.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/finish.sql
 *
 *-------------------------------------------------------------------------
 */

-- Privileges and pg_dump

REVOKE ALL ON ALL TABLES IN SCHEMA orchestrator FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orchestrator FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_submit_event(text, text, uuid, uuid, jsonb, uuid, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_submit_events(text, text, uuid, uuid[], jsonb[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_define_sequence(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_cancel_job(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_retry_job(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_job_timeline(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_use_table(text, regclass, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_reapply_table_mappings() FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_define_endpoint(text, text, integer, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_set_secret(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_set_priority(text, integer), orch_pause(text, text, boolean), orch_drain(),
	orch_resume(text, text), orch_set_concurrency_limit(text, text, integer), orch_set_rate_limit(text, real) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_set_priority(text, integer), orch_pause(text, text, boolean), orch_drain(),
	orch_resume(text, text), orch_set_concurrency_limit(text, text, integer), orch_set_rate_limit(text, real)
	TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_purge(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_purge(interval, integer) TO orchestrator_admin;
GRANT SELECT ON orchestrator.retention_cursors TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_signal(uuid, text, jsonb), orch_signal_key(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_signal(uuid, text, jsonb), orch_signal_key(text, text, jsonb)
	TO orchestrator_submitter, orchestrator_admin;
GRANT SELECT ON orchestrator.signals, orchestrator.waits, orchestrator.fan_children TO orchestrator_admin;
-- the functions flow_controls calls (SECURITY DEFINER: they read the queue)
GRANT EXECUTE ON FUNCTION orchestrator.flow_running(text, uuid[]), orchestrator.held_jobs(text, text),
	orchestrator.claim_order(timestamptz, smallint) TO orchestrator_admin;
GRANT SELECT ON orchestrator.flow_controls, orchestrator.pauses, orchestrator.concurrency_limits,
	orchestrator.priorities, orchestrator.flow_waits TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_define_endpoint(text, text, integer, jsonb) TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_enqueue_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_fan_out(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_schedule(text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_unschedule(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_enqueue_trigger(), orch_fan_out(text, text, jsonb),
	orch_schedule(text, text, text, text, jsonb), orch_unschedule(text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_set_secret(text, text) TO orchestrator_admin;
GRANT SELECT ON orchestrator.endpoints, orchestrator.notification_log TO orchestrator_admin;
-- orchestrator.secrets: no grants at all; the admin role sets secrets, never reads them

GRANT EXECUTE ON FUNCTION orch_submit_event(text, text, uuid, uuid, jsonb, uuid, text, integer) TO orchestrator_submitter, orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_submit_events(text, text, uuid, uuid[], jsonb[], text[]) TO orchestrator_submitter, orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_define_sequence(text, jsonb) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_cancel_job(uuid) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_retry_job(uuid, text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_job_timeline(uuid) TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_retry_jobs(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_retry_jobs(jsonb) TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_fork_job(uuid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_fork_job(uuid, text, jsonb) TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_define_context_source(text, integer, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_define_context_source(text, integer, text, text, text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.store_context_source(text, integer, text, text, text) TO orchestrator_admin;
GRANT SELECT ON orchestrator.context_sources TO orchestrator_admin;
REVOKE ALL ON FUNCTION orch_resolve_approval(uuid, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION orch_define_hitl_pattern(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_resolve_approval(uuid, text, jsonb) TO orchestrator_submitter, orchestrator_admin;
GRANT EXECUTE ON FUNCTION orch_define_hitl_pattern(text, jsonb) TO orchestrator_admin;
GRANT SELECT ON orchestrator.slack_pending_actions, orchestrator.hitl_patterns TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.guarded_effect(jsonb) TO orchestrator_admin;
-- orch_use_table and orch_reapply_table_mappings stay superuser-only: they
-- decide which tables the extension's owner reads.
GRANT SELECT ON orchestrator.jobs, orchestrator.steps, orchestrator.events, orchestrator.job_counts, orchestrator.stuck_jobs,
	orchestrator.service_scope_audit, orchestrator.dead_letters, orchestrator.dead_letter_groups, orchestrator.workers,
	orchestrator.stats TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.worker_status() TO orchestrator_admin;
GRANT SELECT ON orchestrator.sequence_definitions TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.store_sequence(text, jsonb) TO orchestrator_admin;
GRANT SELECT ON orchestrator.cost_ledger TO orchestrator_admin;
-- CHECK constraints call it with the privileges of whoever writes preferences
GRANT EXECUTE ON FUNCTION orchestrator.is_valid_timezone(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION orchestrator.resolve_state_function(text) TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.validate_step(jsonb, integer),
	orchestrator.validate_jsonpath(text, text, jsonb),
	orchestrator.validate_int(text, text, jsonb, integer, integer),
	orchestrator.validate_wait_step(text, text, jsonb) TO orchestrator_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON orchestrator.orgs, orchestrator.users,
	orchestrator.notification_feature_settings, orchestrator.slack_user_preferences,
	orchestrator.slack_user_mappings, orchestrator.cost_budgets TO orchestrator_admin;

SELECT pg_catalog.pg_extension_config_dump('orchestrator.orgs', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.users', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.notification_feature_settings', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.slack_user_preferences', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.slack_user_mappings', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.cost_budgets', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.cost_ledger', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.cost_ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.table_mappings', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.sequence_definitions', 'WHERE event_type NOT LIKE ''orchestrator:%''');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.sequence_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.event_log', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.event_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.step_history', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.step_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.budget_notices', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.slack_pending_actions', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.context_sources', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.hitl_patterns', 'WHERE name NOT IN (''email_draft'', ''crm_update'', ''task_creation'', ''generic'')');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.notification_log', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.notification_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.priorities', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.pauses', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.concurrency_limits', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.flow_waits', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.signals', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.signals_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.waits', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.fan_children', '');

-- Tell the user when no worker will run, then wake the workers that do.
DO $preload$
BEGIN
	IF NOT orchestrator.workers_preloaded() THEN
		RAISE WARNING 'orchestrator is not loaded through shared_preload_libraries, so no worker will run jobs'
			USING HINT = 'Add orchestrator to shared_preload_libraries in postgresql.conf, set orchestrator.database to this database, and restart the server.';
	END IF;
	IF orchestrator.workers_preloaded()
	   AND current_setting('orchestrator.database', true) IS DISTINCT FROM current_database() THEN
		RAISE WARNING 'orchestrator workers run in database "%", not in "%"',
			current_setting('orchestrator.database', true), current_database()
			USING HINT = 'Jobs submitted here will wait until orchestrator.database names this database and the server restarts.';
	END IF;
	PERFORM orchestrator.wake_workers();
END
$preload$;
