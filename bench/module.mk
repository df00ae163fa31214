# bench/: blkbench, the block-layer benchmark (`make bench`). Not part of
# `make all`; bench/backend runs it against fio by hand.

# Keep `all` the default goal: this file is read before the Makefile's rules.
bench_saved_goal := $(.DEFAULT_GOAL)

BLKBENCH := $(BUILD)/blkbench

$(BLKBENCH): $(BUILD)/obj/bench/blkbench.o $(BUILD)/libsand.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# built with the tests, so tests/func/blkbench.sh can run it
EXTRA_TEST_BINS += $(BLKBENCH)

.PHONY: bench
bench: $(BLKBENCH)

.DEFAULT_GOAL := $(bench_saved_goal)
