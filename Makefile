# sand: non-recursive build. `make` builds build/sand and build/volctl;
# `make check` builds and runs every test; `make SANITIZE=address,undefined
# check` does the same under ASan+UBSan (with clang, in build/san).
#
# Sources are found by directory: every .c under common/, backends/ and the
# module directories goes into libsand.a (daemon/main.c excepted), every
# tests/unit/test_*.c is one Check binary, every tests/func/*.sh one script.
# A module with special needs adds to the variables in its own module.mk.

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
CC ?= cc
OPT ?= -O2
else
BUILD ?= build/san
CC := clang
OPT ?= -O1
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

PKGS := liburing jansson gnutls uuid libiscsi
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter -Wvla -Wformat=2
CFLAGS ?= $(OPT) -g
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) $(SANFLAGS) -D_GNU_SOURCE -pthread \
	-Iinclude -I. $(PKG_CFLAGS)
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS) -pthread
LIBS := $(PKG_LIBS) -laio -lisal -lm

LIB_DIRS := common backends daemon daemon/nbd daemon/iscsi proto/scsi proto/iscsi proto/nbd raid snapshot
LIB_SRCS := $(filter-out daemon/main.c,$(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
SAND_SRCS := daemon/main.c
VOLCTL_SRCS := $(wildcard tools/volctl/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_HELPERS := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

-include $(wildcard */module.mk */*/module.mk)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_OBJS := $(call obj,$(LIB_SRCS))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
UNIT_HELPER_OBJS := $(call obj,$(UNIT_HELPERS))

.PHONY: all clean check check-unit check-func run fuzz
# keep objects of pattern-built binaries (tests, bench tools) between runs
.SECONDARY:
all: $(BUILD)/sand $(BUILD)/volctl

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libsand.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/sand: $(call obj,$(SAND_SRCS)) $(BUILD)/libsand.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/volctl: $(call obj,$(VOLCTL_SRCS)) $(BUILD)/libsand.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(UNIT_HELPER_OBJS) $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LIBS)

tests-build: all $(UNIT_BINS) $(EXTRA_TEST_BINS)
.PHONY: tests-build

# Every test: unit (Check) and functional (real clients). Ends with the line
# "N passed, N failed, N skipped".
check: tests-build
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run-tests.sh $(TESTS)

check-unit: tests-build
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run-tests.sh $(UNIT_BINS)

check-func: tests-build
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run-tests.sh $(wildcard tests/func/*.sh)

# The embedded default: sparse disks under ./var, served until Ctrl-C.
run: all
	@scripts/run-default.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
