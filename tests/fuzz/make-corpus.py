#!/usr/bin/env python3
# Write the seed corpora of the fuzz harnesses (tests/fuzz/corpus/*): a few
# well-formed inputs each, so a short run starts from the protocol's real
# shapes instead of random bytes. Run it again after changing a harness's
# input format; the files it writes are committed.
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def put(kind, name, data):
    d = os.path.join(ROOT, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- NBD: byte 0 bit 7 = options phase, else request shape bits ----
IHAVEOPT = 0x49484156454F5054


def opt(o, payload=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(payload)) + payload


def meta(names, export=b"vol1"):
    p = struct.pack(">I", len(export)) + export + struct.pack(">I", len(names))
    for n in names:
        p += struct.pack(">I", len(n)) + n
    return p


def info(name, reqs):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(reqs)) + \
        b"".join(struct.pack(">H", r) for r in reqs)


CF = struct.pack(">I", 3)  # FIXED_NEWSTYLE | NO_ZEROES
put("nbd", "go", b"\x80" + CF + opt(8) + opt(7, info(b"vol1", [0, 1, 2, 3])))
put("nbd", "list-info", b"\x80" + CF + opt(3) + opt(6, info(b"", [3])) + opt(2))
put("nbd", "meta", b"\x80" + CF + opt(8) + opt(9, meta([b"base:", b"sand:"])) +
    opt(10, meta([b"base:allocation", b"sand:changed:snap1"])) + opt(11))
put("nbd", "starttls-export-name", b"\x80" + CF + opt(5) + opt(1, b"vol1"))


def req(flags, typ, cookie, off, length):
    return struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, length)


put("nbd", "requests", b"\x1f" + req(0, 0, 1, 0, 4096) + req(1, 1, 2, 4096, 4096) +
    req(0, 3, 3, 0, 0) + req(0, 4, 4, 0, 65536) + req(2 | 16, 6, 5, 8192, 512) +
    req(0, 5, 6, 0, 1 << 20) + req(8, 7, 7, 0, 1 << 20) + req(0, 2, 8, 0, 0))
put("nbd", "requests-df", b"\x0b" + req(4, 0, 1, 512, 65536) + req(0, 0, 2, (1 << 40) - 512, 512))

# ---- iSCSI: byte 0 bit 6 = login negotiation, else framing (bits 0/1 digests) ----
KV_LOGIN = (b"InitiatorName=iqn.2010-11.libiscsi:fuzz\0SessionType=Normal\0"
            b"TargetName=iqn.2026-11.io.sand:vol1\0")


def bhs(op, flags, dlen, rest=b""):
    h = bytes([op, flags, 0, 0, 0]) + struct.pack(">I", dlen)[1:] + rest
    return h + bytes(48 - len(h))


def pdu(h, data=b"", hd=False, dd=False):
    out = h + (struct.pack("<I", crc32c(h)) if hd else b"")
    if data:
        pad = data + bytes(-len(data) % 4)
        out += pad + (struct.pack("<I", crc32c(pad)) if dd else b"")
    return out


def login_pdu(data, csg, nsg, transit):
    flags = (0x80 if transit else 0) | csg << 2 | nsg
    rest = b"\x00\x02\x3d\x00\x00\x01" + b"\x00\x00" + struct.pack(">I", 0x10) + \
        b"\x00\x00\x00\x00" + struct.pack(">II", 1, 0)
    return bhs(0x43, flags, len(data), rest)


def scsi_cmd(cdb, edtl, read, dlen=0, itt=0x20, cmdsn=1):
    flags = 0x80 | (0x40 if read else 0x20) | 1
    h = bytearray(bhs(0x01, flags, dlen))
    struct.pack_into(">IIII", h, 16, itt, edtl, cmdsn, 1)
    h[32:32 + len(cdb)] = cdb
    return bytes(h)


read10 = bytes([0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0])
write10 = bytes([0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0])
for hd, dd in ((False, False), (True, False), (True, True)):
    seq = pdu(login_pdu(KV_LOGIN + b"AuthMethod=None\0", 0, 1, True), KV_LOGIN, hd, dd)
    seq += pdu(login_pdu(b"HeaderDigest=CRC32C,None\0MaxRecvDataSegmentLength=262144\0", 1, 3, True),
               b"HeaderDigest=CRC32C,None\0MaxRecvDataSegmentLength=262144\0", hd, dd)
    seq += pdu(scsi_cmd(read10, 4096, True), b"", hd, dd)
    seq += pdu(scsi_cmd(write10, 512, False, 512, 0x21, 2), bytes(range(256)) * 2, hd, dd)
    seq += pdu(bhs(0x00 | 0x40, 0x80, 0, b"\xff" * 11), b"", hd, dd)  # NOP-Out
    put("iscsi", "pdus-hd%d-dd%d" % (hd, dd), bytes([hd | dd << 1]) + seq)

put("iscsi", "login-none", b"\x40" + KV_LOGIN + b"AuthMethod=None\0\0" +
    b"HeaderDigest=None,CRC32C\0DataDigest=CRC32C\0InitialR2T=No\0ImmediateData=Yes\0"
    b"MaxBurstLength=16776192\0FirstBurstLength=65536\0MaxConnections=4\0"
    b"ErrorRecoveryLevel=0\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0"
    b"MaxOutstandingR2T=1\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0X-foo=bar\0\0")
put("iscsi", "login-chap", b"\x41" + KV_LOGIN + b"AuthMethod=CHAP,None\0\0CHAP_A=7,5\0\0"
    b"CHAP_N=user\0CHAP_R=0x" + b"00" * 32 + b"\0\0HeaderDigest=None\0\0")
put("iscsi", "login-mutual", b"\x43" + KV_LOGIN + b"AuthMethod=CHAP\0\0CHAP_A=5\0\0"
    b"CHAP_N=user\0CHAP_R=0x" + b"ab" * 16 + b"\0CHAP_I=7\0CHAP_C=0x" + b"11" * 16 + b"\0\0")
put("iscsi", "login-discovery", b"\x40InitiatorName=iqn.2010-11.libiscsi:fuzz\0"
    b"SessionType=Discovery\0AuthMethod=None\0\0MaxRecvDataSegmentLength=8192\0\0")

# ---- SCSI: byte 0 LU flags, 4 bytes expected length, 16-byte CDBs, data-out ----


def cdb(*b):
    return bytes(b) + bytes(16 - len(b))


def scsi(name, flags, length, cdbs, data=b""):
    put("scsi", name, bytes([flags]) + struct.pack(">I", length) + b"".join(cdbs) + data)


scsi("inquiry", 0, 255, [cdb(0x12, 0, 0, 0, 255), cdb(0x12, 1, 0x83, 0, 255),
                         cdb(0x12, 1, 0xb0, 0, 255), cdb(0x12, 1, 0xb2, 0, 255)])
scsi("capacity-modes", 2, 512, [cdb(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32),
                                cdb(0x25), cdb(0x1a, 0, 0x3f, 0, 255),
                                cdb(0x5a, 0, 0x08, 0, 0, 0, 0, 1, 0), cdb(0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0),
                                cdb(0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 2, 0), cdb(0x03, 0, 0, 0, 18),
                                cdb(0x00), cdb(0x35)])
scsi("read-write", 0, 4096, [cdb(0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0),
                             cdb(0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 8)], bytes(range(256)) * 16)
scsi("write-same-unmap", 2, 512, [cdb(0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0)], bytes(512))
scsi("unmap", 2, 24, [cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24)],
     struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 8, 64))
scsi("compare-and-write", 0, 1024, [cdb(0x89, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1)], bytes(1024))
scsi("verify-sync", 0, 512, [cdb(0x2f, 0x02, 0, 0, 0, 0, 0, 0, 1, 0),
                             cdb(0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0)], bytes(512))
scsi("reserve-pr", 0, 24, [cdb(0x16), cdb(0x17), cdb(0x5e, 0, 0, 0, 0, 0, 0, 0, 24),
                           cdb(0x5f, 0, 0, 0, 0, 0, 0, 0, 24)],
     struct.pack(">QQ", 0, 0x1234) + bytes(8))
scsi("lba-status", 2, 32, [cdb(0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32)])
scsi("readonly-write", 1, 512, [cdb(0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0)], bytes(512))
print("corpus written under", ROOT, file=sys.stderr)
