# tests/fuzz: libFuzzer harnesses (clang only), one per tests/fuzz/fuzz_*.c.
#   make fuzz                      builds build/fuzz/fuzz_{nbd,iscsi,scsi}
#   build/fuzz/fuzz_X -max_total_time=600 tests/fuzz/corpus/X   a long run by hand
# tests/func/fuzz.sh gives each a short run from its seed corpus in
# `make check`. The whole library is compiled again with coverage
# instrumentation and ASan+UBSan into build/fuzz/obj, so a harness reaches
# any module (SCSI execution runs on a real loop and memory device).
.DEFAULT_GOAL := all
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=gnu11 $(WARN) -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
	-D_GNU_SOURCE -pthread -Iinclude -I. $(PKG_CFLAGS)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_LIB_OBJS := $(patsubst %.c,build/fuzz/obj/%.o,$(LIB_SRCS))

fuzz: $(FUZZ_BINS)

# make check runs them briefly when clang is there (CI installs it)
ifneq ($(shell command -v $(FUZZ_CC) 2>/dev/null),)
EXTRA_TEST_BINS += $(FUZZ_BINS)
endif

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

build/fuzz/libsand.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/%: build/fuzz/obj/tests/fuzz/%.o build/fuzz/libsand.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -pthread -o $@ $^ $(LIBS)

-include $(shell find build/fuzz/obj -name '*.d' 2>/dev/null)
