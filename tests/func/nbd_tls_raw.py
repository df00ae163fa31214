# Raw protocol checks of the NBD server's TLS (used by nbd_tls.sh):
#   python3 nbd_tls_raw.py PORT_REQUIRE_VERIFY PKI_DIR
import os, ssl, socket, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbd_raw import *

REP_ERR_TLS_REQD = 0x80000005
port, pki = int(sys.argv[1]), sys.argv[2]
name = b"m1"
info = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)


def tls_ctx(cert_dir):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki + "/ca-cert.pem")
    ctx.load_cert_chain(cert_dir + "/client-cert.pem", cert_dir + "/client-key.pem")
    return ctx


def expect_eof(c):
    try:
        d = c.s.recv(100)
    except (ConnectionResetError, ssl.SSLError):
        return
    assert d == b"", d


# Before TLS, under require: only STARTTLS and ABORT.
c = Client("127.0.0.1", port)
c.client_flags()
for o, d in ((OPT_LIST, b""), (OPT_INFO, info), (OPT_GO, info), (OPT_STRUCTURED_REPLY, b""),
             (OPT_LIST_META, b""), (99, b"")):
    r = c.opt(o, d)
    assert r[-1][0] == REP_ERR_TLS_REQD, (o, r)
r = c.opt(OPT_STARTTLS, b"x")
assert r[-1][0] == REP_ERR_INVALID, r
r = c.opt(OPT_STARTTLS)
assert r[-1][0] == REP_ACK, r
c.s = tls_ctx(pki + "/cli").wrap_socket(c.s, server_hostname="localhost")
r = c.opt(OPT_STARTTLS)
assert r[-1][0] == REP_ERR_INVALID, r      # TLS is on already
r = c.opt(OPT_LIST)
assert r[-1][0] == REP_ACK and any(b"m1" in d for t, d in r), r
c.go(name)
# Pipelined over TLS: 1 MiB writes, then 48 MiB of reads sent before any
# reply is read (the server's socket fills: records resume on EV_WRITE),
# interleaved with small reads that share records.
blob = bytes(range(256)) * 4096
base = 16 << 20         # clear of what nbd_tls.sh writes
for i in range(4):
    assert c.cmd(CMD_WRITE, base + (i << 20), 1 << 20, data=blob)[0] == 0
want = []
for k in range(48):
    want.append((c.send_req(CMD_READ, base + ((k % 4) << 20), 1 << 20), 1 << 20, 0))
    want.append((c.send_req(CMD_READ, base + 4096 * k, 512), 512, 4096 * k))
got = {}
for _ in want:
    cookie, err, d = c.read_reply()
    got[cookie] = (err, d)
for cookie, ln, off in want:
    err, d = got[cookie]
    assert err == 0 and len(d) == ln, (cookie, err, len(d))
    assert d == blob[off:off + ln], cookie
assert c.cmd(CMD_FLUSH)[0] == 0
c.send_req(CMD_DISC)
expect_eof(c)
print("pipelined TLS reads ok")

# EXPORT_NAME before TLS closes the connection.
c = Client("127.0.0.1", port)
c.client_flags()
c.send_opt(OPT_EXPORT_NAME, name)
expect_eof(c)

# ABORT before TLS is answered.
c = Client("127.0.0.1", port)
c.client_flags()
assert c.opt(OPT_ABORT)[-1][0] == REP_ACK
c.close()

# Garbage instead of a ClientHello: closed, server fine.
c = Client("127.0.0.1", port)
c.client_flags()
assert c.opt(OPT_STARTTLS)[-1][0] == REP_ACK
c.s.sendall(b"\x17\x03\x03\x00\x10" + b"x" * 16)     # application data first
expect_eof(c)

# A half handshake then a hangup: closed, server fine.
c = Client("127.0.0.1", port)
c.client_flags()
assert c.opt(OPT_STARTTLS)[-1][0] == REP_ACK
c.s.sendall(b"\x16\x03\x01\x02\x00\x01")
c.close()

# And a proper client still works.
c = Client("127.0.0.1", port)
c.client_flags()
assert c.opt(OPT_STARTTLS)[-1][0] == REP_ACK
c.s = tls_ctx(pki + "/cli").wrap_socket(c.s, server_hostname="localhost")
c.go(name, structured=False)
err, d = c.cmd(CMD_READ, base, 4096)
assert err == 0 and d == blob[:4096]
c.send_req(CMD_DISC)
print("ok")
