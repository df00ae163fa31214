# tests/migration: the live-migration tests' guest and `make check-migration`.
# The tests themselves are tests/func/migrate_*.sh (so `make check` runs them
# too); build-guest.sh makes the guest under build/guest, shared by the gcc
# and the sanitizer builds, and keeps it. See doc/migration.md.
# This file is read before the Makefile names its first target: keep `all`
# the default.
.DEFAULT_GOAL := all
MIGRATION_TESTS := $(wildcard tests/func/migrate_*.sh)

.PHONY: check-migration guest
guest:
	@tests/migration/build-guest.sh build/guest

# the figures (migration time, downtime, guest write stall) follow the summary
check-migration: all guest
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run-tests.sh $(MIGRATION_TESTS); rc=$$?; \
	grep -h '^# migration ' $(patsubst tests/func/%,$(BUILD)/test-logs/%.log,$(MIGRATION_TESTS)) \
		2>/dev/null | sed 's/^# //'; exit $$rc
