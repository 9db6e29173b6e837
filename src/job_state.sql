/*-------------------------------------------------------------------------
 *
 * job_state.sql
 *	  Job state (job_state.c): the queue (sequence_jobs), the event log, the
 *	  step history, the state a job starts with and how a step result folds
 *	  into it, and orchestrator.transition_job, the only way SQL moves a job.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/job_state.sql
 *
 *-------------------------------------------------------------------------
 */

-- The values a job's status and a history row's outcome may take are
-- domains rather than CHECK constraints of the tables: a domain's check is
-- compiled once per session (the type cache), a table's CHECK again for
-- every statement that writes the table, which on the step path cost more
-- than a tenth of the engine's instructions.

CREATE DOMAIN orchestrator.job_status AS text
	CHECK (VALUE IN ('pending', 'in_progress', 'awaiting_approval', 'completed', 'failed', 'cancelled'));
COMMENT ON DOMAIN orchestrator.job_status IS 'A job''s status: pending | in_progress | awaiting_approval | completed | failed | cancelled (src/README.md draws the transitions)';

CREATE DOMAIN orchestrator.event_outcome AS text
	CHECK (VALUE IN ('accepted', 'deferred', 'skipped', 'duplicate'));
COMMENT ON DOMAIN orchestrator.event_outcome IS 'What became of a submitted event: accepted | deferred | skipped | duplicate';

CREATE DOMAIN orchestrator.step_outcome AS text
	CHECK (VALUE IN ('succeeded', 'failed', 'skipped', 'retry_scheduled', 'deferred', 'lease_expired', 'cancelled',
	                 'retry_requested', 'continuation', 'awaiting_approval', 'approved', 'edited', 'forked', 'expired'));
COMMENT ON DOMAIN orchestrator.step_outcome IS 'What a step_history row records: a step attempt''s outcome, or an engine, operator or approval event';

CREATE DOMAIN orchestrator.step_scope AS text CHECK (VALUE IN ('user', 'service'));
COMMENT ON DOMAIN orchestrator.step_scope IS 'How a step''s function ran: user (the job''s user''s claims) or service (org-wide, audited)';

-- The queue: one row a job.  Kept lean: finished jobs leave the partial
-- indexes, and per-step updates touch no indexed column (HOT).  Each job
-- leaves a few row versions behind; autovacuum frees them without its
-- cost delay, so a burst of jobs does not outgrow it and the heap stays
-- the size of the backlog (bench/README.md, retention.sh).

CREATE TABLE orchestrator.sequence_jobs (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	event_type text NOT NULL,
	event_source text NOT NULL,
	sequence_version integer NOT NULL,
	status orchestrator.job_status NOT NULL DEFAULT 'pending',
	run_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	priority smallint NOT NULL DEFAULT 0,
	current_step integer NOT NULL DEFAULT 0,
	attempts integer NOT NULL DEFAULT 0,
	reclaims integer NOT NULL DEFAULT 0,
	lease_owner integer,
	lease_expires_at timestamptz,
	fencing_token bigint NOT NULL DEFAULT 0,
	context jsonb NOT NULL,
	trigger_payload jsonb NOT NULL,
	event_chain jsonb NOT NULL DEFAULT '{"parent": null, "children": []}',
	parent_job_id uuid,
	chain_depth integer NOT NULL DEFAULT 1,
	last_error text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	started_at timestamptz,
	finished_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (fillfactor = 80, autovacuum_vacuum_cost_delay = 0);

/*
 * Workers claim pending jobs in claim order: run_at moved earlier by one
 * minute per point of priority (flow.c, doc/flow-control.md).  A job of
 * priority p goes ahead of lower ones that fell due less than p minutes
 * before it, and behind those waiting longer: higher runs first, and no
 * job waits forever behind a stream of higher ones.  With every priority
 * 0 the order is run_at's.
 */
CREATE FUNCTION orchestrator.claim_order(run_at timestamptz, priority smallint) RETURNS timestamptz
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'orch_claim_order';
COMMENT ON FUNCTION orchestrator.claim_order(timestamptz, smallint) IS 'A pending job''s place in the claim order: run_at less one minute per point of priority';

CREATE INDEX sequence_jobs_runnable ON orchestrator.sequence_jobs (orchestrator.claim_order(run_at, priority))
	WHERE status = 'pending';
CREATE INDEX sequence_jobs_leased ON orchestrator.sequence_jobs (lease_expires_at) WHERE status = 'in_progress';
CREATE INDEX sequence_jobs_parent ON orchestrator.sequence_jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;

COMMENT ON TABLE orchestrator.sequence_jobs IS 'One row per orchestration job; context holds the seed''s SequenceState';
COMMENT ON COLUMN orchestrator.sequence_jobs.id IS 'Job id (sequence_job_id)';
COMMENT ON COLUMN orchestrator.sequence_jobs.org_id IS 'Organisation (distribution key)';
COMMENT ON COLUMN orchestrator.sequence_jobs.user_id IS 'User the job acts for';
COMMENT ON COLUMN orchestrator.sequence_jobs.event_type IS 'Event type that started the job';
COMMENT ON COLUMN orchestrator.sequence_jobs.event_source IS 'Where the event came from, e.g. webhook:meetingbaas';
COMMENT ON COLUMN orchestrator.sequence_jobs.sequence_version IS 'Sequence version the job runs, fixed at submit';
COMMENT ON COLUMN orchestrator.sequence_jobs.status IS 'pending | in_progress | awaiting_approval | completed | failed | cancelled';
COMMENT ON COLUMN orchestrator.sequence_jobs.run_at IS 'Earliest time a worker may claim the job (deferrals and retry backoff)';
COMMENT ON COLUMN orchestrator.sequence_jobs.priority IS 'Claim priority, 0 (default) to 1000: each point puts the job one minute earlier in the claim order (orch_submit_event''s priority, else orch_set_priority''s for the event type)';
COMMENT ON COLUMN orchestrator.sequence_jobs.current_step IS 'Index of the next step to run (0-based)';
COMMENT ON COLUMN orchestrator.sequence_jobs.attempts IS 'Failed attempts of the current step so far';
COMMENT ON COLUMN orchestrator.sequence_jobs.reclaims IS 'Times the job was taken back from a worker that died holding it; past orchestrator.max_reclaims the job fails';
COMMENT ON COLUMN orchestrator.sequence_jobs.lease_owner IS 'PID of the worker holding the lease';
COMMENT ON COLUMN orchestrator.sequence_jobs.lease_expires_at IS 'When the lease lapses and another worker may reclaim the job';
COMMENT ON COLUMN orchestrator.sequence_jobs.fencing_token IS 'Incremented on every claim; a write carrying an older token is discarded';
COMMENT ON COLUMN orchestrator.sequence_jobs.context IS 'SequenceState: event, context tiers, outputs, execution_metadata';
COMMENT ON COLUMN orchestrator.sequence_jobs.trigger_payload IS 'Raw payload of the event that started the job';
COMMENT ON COLUMN orchestrator.sequence_jobs.event_chain IS 'Links to parent and child jobs: {"parent": uuid, "children": [uuid]}';
COMMENT ON COLUMN orchestrator.sequence_jobs.parent_job_id IS 'Job that queued this one as a follow-up';
COMMENT ON COLUMN orchestrator.sequence_jobs.chain_depth IS 'Chain depth: 1 for an original event, parent''s depth + 1 for a follow-up (at most 3)';
COMMENT ON COLUMN orchestrator.sequence_jobs.last_error IS 'Last step error (redacted)';
COMMENT ON COLUMN orchestrator.sequence_jobs.created_at IS 'Submit time';
COMMENT ON COLUMN orchestrator.sequence_jobs.started_at IS 'First claim';
COMMENT ON COLUMN orchestrator.sequence_jobs.finished_at IS 'When it completed, failed or was cancelled';
COMMENT ON COLUMN orchestrator.sequence_jobs.updated_at IS 'Last state change';

CREATE TABLE orchestrator.event_log (
	id bigserial PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	org_id uuid,
	user_id uuid,
	event_type text NOT NULL,
	event_source text NOT NULL,
	outcome orchestrator.event_outcome NOT NULL,
	reason text,
	job_id uuid,
	run_at timestamptz,
	parent_job_id uuid,
	dedupe_hash uuid,
	payload jsonb
);
/*
 * The dedupe index is keyed by five-minute time bucket before the hash:
 * the random hashes of new events then land in the small, hot part of the
 * index that covers the last minutes, not anywhere in an index of all
 * history, where each insert dirties a page no other recent insert did
 * (one full-page image in the WAL per submit with a million events kept).
 * A lookup probes each bucket the dedupe window spans (submit.c).
 */
CREATE FUNCTION orchestrator.dedupe_bucket(p_at timestamptz) RETURNS bigint
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'orch_dedupe_bucket_sql';
COMMENT ON FUNCTION orchestrator.dedupe_bucket(timestamptz) IS 'The five-minute bucket of a submit time, the first key of the dedupe index';

CREATE INDEX event_log_dedupe ON orchestrator.event_log (org_id, orchestrator.dedupe_bucket(created_at), dedupe_hash, created_at)
	WHERE outcome IN ('accepted', 'deferred');
CREATE INDEX event_log_job ON orchestrator.event_log (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX event_log_parent ON orchestrator.event_log (parent_job_id) WHERE parent_job_id IS NOT NULL;
COMMENT ON TABLE orchestrator.event_log IS 'Every orch_submit_event outcome, accepted or not: nothing is dropped silently';
COMMENT ON COLUMN orchestrator.event_log.id IS 'Entry id';
COMMENT ON COLUMN orchestrator.event_log.created_at IS 'Submit time';
COMMENT ON COLUMN orchestrator.event_log.org_id IS 'Organisation given by the caller';
COMMENT ON COLUMN orchestrator.event_log.user_id IS 'User given by the caller';
COMMENT ON COLUMN orchestrator.event_log.event_type IS 'Event type';
COMMENT ON COLUMN orchestrator.event_log.event_source IS 'Event source';
COMMENT ON COLUMN orchestrator.event_log.outcome IS 'accepted | deferred | skipped | duplicate';
COMMENT ON COLUMN orchestrator.event_log.reason IS 'Why it was deferred, skipped or a duplicate';
COMMENT ON COLUMN orchestrator.event_log.job_id IS 'Job created (accepted, deferred) or the earlier job it duplicates';
COMMENT ON COLUMN orchestrator.event_log.run_at IS 'When the job becomes runnable';
COMMENT ON COLUMN orchestrator.event_log.parent_job_id IS 'Parent job, for follow-ups';
COMMENT ON COLUMN orchestrator.event_log.dedupe_hash IS 'Identity for deduplication: type, user and payload, or the caller''s dedupe key';
COMMENT ON COLUMN orchestrator.event_log.payload IS 'Payload of an event that created no job, kept so nothing is lost';

CREATE TABLE orchestrator.step_history (
	id bigserial PRIMARY KEY,
	job_id uuid NOT NULL,
	org_id uuid NOT NULL,
	step_index integer,
	step_name text,
	kind text NOT NULL,
	attempt integer NOT NULL DEFAULT 1,
	outcome orchestrator.step_outcome NOT NULL,
	output jsonb,
	error text,
	started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	finished_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	worker_pid integer,
	fencing_token bigint,
	http_status integer,
	scope orchestrator.step_scope
);
CREATE INDEX step_history_job ON orchestrator.step_history (job_id, id);
CREATE INDEX step_history_service ON orchestrator.step_history (started_at) WHERE scope = 'service';
COMMENT ON TABLE orchestrator.step_history IS 'One row per step attempt, plus operator actions and lease reclaims';
COMMENT ON COLUMN orchestrator.step_history.id IS 'Entry id (orders entries of a job)';
COMMENT ON COLUMN orchestrator.step_history.job_id IS 'Job';
COMMENT ON COLUMN orchestrator.step_history.org_id IS 'Organisation of the job';
COMMENT ON COLUMN orchestrator.step_history.step_index IS 'Index of the step in the sequence (0-based)';
COMMENT ON COLUMN orchestrator.step_history.step_name IS 'Step name';
COMMENT ON COLUMN orchestrator.step_history.kind IS 'Step kind (sql, http, notify), approval for an approval decision, context for a context load, or operator / engine for actions on the job';
COMMENT ON COLUMN orchestrator.step_history.attempt IS 'Attempt number of the step, from 1';
COMMENT ON COLUMN orchestrator.step_history.outcome IS 'succeeded | failed | skipped | retry_scheduled | deferred (429, quiet hours, rate limit: not an attempt) | lease_expired | cancelled | retry_requested | continuation (time slice used, re-queued) | awaiting_approval (gate reached) | approved | edited (approval decisions) | expired (an unanswered approval whose on_timeout is fail) | forked (orch_fork_job, on the old job and the new)';
COMMENT ON COLUMN orchestrator.step_history.output IS 'Step output';
COMMENT ON COLUMN orchestrator.step_history.error IS 'Error message of a failed attempt (redacted)';
COMMENT ON COLUMN orchestrator.step_history.started_at IS 'When the attempt started';
COMMENT ON COLUMN orchestrator.step_history.finished_at IS 'When the attempt ended';
COMMENT ON COLUMN orchestrator.step_history.worker_pid IS 'PID of the worker (or backend) that wrote the row';
COMMENT ON COLUMN orchestrator.step_history.fencing_token IS 'Lease token the write carried';
COMMENT ON COLUMN orchestrator.step_history.http_status IS 'HTTP status of an http or notify step''s response, if one came';
COMMENT ON COLUMN orchestrator.step_history.scope IS 'How the step''s function ran: user (the job''s user''s claims, RLS applies) or service (org-wide, audited); NULL for steps without a function';

CREATE FUNCTION orchestrator.initial_state(p_job_id uuid, p_type text, p_source text, p_org_id uuid,
	p_user_id uuid, p_payload jsonb, p_parent_job_id uuid, p_chain_depth integer)
RETURNS jsonb
LANGUAGE C IMMUTABLE
AS 'MODULE_PATHNAME', 'orch_initial_state_sql';
COMMENT ON FUNCTION orchestrator.initial_state(uuid, text, text, uuid, uuid, jsonb, uuid, integer) IS 'The SequenceState a new job starts with';

/*
 * advance_state folds one step result into the SequenceState and its
 * execution_metadata (state.c, the fold every recorded step result goes
 * through).  outcome: succeeded | skipped | failed | retry_scheduled
 * | deferred (a deferral is not an attempt) | awaiting_approval (an approval
 * gate: p_output describes the pending action).
 */
CREATE FUNCTION orchestrator.advance_state(p_state jsonb, p_step_name text, p_outcome text,
	p_output jsonb, p_duration_ms double precision, p_next_step integer, p_followups jsonb DEFAULT NULL,
	p_cost_usd numeric DEFAULT 0)
RETURNS jsonb
LANGUAGE C IMMUTABLE
AS 'MODULE_PATHNAME', 'orch_advance_state_sql';
COMMENT ON FUNCTION orchestrator.advance_state(jsonb, text, text, jsonb, double precision, integer, jsonb, numeric) IS 'Folds one step result into a SequenceState (outputs, steps_completed, execution_metadata)';

/*
 * transition_job: the one way SQL moves a job (cancel, retry, an approval
 * decision).  The caller holds the job's row lock and passes the status it
 * saw; job_state.c checks the edge is legal, writes the row and the
 * history row, and returns false when the job was no longer in p_from.
 */
CREATE FUNCTION orchestrator.transition_job(p_job_id uuid, p_from text, p_to text, p_kind text, p_outcome text,
	p_step_index integer, p_step_name text DEFAULT NULL, p_context jsonb DEFAULT NULL,
	p_current_step integer DEFAULT NULL, p_attempts integer DEFAULT NULL, p_reclaims integer DEFAULT NULL,
	p_new_token boolean DEFAULT false, p_clear_error boolean DEFAULT false, p_output jsonb DEFAULT NULL,
	p_note text DEFAULT NULL)
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_transition_job_sql';
COMMENT ON FUNCTION orchestrator.transition_job(uuid, text, text, text, text, integer, text, jsonb, integer, integer, integer, boolean, boolean, jsonb, text) IS
'Moves a job from one status to another along a legal edge, with its history row (for orch_cancel_job, orch_retry_job and approval decisions)';

CREATE FUNCTION orchestrator.fork_job(p_from uuid, p_step_index integer, p_step_name text, p_state jsonb,
	p_how text)
RETURNS uuid
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'orch_fork_job_sql';
COMMENT ON FUNCTION orchestrator.fork_job(uuid, integer, text, jsonb, text) IS
'Writes a job forked from another, with both history rows (for orch_fork_job)';
