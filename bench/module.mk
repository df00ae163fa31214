# bench/: small benchmarks, built with `make` (not run by `make check`).
BENCH_BINS := $(BUILD)/bench/raid-parity $(BUILD)/bench/raid-io

all: $(BENCH_BINS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)
.PRECIOUS: $(BUILD)/obj/bench/%.o
