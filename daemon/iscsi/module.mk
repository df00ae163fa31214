# daemon/iscsi: a small target program for the functional tests
# (tests/func/iscsi_*.sh), built with the test binaries. A pattern rule, so
# that it never becomes the Makefile's default goal.
EXTRA_TEST_BINS += $(BUILD)/iscsi_testd

$(BUILD)/%_testd: $(BUILD)/obj/tests/func/%_testd.o $(BUILD)/libsand.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)
.PRECIOUS: $(BUILD)/obj/tests/func/%.o
