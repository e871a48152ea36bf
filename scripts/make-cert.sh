#!/usr/bin/env bash
# Makes a local certificate authority and a server certificate signed by it,
# for HTTPS on a LAN: `scripts/make-cert.sh [DIR] [NAME_OR_ADDRESS...]`.
# Names default to this machine's host name, localhost and its addresses.
# Writes DIR/ca.pem (trust this on phones and browsers), DIR/ca-key.pem
# (keep it private), DIR/cert.pem (chain: server, then CA) and DIR/key.pem.
# An existing CA in DIR is reused, so a renewed server certificate stays
# trusted. Needs openssl.
set -euo pipefail
dir=${1:-certs}
shift || true
mkdir -p "$dir"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    names=(localhost "$(hostname)" 127.0.0.1 ::1)
    for a in $(hostname -I 2>/dev/null || true); do names+=("$a"); done
fi
san=""
for n in "${names[@]}"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}
if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca-key.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days 3650 \
        -subj "/CN=mjpeg-fanout local CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 600 "$dir/ca-key.pem"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$tmp/key.pem" -out "$tmp/req.pem" -subj "/CN=${names[0]}" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' "$san" >"$tmp/ext"
openssl x509 -req -in "$tmp/req.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days 397 -extfile "$tmp/ext" \
    -out "$tmp/cert.pem" 2>/dev/null
cat "$tmp/cert.pem" "$dir/ca.pem" >"$tmp/chain.pem"
chmod 600 "$tmp/key.pem"
# Replaced by rename, so a gateway re-reading them never sees half a file.
mv "$tmp/chain.pem" "$dir/cert.pem"
mv "$tmp/key.pem" "$dir/key.pem"
echo "made $dir/cert.pem and $dir/key.pem for ${names[*]}; trust $dir/ca.pem"
