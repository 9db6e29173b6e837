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

extern Jsonb *orch_state_advance(Jsonb *state, const char *step_name, const char *outcome, Jsonb *output,
								 double duration_ms, int next_step, Jsonb *followups, Numeric cost_usd);
extern Jsonb *orch_without_transcripts(Jsonb *value);

#endif							/* ORCH_STATE_H */
