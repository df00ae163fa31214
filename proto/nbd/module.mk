# proto/nbd: the libFuzzer harness for the codec (make fuzz, clang only).
# The codec is compiled into the harness with coverage; nothing else is needed.
.DEFAULT_GOAL := all
FUZZ_CC ?= clang
FUZZ_FLAGS ?= -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1

fuzz: build/fuzz/fuzz_nbd

build/fuzz/fuzz_nbd: tests/fuzz/fuzz_nbd.c proto/nbd/nbd_proto.c proto/nbd/nbd_proto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 $(WARN) $(FUZZ_FLAGS) -D_GNU_SOURCE -Iinclude -I. -o $@ \
		tests/fuzz/fuzz_nbd.c proto/nbd/nbd_proto.c
