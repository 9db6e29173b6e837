# Makefile for the orchestrator extension (PGXS)

MODULE_big = orchestrator
OBJS = \
	src/orchestrator.o \
	src/util.o \
	src/auth.o \
	src/redact.o \
	src/guc.o \
	src/shmem.o \
	src/wake.o \
	src/submit.o \
	src/claim.o \
	src/step.o \
	src/step_sql.o \
	src/step_http.o \
	src/context.o \
	src/followup.o \
	src/http.o \
	src/job_state.o \
	src/approval.o \
	src/budget.o \
	src/policy.o \
	src/operate.o \
	src/worker.o

EXTENSION = orchestrator
DATA = sql/orchestrator--0.1.sql
PGFILEDESC = "orchestrator - durable workflow orchestrator inside PostgreSQL"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Werror
SHLIB_LINK = -lcurl

REGRESS = setup definitions submit run failure operate security http http_failure notify entry followup cost approval scope context
REGRESS_OPTS = --temp-config=$(srcdir)/test/orchestrator.conf --inputdir=$(srcdir)

ISOLATION = claim dedupe reclaim approval
ISOLATION_OPTS = --temp-config=$(srcdir)/test/orchestrator.conf --inputdir=$(srcdir)/test

TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on the one header
$(OBJS): $(wildcard src/*.h)
