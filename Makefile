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
	src/flow.o \
	src/step.o \
	src/step_sql.o \
	src/step_http.o \
	src/wait.o \
	src/retention.o \
	src/context.o \
	src/followup.o \
	src/http.o \
	src/http_text.o \
	src/job_state.o \
	src/state.o \
	src/approval.o \
	src/budget.o \
	src/policy.o \
	src/operate.o \
	src/worker.o

EXTENSION = orchestrator
EXTVERSION = 0.1

# The install script is built from per-concern sources beside the C files
# they serve (src/approval.sql beside src/approval.c), joined in the order
# of src/load_order.txt.  Upgrade scripts, once a version ships, are
# written by hand in sql/ and listed in DATA.
INSTALL_SOURCES = $(addprefix $(srcdir)/src/,$(shell cat $(srcdir)/src/load_order.txt))
DATA_built = sql/orchestrator--$(EXTVERSION).sql
PGFILEDESC = "orchestrator - durable workflow orchestrator inside PostgreSQL"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Werror
SHLIB_LINK = -lcurl

REGRESS = setup definitions submit run failure operate replay job_state security http http_failure notify entry followup cost approval scope context stats flow wait fanout retention
REGRESS_OPTS = --temp-config=$(srcdir)/test/orchestrator.conf --inputdir=$(srcdir)

ISOLATION = claim dedupe reclaim approval races flow
ISOLATION_OPTS = --temp-config=$(srcdir)/test/orchestrator.conf --inputdir=$(srcdir)/test

TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/orchestrator--$(EXTVERSION).sql: $(srcdir)/src/load_order.txt $(INSTALL_SOURCES)
	@mkdir -p sql
	{ echo '/* sql/orchestrator--$(EXTVERSION).sql: built by make from the sources in src/ named by src/load_order.txt; edit those */'; \
	  for f in $(INSTALL_SOURCES); do echo; cat $$f; done; } > $@

# PGXS tracks no header dependencies: every object depends on every header
$(OBJS): $(wildcard src/*.h)
