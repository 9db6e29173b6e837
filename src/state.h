/*-------------------------------------------------------------------------
 *
 * state.h
 *	  A job's SequenceState: the fold of a step result, and transcripts kept
 *	  out of what is stored (state.c).
 *
 * src/state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_STATE_H
#define ORCH_STATE_H

#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

extern Jsonb *orch_state_initial(const pg_uuid_t *job_id, const char *type, const char *source,
								 const pg_uuid_t *org_id, const pg_uuid_t *user_id, Jsonb *payload,
								 const pg_uuid_t *parent_job_id, int chain_depth);
extern Jsonb *orch_state_advance(Jsonb *state, const char *step_name, const char *outcome, Jsonb *output,
								 double duration_ms, int next_step, Jsonb *followups, Numeric cost_usd);
extern Jsonb *orch_without_transcripts(Jsonb *value);

#endif							/* ORCH_STATE_H */
