# A raw NBD client for the functional tests: it can speak the protocol
# properly, or break it on purpose. Standard library only.
import socket
import struct

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META, OPT_SET_META = 8, 9, 10
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WZ, CMD_BS = range(8)
FLAG_FUA = 1
REP_ACK = 1
REP_ERR_UNSUP = 0x80000001
REP_ERR_POLICY = 0x80000002
REP_ERR_INVALID = 0x80000003
REP_ERR_UNKNOWN = 0x80000006
REP_ERR_TOO_BIG = 0x80000009
EINVAL, ENOSPC, EPERM = 22, 28, 1


def connect(host, port, timeout=10):
    if host.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(host[5:])
    else:
        s = socket.create_connection((host, port), timeout=timeout)
    return s


def recvall(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("server closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


class Client:
    def __init__(self, host, port, timeout=10):
        self.s = connect(host, port, timeout)
        magic, opt, hflags = struct.unpack(">QQH", recvall(self.s, 18))
        assert magic == NBDMAGIC and opt == IHAVEOPT, (hex(magic), hex(opt))
        self.hflags = hflags
        self.structured = False
        self.cookie = 0

    def client_flags(self, flags=1):
        self.s.sendall(struct.pack(">I", flags))

    def send_opt(self, opt, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def read_rep(self):
        magic, opt, typ, ln = struct.unpack(">QIII", recvall(self.s, 20))
        assert magic == REPLY_MAGIC, hex(magic)
        return opt, typ, recvall(self.s, ln)

    def opt(self, opt, data=b""):
        """Send an option, return every reply up to ACK or an error."""
        self.send_opt(opt, data)
        reps = []
        while True:
            o, t, d = self.read_rep()
            assert o == opt, (o, opt)
            reps.append((t, d))
            if t == REP_ACK or t & 0x80000000:
                return reps

    def go(self, name=b"", structured=True, meta=False):
        if structured:
            assert self.opt(OPT_STRUCTURED_REPLY)[-1][0] == REP_ACK
            self.structured = True
        if meta:
            q = b"base:allocation"
            r = self.opt(OPT_SET_META, struct.pack(">I", len(name)) + name +
                         struct.pack(">II", 1, len(q)) + q)
            assert r[-1][0] == REP_ACK, r
        reps = self.opt(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, 3))
        assert reps[-1][0] == REP_ACK, reps
        for t, d in reps:
            if t == 3 and struct.unpack(">H", d[:2])[0] == 0:
                self.size, self.tflags = struct.unpack(">QH", d[2:12])
        return reps

    def send_req(self, cmd, off=0, ln=0, flags=0, data=b"", cookie=None, magic=REQ_MAGIC):
        if cookie is None:
            self.cookie += 1
            cookie = self.cookie
        self.s.sendall(struct.pack(">IHHQQI", magic, flags, cmd, cookie, off, ln) + data)
        return cookie

    def read_reply(self, read_len=0):
        """Returns (cookie, error, data) for one whole reply."""
        magic = struct.unpack(">I", recvall(self.s, 4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", recvall(self.s, 12))
            data = recvall(self.s, read_len) if read_len and not err else b""
            return cookie, err, data
        assert magic == STRUCT_MAGIC, hex(magic)
        data, err = b"", 0
        pieces = []             # READ: (offset, bytes), data and holes
        self.chunk_types = []
        while True:
            flags, typ, cookie, ln = struct.unpack(">HHQI", recvall(self.s, 16))
            payload = recvall(self.s, ln)
            self.chunk_types.append(typ)
            if typ == 1:
                pieces.append((struct.unpack(">Q", payload[:8])[0], payload[8:]))
            elif typ == 2:
                off, hl = struct.unpack(">QI", payload[:12])
                pieces.append((off, bytes(hl)))
            elif typ & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
            elif typ == 5:
                data += payload
            if flags & 1:
                # chunks may come in any order; they tile the range
                for _, b in sorted(pieces, key=lambda p: p[0]):
                    data += b
                return cookie, err, data
            magic = struct.unpack(">I", recvall(self.s, 4))[0]
            assert magic == STRUCT_MAGIC

    def cmd(self, cmd, off=0, ln=0, flags=0, data=b""):
        c = self.send_req(cmd, off, ln, flags, data)
        cookie, err, d = self.read_reply(ln if cmd == CMD_READ else 0)
        assert cookie == c, (cookie, c)
        return err, d

    def close(self):
        self.s.close()
