# bench/: blkbench, the block-layer benchmark (`make bench`). Not part of
# `make all`; bench/backend runs it against fio by hand. Also raid-parity
# (ISA-L parity GB/s next to memcpy) and raid-io (the RAID layer's CPU cost
# over null members), and nbd-floor (bench/nbd's yardstick), in $(BUILD)/bench/.

# Keep `all` the default goal: this file is read before the Makefile's rules.
bench_saved_goal := $(.DEFAULT_GOAL)

BLKBENCH := $(BUILD)/blkbench
RAID_BENCH := $(BUILD)/bench/raid-parity $(BUILD)/bench/raid-io $(BUILD)/bench/raid-ppl $(BUILD)/bench/raid-bench
# bench/nbd's yardstick: the least an NBD server can do per request
NBD_FLOOR := $(BUILD)/bench/nbd-floor

$(BLKBENCH): $(BUILD)/obj/bench/blkbench.o $(BUILD)/libsand.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

.PRECIOUS: $(BUILD)/obj/bench/%.o

# built with the tests, so tests/func/blkbench.sh can run it (and so the
# raid tools keep compiling)
EXTRA_TEST_BINS += $(BLKBENCH) $(RAID_BENCH) $(NBD_FLOOR)

.PHONY: bench
bench: $(BLKBENCH) $(RAID_BENCH) $(NBD_FLOOR)

.DEFAULT_GOAL := $(bench_saved_goal)
