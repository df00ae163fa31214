#!/usr/bin/env bash
# NBD over TLS (x509 and PSK, STARTTLS) and export allow-lists, through the
# daemon and volctl, with real clients: qemu-img/qemu-io and nbdinfo.
. "$(dirname "$0")/lib.sh"

for t in certtool psktool nbdinfo qemu-io qemu-img; do
	command -v "$t" >/dev/null || { skip "nbd tls" "$t not installed"; t_done; }
done

# ---- credentials: a CA, a server and a client certificate; a rogue CA and
# a client certificate it signed; PSK keys.
PKI=$T_TMP/pki
mkdir -p "$PKI/srv" "$PKI/cli" "$PKI/bad" "$PKI/rogue"
cat >"$PKI/ca.info" <<E
cn = sand test CA
ca
cert_signing_key
expiration_days = 2
E
cat >"$PKI/srv.info" <<E
cn = localhost
dns_name = localhost
ip_address = 127.0.0.1
ip_address = ::1
tls_www_server
encryption_key
signing_key
expiration_days = 2
E
cat >"$PKI/cli.info" <<E
cn = sand test client
tls_www_client
encryption_key
signing_key
expiration_days = 2
E
mkcert() {	# mkcert KEY CERT INFO [CA_CERT CA_KEY]
	certtool --generate-privkey --key-type ecdsa --outfile "$1" 2>/dev/null || return 1
	if [ $# -eq 3 ]; then
		certtool --generate-self-signed --load-privkey "$1" --template "$3" \
			--outfile "$2" 2>/dev/null
	else
		certtool --generate-certificate --load-privkey "$1" --load-ca-certificate "$4" \
			--load-ca-privkey "$5" --template "$3" --outfile "$2" 2>/dev/null
	fi
}
pki() {
	mkcert "$PKI/ca-key.pem" "$PKI/ca-cert.pem" "$PKI/ca.info" &&
	mkcert "$PKI/srv/server-key.pem" "$PKI/srv/server-cert.pem" "$PKI/srv.info" \
		"$PKI/ca-cert.pem" "$PKI/ca-key.pem" &&
	mkcert "$PKI/cli/client-key.pem" "$PKI/cli/client-cert.pem" "$PKI/cli.info" \
		"$PKI/ca-cert.pem" "$PKI/ca-key.pem" &&
	cp "$PKI/ca-cert.pem" "$PKI/srv/" && cp "$PKI/ca-cert.pem" "$PKI/cli/" &&
	mkcert "$PKI/rogue/ca-key.pem" "$PKI/rogue/ca-cert.pem" "$PKI/ca.info" &&
	mkcert "$PKI/bad/client-key.pem" "$PKI/bad/client-cert.pem" "$PKI/cli.info" \
		"$PKI/rogue/ca-cert.pem" "$PKI/rogue/ca-key.pem" &&
	cp "$PKI/ca-cert.pem" "$PKI/bad/" &&
	mkdir -p "$PKI/nocert" && cp "$PKI/ca-cert.pem" "$PKI/nocert/" &&
	psktool -u alice -p "$PKI/keys.psk" >/dev/null 2>&1 &&
	psktool -u alice -p "$PKI/wrong.psk" >/dev/null 2>&1
}
check "certtool: CA, server and client certificates; psktool keys" pki
CERTS=$PKI/srv

sand_start --reactors 2 || { not_ok "daemon start"; t_done; }
ok "daemon started"
P1=$(free_port)		# x509, require, verify peer
P2=$(free_port)		# PSK, require
P3=$(free_port)		# x509, allow
check "disk add" volctl disk add m1 --backend mem --size 64M
check "disk add (allow-list)" volctl disk add m2 --backend mem --size 16M
check "export nbd m1" volctl export nbd m1
check "nbd listen --tls require --tls-cert --tls-verify-peer" \
	volctl nbd listen "127.0.0.1:$P1" --tls require --tls-cert "$CERTS" --tls-verify-peer
check "nbd listen --tls require --tls-psk" \
	volctl nbd listen "127.0.0.1:$P2" --tls require --tls-psk "$PKI/keys.psk"
check "nbd listen --tls allow --tls-cert" \
	volctl nbd listen "127.0.0.1:$P3" --tls allow --tls-cert "$CERTS"
check_fail "nbd listen: TLS without credentials" volctl nbd listen "127.0.0.1:0" --tls require
check_fail "nbd listen: both credentials" volctl nbd listen "127.0.0.1:0" \
	--tls-cert "$CERTS" --tls-psk "$PKI/keys.psk"
check_fail "nbd listen: a directory without certificates" \
	volctl nbd listen "127.0.0.1:0" --tls require --tls-cert "$PKI/rogue"
check_fail "nbd listen: --tls-verify-peer with PSK" \
	volctl nbd listen "127.0.0.1:0" --tls-psk "$PKI/keys.psk" --tls-verify-peer
check "nbd list" volctl nbd list
check_grep "nbd list shows tls" "require" "$T_TMP/check.out"
if grep -q "$(cut -d: -f2 "$PKI/keys.psk")" "$T_TMP/check.out" "$SAND_DIR/sand.json"; then
	not_ok "the PSK key is never shown nor saved"
else
	ok "the PSK key is never shown nor saved"
fi

QX="--object tls-creds-x509,id=tls0,endpoint=client,dir=$PKI/cli"
QP="--object tls-creds-psk,id=tls0,endpoint=client,dir=$PKI,username=alice"
# psk: qemu reads keys.psk in dir
nbdopts() { echo "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$1,export=m1,tls-creds=tls0"; }

# ---- x509 with client verification
check "qemu-io x509: write a pattern over TLS" timeout 60 qemu-io $QX \
	--image-opts "$(nbdopts "$P1")" -c 'write -P 0x3c 1M 4M' -c 'write -P 0xc3 40M 64k' -c flush
check "qemu-io x509: read it back over TLS" timeout 60 qemu-io $QX \
	--image-opts "$(nbdopts "$P1")" -c 'read -P 0x3c 1M 4M' -c 'read -P 0xc3 40M 64k'
check "qemu-img info x509" timeout 60 qemu-img info $QX --image-opts "$(nbdopts "$P1")"
check_grep "qemu-img sees 64 MiB" "virtual size: 64 MiB" "$T_TMP/check.out"
check "nbdinfo nbds:// with tls-certificates" timeout 30 nbdinfo --size \
	"nbds://127.0.0.1:$P1/m1?tls-certificates=$PKI/cli"
check_grep "nbdinfo size over TLS" "^67108864$" "$T_TMP/check.out"
check "nbdinfo --list over TLS" timeout 30 nbdinfo --list \
	"nbds://127.0.0.1:$P1/?tls-certificates=$PKI/cli"
check_grep "list shows m1 over TLS" "m1" "$T_TMP/check.out"
check_fail "plain client refused when TLS is required" timeout 30 nbdinfo --size \
	"nbd://127.0.0.1:$P1/m1"
check_grep "nbdinfo says the server requires TLS" "server requires TLS" "$T_TMP/check.out"
check_fail "plain qemu-io refused when TLS is required" timeout 30 qemu-io -f raw \
	"nbd://127.0.0.1:$P1/m1" -c 'read 0 4k'
check_fail "a client certificate from another CA is refused (verify peer)" timeout 30 \
	nbdinfo --size "nbds://127.0.0.1:$P1/m1?tls-certificates=$PKI/bad"
check_grep "... in the TLS handshake" "TLS|handshake|certificate|gnutls" "$T_TMP/check.out"
check_fail "a client without a certificate is refused (verify peer)" timeout 30 \
	nbdinfo --size "nbds://127.0.0.1:$P1/m1?tls-certificates=$PKI/nocert"
check_grep "... in the TLS handshake" "TLS|handshake|certificate|gnutls" "$T_TMP/check.out"
check "a correct client still gets in after those" timeout 30 nbdinfo --size \
	"nbds://127.0.0.1:$P1/m1?tls-certificates=$PKI/cli"

check "raw: TLS_REQD before TLS, STARTTLS rules, pipelined reads over TLS, bad handshakes" \
	timeout 120 python3 "$(dirname "$0")/nbd_tls_raw.py" "$P1" "$PKI"
check "nbdinfo still works after the bad handshakes" timeout 30 nbdinfo --size \
	"nbds://127.0.0.1:$P1/m1?tls-certificates=$PKI/cli"

# ---- PSK
check "qemu-io PSK: read the x509-written data" timeout 60 qemu-io $QP \
	--image-opts "$(nbdopts "$P2")" -c 'read -P 0x3c 1M 4M' -c 'write -P 0x77 8M 1M'
check "nbdinfo PSK: tls-psk-file" timeout 30 nbdinfo --size \
	"nbds://alice@127.0.0.1:$P2/m1?tls-psk-file=$PKI/keys.psk"
check_fail "a wrong PSK is refused" timeout 30 nbdinfo --size \
	"nbds://alice@127.0.0.1:$P2/m1?tls-psk-file=$PKI/wrong.psk"
check_grep "... in the TLS handshake" "TLS|handshake|gnutls|decrypt|MAC" "$T_TMP/check.out"
check_fail "plain client refused on the PSK listener" timeout 30 nbdinfo --size \
	"nbd://127.0.0.1:$P2/m1"
check "nbdcopy over TLS-PSK, 64 MiB out" timeout 120 nbdcopy \
	"nbds://alice@127.0.0.1:$P2/m1?tls-psk-file=$PKI/keys.psk" "$T_TMP/copy.raw"
check "the copy has what was written" python3 -c '
import sys
d = open(sys.argv[1], "rb").read()
assert d[1 << 20:5 << 20] == b"\x3c" * (4 << 20)
assert d[8 << 20:9 << 20] == b"\x77" * (1 << 20)
assert d[40 << 20:(40 << 20) + 65536] == b"\xc3" * 65536' "$T_TMP/copy.raw"
head -c 8M /dev/urandom >"$T_TMP/rand.raw"
check "nbdcopy 8 MiB of random data in over TLS-PSK" timeout 120 nbdcopy \
	"$T_TMP/rand.raw" "nbds://alice@127.0.0.1:$P2/m1?tls-psk-file=$PKI/keys.psk"
check "... and back out over TLS x509" timeout 120 nbdcopy \
	"nbds://127.0.0.1:$P1/m1?tls-certificates=$PKI/cli" "$T_TMP/back.raw"
check "random data round-trips over TLS" cmp -n 8388608 "$T_TMP/rand.raw" "$T_TMP/back.raw"

# ---- allow: both
check "allow: plain client works" timeout 30 nbdinfo --size "nbd://127.0.0.1:$P3/m1"
check "allow: TLS client works" timeout 30 nbdinfo --size \
	"nbds://127.0.0.1:$P3/m1?tls-certificates=$PKI/cli"
check "allow: qemu-io over TLS" timeout 60 qemu-io $QX --image-opts "$(nbdopts "$P3")" \
	-c 'read -P 0x77 8M 1M'

# ---- allow-lists
P4=$(free_port)
check "nbd listen plain" volctl nbd listen "127.0.0.1:$P4"
check "export nbd --allow (excludes 127.0.0.1)" volctl export nbd m2 --name deny \
	--allow 10.0.0.0/8 --allow fd00::/8
check_fail "export nbd --allow with a bad CIDR" volctl export nbd m2 --name x --allow 10.0.0.0/33
check_fail "export nbd --allow garbage" volctl export nbd m2 --name x --allow nonsense
check_fail "a client outside the allow-list is refused" timeout 30 nbdinfo --size \
	"nbd://127.0.0.1:$P4/deny"
check_grep "refused by policy" "[Pp]olicy|not allowed|permission" "$T_TMP/check.out"
check "list from outside the allow-list" timeout 30 nbdinfo --list --json "nbd://127.0.0.1:$P4/"
if grep -q '"deny"' "$T_TMP/check.out"; then not_ok "denied export hidden from LIST"; else
	ok "denied export hidden from LIST"; fi
check "export list shows the allow-list" volctl --json export list
check_grep "allow-list in export list" "10.0.0.0/8" "$T_TMP/check.out"
check "unexport deny" volctl unexport nbd deny
check "export nbd --allow 127.0.0.0/8" volctl export nbd m2 --name lo --allow 10.0.0.0/8 \
	--allow 127.0.0.0/8
check "a client inside the allow-list is admitted" timeout 30 nbdinfo --size \
	"nbd://127.0.0.1:$P4/lo"
check "allowed export listed" timeout 30 nbdinfo --list --json "nbd://127.0.0.1:$P4/"
check_grep "lo is listed" '"lo"' "$T_TMP/check.out"
check "allow-list over TLS" timeout 30 nbdinfo --size \
	"nbds://127.0.0.1:$P1/lo?tls-certificates=$PKI/cli"
if python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
	P6=$(free_port)
	check "nbd listen [::1]" volctl nbd listen "[::1]:$P6"
	check "export nbd --allow ::1/128" volctl export nbd m2 --name v6 --allow ::1/128
	check "::1 admitted by ::1/128" timeout 30 nbdinfo --size "nbd://[::1]:$P6/v6"
	check_fail "127.0.0.1 refused by ::1/128" timeout 30 nbdinfo --size "nbd://127.0.0.1:$P4/v6"
	check_fail "::1 refused by 127.0.0.0/8" timeout 30 nbdinfo --size "nbd://[::1]:$P6/lo"
	check "unexport v6" volctl unexport nbd v6
else
	skip "IPv6 allow-lists" "no ::1 here"
fi

# ---- restart: TLS listeners and allow-lists come back
check "daemon stops cleanly (leak-free)" sand_stop
check_grep "state keeps tls_cert" '"tls_cert"' "$SAND_DIR/sand.json"
check_grep "state keeps allow" '"allow"' "$SAND_DIR/sand.json"
sand_start --reactors 2 || { not_ok "daemon restart"; t_done; }
ok "daemon restarted"
check "x509 listener restored" wait_for timeout 10 nbdinfo --size \
	"nbds://127.0.0.1:$P1/m1?tls-certificates=$PKI/cli"
check_fail "... still requiring TLS" timeout 30 nbdinfo --size "nbd://127.0.0.1:$P1/m1"
check "PSK listener restored" timeout 30 nbdinfo --size \
	"nbds://alice@127.0.0.1:$P2/m1?tls-psk-file=$PKI/keys.psk"
check "allow-list restored" volctl --json export list
check_grep "lo keeps its allow-list" "127.0.0.0/8" "$T_TMP/check.out"
check "nbd unlisten a TLS listener" volctl nbd unlisten "127.0.0.1:$P2"
check "daemon stops cleanly again" sand_stop

# ---- the same on the epoll loop (the default is io_uring where it works)
sand_start --reactors 2 --loop epoll --debug nbd || { not_ok "daemon start (epoll)"; t_done; }
ok "daemon started (epoll)"
check "raw TLS checks (epoll)" timeout 120 python3 "$(dirname "$0")/nbd_tls_raw.py" "$P1" "$PKI"
check "qemu-io x509 (epoll)" timeout 60 qemu-io $QX --image-opts "$(nbdopts "$P1")" \
	-c 'write -P 0x42 2M 3M' -c 'read -P 0x42 2M 3M'
check_grep "AES-GCM is chosen over the clients' CHACHA20" "tls on: \(TLS1\.[23]\).*\(AES-(128|256)-GCM\)$" \
	"$SAND_LOG"
check "daemon stops cleanly (epoll)" sand_stop
t_done
