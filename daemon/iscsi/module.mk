# daemon/iscsi: a small target program for the functional tests
# (tests/func/iscsi_*.sh), built with the test binaries.
EXTRA_TEST_BINS += $(BUILD)/iscsi_testd

$(BUILD)/iscsi_testd: $(BUILD)/obj/tests/func/iscsi_testd.o $(BUILD)/libsand.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)
