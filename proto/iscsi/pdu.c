/* SPDX-License-Identifier: MIT */
/*
 * iSCSI PDU codec: lengths, padding and digests around the 48-byte BHS.
 * Pure functions over buffers, so the fuzzer and the unit tests drive them
 * without sockets; the connection code (daemon/iscsi) reads a BHS, asks
 * iscsi_pdu_lengths() how much follows, and checks digests with
 * iscsi_crc32c().
 */
#include <errno.h>
#include <string.h>
#include <isa-l/crc.h>
#include "sand/iscsi.h"

uint32_t iscsi_crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	/* crc32_iscsi takes an int length: feed it in pieces */
	while (len) {
		int n = len > (1u << 30) ? (1 << 30) : (int)len;

		crc = crc32_iscsi((unsigned char *)p, n, crc);
		p += n;
		len -= (size_t)n;
	}
	return crc;
}

uint32_t iscsi_crc32c(const void *buf, size_t len)
{
	return iscsi_crc32c_end(iscsi_crc32c_update(iscsi_crc32c_begin(), buf, len));
}

void iscsi_bhs_init(struct iscsi_bhs *h, uint8_t opcode, uint8_t flags)
{
	memset(h, 0, sizeof(*h));
	h->b[BHS_OPCODE] = opcode & ISCSI_BHS_OPCODE_MASK;
	h->b[BHS_FLAGS] = flags;
}

int iscsi_pdu_lengths(const struct iscsi_bhs *h, bool hdigest, bool ddigest,
		      uint32_t max_dsl, struct iscsi_pdu_len *out)
{
	uint32_t dsl = bhs_dsl(h);

	if (dsl > max_dsl)
		return -EMSGSIZE;
	out->ahs = bhs_ahs_len(h);
	out->hdigest = hdigest ? ISCSI_DIGEST_LEN : 0;
	out->data = dsl;
	out->data_padded = iscsi_pad4(dsl);
	out->ddigest = ddigest && dsl ? ISCSI_DIGEST_LEN : 0;
	out->total = out->ahs + out->hdigest + out->data_padded + out->ddigest;
	return 0;
}

int iscsi_pdu_parse(const void *buf, size_t len, bool hdigest, bool ddigest,
		    uint32_t max_dsl, struct iscsi_pdu_len *pl)
{
	const uint8_t *p = buf;
	const struct iscsi_bhs *h = buf;
	const uint8_t *data;
	int rc;

	if (len < ISCSI_BHS_LEN)
		return -EAGAIN;
	rc = iscsi_pdu_lengths(h, hdigest, ddigest, max_dsl, pl);
	if (rc)
		return rc;
	if (len < ISCSI_BHS_LEN + (size_t)pl->total)
		return -EAGAIN;
	if (pl->hdigest) {
		uint32_t want = iscsi_crc32c(p, ISCSI_BHS_LEN + pl->ahs);

		if (get_le32(p + ISCSI_BHS_LEN + pl->ahs) != want)
			return -EBADMSG;
	}
	data = p + ISCSI_BHS_LEN + pl->ahs + pl->hdigest;
	for (uint32_t i = pl->data; i < pl->data_padded; i++)
		if (data[i])
			return -EPROTO;
	if (pl->ddigest) {
		uint32_t want = iscsi_crc32c(data, pl->data_padded);

		if (get_le32(data + pl->data_padded) != want)
			return -EBADMSG;
	}
	return 0;
}

int iscsi_pdu_build(const struct iscsi_bhs *h, const void *ahs, uint32_t ahs_len,
		    const void *data, uint32_t data_len, bool hdigest, bool ddigest,
		    void *out, size_t cap)
{
	uint8_t *o = out;
	uint32_t hd = hdigest ? ISCSI_DIGEST_LEN : 0;
	uint32_t dd = ddigest && data_len ? ISCSI_DIGEST_LEN : 0;
	size_t total;
	uint8_t *d;

	if (ahs_len % 4 || ahs_len > ISCSI_MAX_AHS_LEN || data_len > ISCSI_MAX_DSL)
		return -EMSGSIZE;
	total = ISCSI_BHS_LEN + ahs_len + hd + iscsi_pad4(data_len) + dd;
	if (total > cap)
		return -ENOSPC;
	memcpy(o, h, ISCSI_BHS_LEN);
	o[BHS_TOTAL_AHS_LEN] = (uint8_t)(ahs_len / 4);
	bhs_set_dsl((struct iscsi_bhs *)o, data_len);
	if (ahs_len)
		memcpy(o + ISCSI_BHS_LEN, ahs, ahs_len);
	if (hd)
		put_le32(o + ISCSI_BHS_LEN + ahs_len, iscsi_crc32c(o, ISCSI_BHS_LEN + ahs_len));
	d = o + ISCSI_BHS_LEN + ahs_len + hd;
	if (data_len)
		memcpy(d, data, data_len);
	memset(d + data_len, 0, iscsi_pad4(data_len) - data_len);
	if (dd)
		put_le32(d + iscsi_pad4(data_len), iscsi_crc32c(d, iscsi_pad4(data_len)));
	return (int)total;
}
