--
-- retention: finished jobs, their history and events, and old log rows go
-- once older than the retention, in bounded batches, by orch_purge and by
-- the first worker; a running job and its audit trail stay.  Runs last:
-- it removes what the earlier files left.
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

SELECT test_error($$SELECT orch_purge()$$);
SELECT test_error($$SELECT orch_purge('1 day', 0)$$);

CREATE FUNCTION public.ret_noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT orch_define_sequence('ret_done', '[{"name": "a", "kind": "sql", "function": "ret_noop"},
                                          {"name": "b", "kind": "sql", "function": "ret_noop"}]');
SELECT orch_define_sequence('ret_waiting', '[{"name": "a", "kind": "sql", "function": "ret_noop"},
                                             {"name": "wait", "kind": "signal", "signal": "never"}]');
SELECT job_id AS done FROM orch_submit_event('ret_done', 'test', :'org_a', :'ada', '{}') \gset
SELECT job_id AS waiting FROM orch_submit_event('ret_waiting', 'test', :'org_a', :'ada', '{}') \gset
-- an event that made no job, and one that duplicates the finished job
SELECT outcome FROM orch_submit_event('ret_nobody', 'test', :'org_a', :'ada', '{}');
SELECT outcome FROM orch_submit_event('ret_done', 'test', :'org_a', :'ada', '{}');
SELECT test_wait_job(:'done');
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.waits WHERE job_id = '$$ || :'waiting' || $$'$$);

-- a day's retention keeps everything just made
SELECT orch_purge('1 day') >= 0 AS ran;
SELECT count(*) AS kept FROM orchestrator.sequence_jobs WHERE id IN (:'done', :'waiting');

-- a second's retention, once a second has passed: the finished job goes
-- with its history and its events; the waiting job stays whole
SELECT test_wait_for($$SELECT orch_purge('1 second', 1) >= 0
                         AND NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs WHERE id = '$$ || :'done' || $$')$$);
SELECT (SELECT count(*) FROM orchestrator.step_history WHERE job_id = :'done') AS done_history,
       (SELECT count(*) FROM orchestrator.event_log WHERE job_id = :'done') AS done_events,
       (SELECT status FROM orchestrator.sequence_jobs WHERE id = :'waiting') AS waiting_status,
       (SELECT count(*) > 0 FROM orchestrator.step_history WHERE job_id = :'waiting') AS waiting_history,
       (SELECT count(*) FROM orchestrator.event_log WHERE job_id = :'waiting') AS waiting_events,
       (SELECT count(*) FROM orchestrator.waits WHERE job_id = :'waiting') AS waiting_wait;
-- the event that made no job goes too, by the log's cursor
SELECT test_wait_for($$SELECT orch_purge('1 second') >= 0
                         AND NOT EXISTS (SELECT 1 FROM orchestrator.event_log WHERE event_type = 'ret_nobody')$$);
SELECT through > 0 AS cursor_moved FROM orchestrator.retention_cursors WHERE log = 'event_log';
-- nothing finished and older than a second is left
SELECT count(*) AS old_finished FROM orchestrator.sequence_jobs
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < now() - interval '1 second'
  AND id < (SELECT id FROM orchestrator.sequence_jobs WHERE id = :'waiting');

-- a fan-out's finished child stays while its parent runs
SELECT orch_define_sequence('ret_child', '[{"name": "a", "kind": "sql", "function": "ret_noop"},
  {"name": "hold", "kind": "signal", "signal": "release", "key": "$.event.payload.k"}]');
SELECT orch_define_sequence('ret_parent', '[{"name": "fan", "kind": "fan_out", "sequence": "ret_child",
  "for_each": "$.event.payload.keys[*]", "payload": {"k": "@"}, "on_child_failure": "collect"}]');
SELECT job_id AS fan FROM orch_submit_event('ret_parent', 'test', :'org_a', :'ada', '{"keys": ["r1", "r2"]}') \gset
SELECT test_wait_for($$SELECT count(*) = 2 FROM orchestrator.waits WHERE key IN ('r1', 'r2')$$);
SELECT orch_signal_key('r1', 'release') IS NOT NULL AS first_released;
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.sequence_jobs WHERE event_type = 'ret_child' AND status = 'completed'
                         AND finished_at < clock_timestamp() - interval '1 second'$$);
SELECT orch_purge('1 second') >= 0 AS purged;
SELECT count(*) AS children_kept FROM orchestrator.sequence_jobs WHERE event_type = 'ret_child';
SELECT orch_signal_key('r2', 'release') IS NOT NULL AS second_released;
SELECT test_wait_job(:'fan');
SELECT context->'outputs'->'fan'->'completed' AS both_reported FROM orchestrator.sequence_jobs WHERE id = :'fan';

-- the first worker purges by itself once orchestrator.retention is set
ALTER SYSTEM SET orchestrator.retention = '1s';
SELECT pg_reload_conf();
SELECT job_id AS later FROM orch_submit_event('ret_done', 'test', :'org_a', :'ada', '{"n": 2}') \gset
SELECT test_wait_job(:'later');
SELECT test_wait_for($$SELECT NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs WHERE id = '$$ || :'later' || $$')$$);
SELECT (SELECT status FROM orchestrator.sequence_jobs WHERE id = :'waiting') AS still_waiting;
ALTER SYSTEM RESET orchestrator.retention;
SELECT pg_reload_conf();

-- only orchestrator_admin may purge
CREATE ROLE ret_outsider;
SET ROLE ret_outsider;
SELECT test_error($$SELECT orch_purge('1 day')$$);
RESET ROLE;
DROP ROLE ret_outsider;
SELECT orch_cancel_job(:'waiting');
