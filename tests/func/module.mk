# tests/func: helper programs for the functional scripts.
# nbd-test-server serves mem/file devices over NBD without the daemon.
# This file is read before the Makefile names its first target: keep `all`
# the default.
.DEFAULT_GOAL := all
EXTRA_TEST_BINS += $(BUILD)/tests/nbd-test-server

$(BUILD)/tests/nbd-test-server: $(BUILD)/obj/tests/func/nbd_server_main.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# thin-corrupt damages a stopped pool's metadata for thin_check.sh.
EXTRA_TEST_BINS += $(BUILD)/tests/thin-corrupt

$(BUILD)/tests/thin-corrupt: $(BUILD)/obj/tests/func/thin_corrupt.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# iscsi_pr_client: persistent reservations through libiscsi (iscsi_pr.sh)
EXTRA_TEST_BINS += $(BUILD)/tests/iscsi_pr_client

$(BUILD)/tests/iscsi_pr_client: $(BUILD)/obj/tests/func/iscsi_pr_client.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# iscsi-mpath: a multipath initiator on libiscsi (REPORT/SET TARGET PORT
# GROUPS, the failover run of iscsi_failover.sh).
EXTRA_TEST_BINS += $(BUILD)/tests/iscsi-mpath

$(BUILD)/tests/iscsi-mpath: $(BUILD)/obj/tests/func/iscsi_mpath.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# iscsi_xcopy_client: EXTENDED COPY through libiscsi (iscsi_xcopy.sh)
EXTRA_TEST_BINS += $(BUILD)/tests/iscsi_xcopy_client

$(BUILD)/tests/iscsi_xcopy_client: $(BUILD)/obj/tests/func/iscsi_xcopy_client.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# iscsi_reset_client: a LUN reset from one libiscsi session while another
# writes (iscsi_reset.sh)
EXTRA_TEST_BINS += $(BUILD)/tests/iscsi_reset_client

$(BUILD)/tests/iscsi_reset_client: $(BUILD)/obj/tests/func/iscsi_reset_client.o $(BUILD)/libsand.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)
