//! The POSIX sh script `airgap probe --script` prints: the same facts as [`crate::probe`],
//! and the same code, on a machine with nothing but a shell and the base system (`uname`,
//! `awk`, `tr`, `df`, `ldconfig` or the libraries' dirs). A person types or pastes it; no
//! Python, no airgap.
//!
//! Each fact is read as the Rust probe reads it: the cache and default dirs of the loader for
//! libraries, the strings of libstdc++.so.6 and libgcc_s.so.1 for their highest versions,
//! `/proc/cpuinfo` flags for the CPU level, `/proc/self/mountinfo` for `noexec`, the same
//! Python statement ([`crate::PYTHON_SNIPPET`]) for each interpreter on `PATH`. The code is
//! packed by the same rules as [`crate::code`] (bits, Crockford base32, check symbols).

use crate::catalog::{catalog, CATALOG};
use crate::PYTHON_SNIPPET;

const TEMPLATE: &str = r#"#!/bin/sh
# airgap target probe (code format 1, catalog @CATVER@): sh probe.sh [DEST]
dest=${1:-${DEST:-}}
libdirs="/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib /usr/lib"
cache=$( (/sbin/ldconfig -p || /usr/sbin/ldconfig -p || ldconfig -p) 2>/dev/null)
lib() { p=$(printf '%s\n' "$cache" | awk -v n="$1" '$1 == n && /x86-64/ { print $NF; exit }')
  [ -z "$p" ] && for d in $libdirs; do [ -e "$d/$1" ] && { p=$d/$1; break; }; done; printf '%s' "$p"; }
maxver() { [ -f "$2" ] && tr -c 'A-Za-z0-9._' '\n' < "$2" | awk -v p="$1" '
  function newer(a, b,  x, y, i, n, m) { n = split(a, x, "."); m = split(b, y, ".")
    for (i = 1; i <= (n > m ? n : m); i++) if (x[i] + 0 != y[i] + 0) return x[i] + 0 > y[i] + 0; return 0 }
  $0 ~ "^" p "_[0-9][0-9.]*$" { v = substr($0, length(p) + 2); if (b == "" || newer(v, b)) b = v } END { print b }'; }
place() { d=$1; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done; d=$(cd -- "$d" && pwd -P) || return
  ne=$(awk -v p="$d" '{ m = $5; gsub(/\\040/, " ", m); if (m == "/" || p == m || index(p, m "/") == 1)
    if (length(m) >= l) { l = length(m); n = ($6 ~ /(^|,)noexec(,|$)/) ? 2 : 1 } } END { print n + 0 }' /proc/self/mountinfo 2>/dev/null)
  fr=$(df -Pk -- "$d" 2>/dev/null | awk 'NR == 2 { print int($4 / 1024) }'); echo "${ne:-0} ${fr:--1}"; }
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
[ -z "$glibc" ] && glibc=$(tr -c 'A-Za-z0-9. ' '\n' < "$(lib libc.so.6)" | sed -n 's/.*release version \([0-9.]*[0-9]\).*/\1/p' | head -n 1)
stdcxx=$(lib libstdc++.so.6); gccs=$(lib libgcc_s.so.1); cuda=$(lib libcuda.so.1); drv=
if [ -n "$cuda" ]; then r=$(readlink -f "$cuda"); case ${r##*/} in libcuda.so.[0-9]*.*) drv=${r##*/libcuda.so.};; esac; fi
[ -z "$drv" ] && [ -r /proc/driver/nvidia/version ] && drv=$(awk '/^NVRM version/ { sub(/.*Kernel Module[ \t]+/, ""); print $1; exit }' /proc/driver/nvidia/version)
pys=$(IFS=:; for d in $PATH; do for f in "$d"/python "$d"/python[0-9] "$d"/python[0-9].[0-9]*; do
  case ${f##*/} in python[0-9].*[!0-9]*) continue;; esac; [ -f "$f" ] && [ -x "$f" ] || continue
  "$f" -I -S -c "@SNIPPET@" 2>/dev/null; done; done | sort -u | sort -k1,1n -k2,2n -k3,3n -k4,4 -k5,5 | tr '\n' ';')
bits=; for n in @CATALOG@; do [ -n "$(lib "$n")" ] && bits=${bits}1 || bits=${bits}0; done
awk -v arch="$(uname -m)" -v kernel="$(uname -r)" -v flags="$(awk -F: '/^flags/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)" \
 -v glibc="$glibc" -v cxx="$(maxver GLIBCXX "$stdcxx")" -v abi="$(maxver CXXABI "$stdcxx")" -v gcc="$(maxver GCC "$gccs")" \
 -v drv="$drv" -v tmp="$(place "${TMPDIR:-/tmp}")" -v dst="$([ -n "$dest" ] && place "$dest")" -v pys="$pys" -v bits="$bits" '
function put(v, n,  s, i) { s = ""; for (i = 0; i < n; i++) { s = (v % 2) s; v = int(v / 2) } B = B s }
function lead(s) { return match(s, /^[0-9]+/) ? substr(s, 1, RLENGTH) + 0 : -1 }
function tail(v, p) { if (v == p) return 0; if (index(v, p ".") != 1) return -1; v = substr(v, length(p) + 2)
  return v ~ /^[0-9]+$/ ? v + 0 : -1 }
function has(f,  a, n, i) { n = split(f, a, " "); for (i = 1; i <= n; i++) if (index(F, " " a[i] " ") == 0) return 0; return 1 }
function place(s,  a, k, x) { split(s, a, " "); put(a[1] + 0, 2); k = 0; if (a[2] != "" && a[2] >= 0) { x = a[2] + 1; while (x >= 1) { k++; x = int(x / 2) } }
  put(k > 63 ? 63 : k, 6); print "  noexec: " (a[1] == 2 ? "yes" : a[1] == 1 ? "no" : "?") ", free MiB: " (a[2] == "" || a[2] < 0 ? "?" : a[2]) }
BEGIN { F = " " flags " "; put(1, 4); put(@CATVER@, 4)
  n = split("x86_64 aarch64 ppc64le s390x i686", A, " "); c = 0; for (i = 1; i <= n; i++) if (A[i] == arch) c = i; put(c, 3)
  lv = 0; if (has("lm cmov cx8 fpu fxsr mmx sse sse2")) { lv = 1; if (has("cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3")) { lv = 2
    if (has("avx avx2 bmi1 bmi2 f16c fma abm movbe xsave")) { lv = 3; if (has("avx512f avx512bw avx512cd avx512dq avx512vl")) lv = 4 } } }
  put(lv, 3); split(kernel, K, /[.+_-]/); a = lead(K[1]); b = (K[1] ~ /^[0-9]+$/) ? lead(K[2]) : 0; if (b < 0) b = 0
  if (a < 0 || a > 63 || b > 255) { a = 0; b = 0 }; put(a, 6); put(b, 8)
  g = tail(glibc, "2"); put(g >= 1 && g < 128 ? g : 0, 7); x = tail(cxx, "3.4"); put(x >= 0 && x < 63 ? x + 1 : 0, 6)
  x = tail(abi, "1.3"); put(x >= 0 && x < 31 ? x + 1 : 0, 5)
  n = split(gcc, G, "."); for (i = n + 1; i <= 3; i++) G[i] = 0; ok = n > 0 && n <= 3
  for (i = 1; i <= 3; i++) if (G[i] !~ /^[0-9]+$/) ok = 0; if (!(ok && G[1] >= 1 && G[1] < 32 && G[2] < 16 && G[3] < 8)) { G[1] = G[2] = G[3] = 0 }
  put(G[1], 5); put(G[2], 4); put(G[3], 3)
  n = split(drv, D, "."); if (drv ~ /^[0-9]+\.[0-9]+(\.[0-9]+)?$/ && D[1] < 1024 && D[2] < 256 && (n < 3 || D[3] < 128)) {
    put(1, 1); put(D[1], 10); put(D[2], 8); put(n == 3, 1); put(n == 3 ? D[3] : 0, 7) } else put(0, 1)
  print "arch: " arch "\nkernel: " kernel "\nx86-64 level: v" lv "\nglibc: " glibc "\nGLIBCXX: " cxx "\nCXXABI: " abi "\nGCC: " gcc "\nNVIDIA driver: " (drv == "" ? "none" : drv)
  print "TMPDIR:"; place(tmp); if (dst != "") { print "DEST:"; place(dst) } else { put(0, 8) }
  m = split(pys, P, ";"); c = 0; for (i = 1; i <= m; i++) { split(P[i], Q, " "); if ((Q[4] == "cpython" || Q[4] == "pypy") && (Q[1] == 2 || Q[1] == 3) && Q[2] < 64 && Q[3] < 64) R[++c] = P[i] }
  s = c > 7 ? c - 7 : 0; put(c - s, 3); for (i = s + 1; i <= c; i++) { split(R[i], Q, " "); print "python: " Q[1] "." Q[2] "." Q[3] " " Q[4] " " Q[5]
    f = 0; if (Q[4] == "cpython") { if (index(Q[5], "t")) f += 4; if (index(Q[5], "d")) f += 2; if (index(Q[5], "m")) f += 1 }
    put(Q[4] == "pypy", 2); put(Q[1], 2); put(Q[2], 6); put(Q[3], 6); put(f, 3) }
  print "libraries (catalog @CATVER@): " bits; B = B bits; while (length(B) % 5) B = B "0"
  al = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; sum = 0; out = ""
  for (i = 0; i < length(B) / 5; i++) { v = 0; for (j = 1; j <= 5; j++) v = v * 2 + substr(B, i * 5 + j, 1); sum = (sum + (i + 1) * v) % 1021; out = out substr(al, v + 1, 1) }
  out = out substr(al, int(sum / 32) + 1, 1) substr(al, sum % 32 + 1, 1); code = ""
  for (i = 1; i <= length(out); i += 4) code = code (i > 1 ? "-" : "") substr(out, i, 4); print "code: " code }'
"#;

/// The script, for the current catalog.
pub fn script() -> String {
    let names = catalog(CATALOG).unwrap_or_default().join(" ");
    TEMPLATE
        .replace("@CATVER@", &CATALOG.to_string())
        .replace("@CATALOG@", &names)
        .replace("@SNIPPET@", PYTHON_SNIPPET)
}
