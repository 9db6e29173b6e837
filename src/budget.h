/*-------------------------------------------------------------------------
 *
 * budget.h
 *	  AI cost: the budget gate before an ai step and the booking of what
 *	  it spent (budget.c, budget.sql).
 *
 * src/budget.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_BUDGET_H
#define ORCH_BUDGET_H

#include "job_state.h"

extern bool orch_budget_allows(const OrchClaimedJob *job, Jsonb *state);
extern double orch_budget_record_cost(const OrchClaimedJob *job, Jsonb *state, const char *step_name,
									  Jsonb *output);

#endif							/* ORCH_BUDGET_H */
