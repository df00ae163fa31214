/* SPDX-License-Identifier: MIT */
/*
 * An EXTENDED COPY client on libiscsi for tests/func/iscsi_xcopy.sh (no
 * sg_xcopy here): logs in to URL, finds the NAA designators (VPD 83h) of
 * the source and destination LUNs of that target, sends one EXTENDED COPY
 * (LID1) to URL's LUN with two identification CSCDs and one block-to-block
 * segment per NBLOCKS_MAX (65535) blocks, and then RECEIVE COPY RESULTS
 * (COPY STATUS) of list identifier 7.
 *
 *   iscsi_xcopy_client URL INITIATOR SRC_LUN DST_LUN SRC_LBA DST_LBA NBLOCKS
 *
 * Prints "xcopy: STATUS" (GOOD, CONFLICT, or SENSE KEY/ASC/ASCQ in hex) and,
 * after a GOOD copy, "status: CM SEGMENTS BYTES". Exit 0 unless the login
 * or an INQUIRY fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define LIST_ID 7

static void status(struct iscsi_context *iscsi, struct scsi_task *t)
{
	if (!t)
		printf("ERROR %s", iscsi_get_error(iscsi));
	else if (t->status == SCSI_STATUS_GOOD)
		printf("GOOD");
	else if (t->status == SCSI_STATUS_RESERVATION_CONFLICT)
		printf("CONFLICT");
	else if (t->status == SCSI_STATUS_CHECK_CONDITION)
		printf("SENSE %x/%02x/%02x", t->sense.key, t->sense.ascq >> 8, t->sense.ascq & 0xff);
	else
		printf("STATUS %d", t->status);
}

/* The 32-byte identification CSCD of lun: its NAA designator. */
static int cscd(struct iscsi_context *iscsi, int lun, unsigned char *d)
{
	struct scsi_task *t = iscsi_inquiry_sync(iscsi, lun, 1, 0x83, 255);
	struct scsi_task *rc;
	struct scsi_inquiry_device_identification *di;
	struct scsi_inquiry_device_designator *des;
	struct scsi_readcapacity16 *cap;

	if (!t || t->status != SCSI_STATUS_GOOD || !(di = scsi_datain_unmarshall(t)))
		return -1;
	for (des = di->designators; des; des = des->next)
		if (des->designator_type == SCSI_DESIGNATOR_TYPE_NAA)
			break;
	if (!des)
		return -1;
	rc = iscsi_readcapacity16_sync(iscsi, lun);
	if (!rc || rc->status != SCSI_STATUS_GOOD || !(cap = scsi_datain_unmarshall(rc)))
		return -1;
	memset(d, 0, 32);
	d[0] = 0xe4;
	d[4] = (unsigned char)des->code_set;
	d[5] = (unsigned char)((des->association & 3) << 4 | (des->designator_type & 0xf));
	d[7] = (unsigned char)des->designator_length;
	memcpy(d + 8, des->designator, des->designator_length);
	d[29] = (unsigned char)(cap->block_length >> 16);
	d[30] = (unsigned char)(cap->block_length >> 8);
	d[31] = (unsigned char)cap->block_length;
	scsi_free_scsi_task(rc);
	scsi_free_scsi_task(t);
	return 0;
}

int main(int argc, char **argv)
{
	struct iscsi_context *iscsi;
	struct iscsi_url *url;
	struct iscsi_data data;
	struct scsi_task *t;
	unsigned long long src_lba, dst_lba, n;
	unsigned nseg, off;
	int lun;

	if (argc != 8) {
		fprintf(stderr, "usage: %s URL INITIATOR SRC_LUN DST_LUN SRC_LBA DST_LBA NBLOCKS\n",
			argv[0]);
		return 2;
	}
	src_lba = strtoull(argv[5], NULL, 0);
	dst_lba = strtoull(argv[6], NULL, 0);
	n = strtoull(argv[7], NULL, 0);
	iscsi = iscsi_create_context(argv[2]);
	if (!iscsi)
		return 1;
	url = iscsi_parse_full_url(iscsi, argv[1]);
	if (!url) {
		fprintf(stderr, "bad url: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun)) {
		fprintf(stderr, "login failed: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	lun = url->lun;
	iscsi_destroy_url(url);

	nseg = (unsigned)((n + 65534) / 65535);
	if (!nseg)
		nseg = 1;
	data.size = 16 + 64 + 28 * nseg;
	data.data = calloc(1, data.size);
	if (!data.data)
		return 1;
	if (cscd(iscsi, atoi(argv[3]), data.data + 16) ||
	    cscd(iscsi, atoi(argv[4]), data.data + 48)) {
		fprintf(stderr, "inquiry failed: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	data.data[0] = LIST_ID;			/* LIST ID USAGE 00b: held */
	data.data[3] = 64;
	data.data[8] = (unsigned char)((28 * nseg) >> 24);
	data.data[9] = (unsigned char)((28 * nseg) >> 16);
	data.data[10] = (unsigned char)((28 * nseg) >> 8);
	data.data[11] = (unsigned char)(28 * nseg);
	off = 80;
	for (unsigned s = 0; s < nseg; s++, off += 28) {
		unsigned long long k = n > 65535 ? 65535 : n;
		unsigned char *d = data.data + off;

		d[0] = 0x02;
		d[3] = 24;
		d[7] = 1;		/* source CSCD 0, destination CSCD 1 */
		d[10] = (unsigned char)(k >> 8);
		d[11] = (unsigned char)k;
		for (int b = 0; b < 8; b++) {
			d[12 + b] = (unsigned char)(src_lba >> (56 - 8 * b));
			d[20 + b] = (unsigned char)(dst_lba >> (56 - 8 * b));
		}
		src_lba += k;
		dst_lba += k;
		n -= k;
	}
	t = iscsi_extended_copy_sync(iscsi, lun, &data);
	printf("xcopy: ");
	status(iscsi, t);
	printf("\n");
	if (t && t->status == SCSI_STATUS_GOOD) {
		struct scsi_task *r = iscsi_receive_copy_results_sync(iscsi, lun,
					SCSI_COPY_RESULTS_COPY_STATUS, LIST_ID, 1024);
		struct scsi_copy_results_copy_status *cs;

		if (r && r->status == SCSI_STATUS_GOOD && (cs = scsi_datain_unmarshall(r)))
			printf("status: %u %u %u\n", cs->copy_manager_status,
			       cs->segments_processed, cs->transfer_count);
		else
			printf("status: none\n");
		if (r)
			scsi_free_scsi_task(r);
	}
	if (t)
		scsi_free_scsi_task(t);
	free(data.data);
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	return 0;
}
