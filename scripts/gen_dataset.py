#!/usr/bin/env python3
"""Generate a benchmark dataset in the SMS reputation CSV import format.

Usage:
    python3 scripts/gen_dataset.py --count 1000000 --seed 1 --out /tmp/rep-1m.csv
    python3 scripts/gen_dataset.py --count 100000 --kind ipv4 --plain --out /tmp/ipv4.txt

Mix (default --kind mixed), in exact proportions per block of 10 lines, shuffled inside each block:
40% IPv4 addresses, 10% IPv4 CIDRs (/16-/30), 10% IPv6 (addresses and /48-/64 prefixes),
20% domain names, 10% URLs, 10% hashes (half SHA-1, half SHA-256).

Every entry is distinct in canonical form (lower case, compressed IPv6, host bits cleared). Uniqueness
is by construction, not by a set: the n-th value of each kind is derived from n through a bijection
(a seeded permutation of a fixed-width integer domain), and the value's text encodes that integer in
a way that can be read back, so two different n never give the same text. Memory use is constant.

Each line carries 3-5 tags: always `Trend Micro Detection Category` and `Trend Micro Severity`, plus
1-3 of Publisher, Source, Scan Action, Suspicious Object Source and Reputation Entries TTL. With
--plain only the address is written. Output is deterministic for a given --seed.
"""

import argparse
import random
import sys

KINDS = ("mixed", "ipv4", "ipv6", "domain", "url", "hash", "sha1", "sha256")
# Internal kinds written for one block of ten lines of each --kind.
BLOCKS = {
    "mixed": ["v4"] * 4 + ["cidr4", "v6", "dom", "dom", "url", "hash"],
    "ipv4": ["v4"] * 8 + ["cidr4"] * 2,
    "ipv6": ["v6"] * 10,
    "domain": ["dom"] * 10,
    "url": ["url"] * 10,
    "hash": ["hash"] * 10,
    "sha1": ["sha1"] * 10,
    "sha256": ["sha256"] * 10,
}


class Perm:
    """A seeded bijection on the integers [0, 2**bits).

    Each step (add, multiply by an odd constant, xor with a right shift of itself) is invertible
    modulo 2**bits, so the composition is a permutation; the mixing makes consecutive inputs look
    unrelated.
    """

    def __init__(self, bits, rng):
        self.bits = bits
        self.mask = (1 << bits) - 1
        self.a1 = rng.getrandbits(bits) | 1
        self.a2 = rng.getrandbits(bits) | 1
        self.b = rng.getrandbits(bits)
        self.s1 = max(1, bits // 2)
        self.s2 = max(1, bits // 3)

    def __call__(self, x):
        m = self.mask
        x = (x * self.a1 + self.b) & m
        x ^= x >> self.s1
        x = (x * self.a2) & m
        x ^= x >> self.s2
        return x


# --------------------------------------------------------------------------------------- IPv4
# First octets never used: 0/8, 10/8, 100/8 (CGNAT), 127/8, 169/8 (link local), 172/8, 192/8
# (private and documentation), 198/8 (benchmark and documentation), 203/8, multicast and above.
_V4_SKIP = {0, 10, 100, 127, 169, 172, 192, 198, 203} | set(range(224, 256))
V4_OK = [i not in _V4_SKIP for i in range(256)]
V4_VALID = [i for i in range(256) if V4_OK[i]]
V4_OCTETS = len(V4_VALID)


class Ipv4Gen:
    """IPv4 addresses. The counter n is first mapped to the n-th public address (first octet from
    V4_VALID, then the low 24 bits); a permutation of 2**32, cycle-walked until the first octet is
    public again, then scrambles it. Cycle-walking a permutation from inside the public set is a
    bijection of the public set, so distinct n give distinct addresses."""

    def __init__(self, rng):
        self.perm = Perm(32, rng)
        self.n = 0

    def next(self):
        if self.n >= V4_OCTETS << 24:
            raise OverflowError("too many IPv4 addresses requested")
        p = self.perm
        x = p((V4_VALID[self.n >> 24] << 24) | (self.n & 0xFFFFFF))
        while not V4_OK[x >> 24]:
            x = p(x)
        self.n += 1
        return "%d.%d.%d.%d" % (x >> 24, (x >> 16) & 255, (x >> 8) & 255, x & 255)


class Cidr4Gen:
    """IPv4 networks /16-/30, host bits cleared.

    Each prefix length has its own counter, mapped to the n-th public network number and then
    scrambled by a permutation of the 2**len network numbers, cycle-walked back to a public
    first octet (a bijection of the public networks, as for addresses); a length that runs out of networks hands its turn
    to the next one. Distinct (length, network) pairs give distinct texts.
    """

    # Weighted schedule of prefix lengths, mostly /24.
    SCHEDULE = [24] * 12 + [16, 17, 18, 19, 20, 20, 21, 22, 22, 23, 23, 25, 26, 27, 28, 28, 29, 30]

    def __init__(self, rng):
        self.perms = {p: Perm(p, rng) for p in range(16, 31)}
        self.used = {p: 0 for p in range(16, 31)}
        self.i = 0

    def next(self):
        p = self.SCHEDULE[self.i % len(self.SCHEDULE)]
        self.i += 1
        for _ in range(15):
            cap = V4_OCTETS << (p - 8)
            if self.used[p] < cap:
                break
            p = 16 + (p - 15) % 15
        else:
            raise OverflowError("too many IPv4 CIDRs requested")
        perm = self.perms[p]
        shift = p - 8
        n = self.used[p]
        x = perm((V4_VALID[n >> shift] << shift) | (n & ((1 << shift) - 1)))
        while not V4_OK[x >> shift]:
            x = perm(x)
        self.used[p] += 1
        net = x << (32 - p)
        return "%d.%d.%d.%d/%d" % (net >> 24, (net >> 16) & 255, (net >> 8) & 255, net & 255, p)


# --------------------------------------------------------------------------------------- IPv6
# 32 global /32 prefixes of the kind seen in threat feeds (hosting and access networks).
V6_PREFIXES = [
    (int(a, 16) << 16) | int(b, 16) for a, b in (p.split(":") for p in (
        "2a01:4f8", "2a01:4f9", "2604:a880", "2a03:b0c0", "2001:19f0", "2a05:d014", "2600:3c00",
        "2a02:c207", "2a0e:97c0", "2a06:98c1", "2406:da18", "2402:800", "2a10:cc42", "2605:6400",
        "2a0b:4140", "2a0d:5600", "2001:bc8", "2a00:1450", "2607:1700", "2404:9800", "2a0c:9a40",
        "2a09:4e80", "2a07:e00", "2a0f:7800", "2804:0", "2a0e:b100", "2001:470", "2a02:e00",
        "2600:1f18", "2a01:cb00", "2408:2200", "2c0f:2a00"))
]
assert len(V6_PREFIXES) == 32


def _v6_text(hi, lo, plen=None):
    """Compressed lower-case text of the address (hi << 64 | lo), optionally with /plen."""
    groups = [(hi >> 48) & 0xFFFF, (hi >> 32) & 0xFFFF, (hi >> 16) & 0xFFFF, hi & 0xFFFF,
              (lo >> 48) & 0xFFFF, (lo >> 32) & 0xFFFF, (lo >> 16) & 0xFFFF, lo & 0xFFFF]
    # Longest run of zero groups (length >= 2, leftmost on ties) becomes "::" (RFC 5952).
    best_at, best_len, at, run = -1, 1, 0, 0
    for i, g in enumerate(groups):
        if g == 0:
            if run == 0:
                at = i
            run += 1
            if run > best_len:
                best_at, best_len = at, run
        else:
            run = 0
    if best_at < 0:
        s = ":".join("%x" % g for g in groups)
    else:
        s = (":".join("%x" % g for g in groups[:best_at]) + "::"
             + ":".join("%x" % g for g in groups[best_at + best_len:]))
    return s if plen is None else "%s/%d" % (s, plen)


class Ipv6Gen:
    """IPv6: 60% addresses, 40% prefixes /48-/64 (host bits zero).

    Addresses: the n-th one takes the (/32, next 32 bits) pair from a permutation of 2**37
    (5 bits pick one of 32 prefixes), so every address lies in its own /64; the interface id
    is free and looks like ::1-style, EUI-64-ish or random. Prefixes: a counter and permutation
    of 2**(5 + len - 32) per length. Distinct (kind, length, bits) pairs give distinct texts.
    """

    PLENS = [48, 48, 48, 52, 56, 56, 56, 60, 64, 64]

    def __init__(self, rng):
        self.rng = rng
        self.addr_perm = Perm(37, rng)
        self.net_perms = {p: Perm(5 + p - 32, rng) for p in range(48, 65)}
        self.used = {p: 0 for p in range(48, 65)}
        self.n_addr = 0
        self.n_net = 0
        self.i = 0

    def next(self):
        self.i += 1
        rng = self.rng
        if self.i % 5 < 3:
            x = self.addr_perm(self.n_addr)
            self.n_addr += 1
            hi = (V6_PREFIXES[x >> 32] << 32) | (x & 0xFFFFFFFF)
            r = rng.random()
            if r < 0.4:
                lo = rng.randint(1, 0x3FF)
            elif r < 0.55:
                lo = (rng.getrandbits(24) << 40) | 0xFFFE000000 | rng.getrandbits(24)
            else:
                lo = rng.getrandbits(64) | 1
            return _v6_text(hi, lo)
        self.n_net += 1
        p = self.PLENS[self.n_net % len(self.PLENS)]
        x = self.net_perms[p](self.used[p])
        self.used[p] += 1
        bits = p - 32
        hi = (V6_PREFIXES[x >> bits] << 32) | ((x & ((1 << bits) - 1)) << (64 - p))
        return _v6_text(hi, 0, p)


# -------------------------------------------------------------------------------------- names
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
# All syllables are consonant+vowel, two letters: a string of them splits back unambiguously.
SYLLABLES = [c + v for c in CONSONANTS for v in VOWELS]
NSYL = len(SYLLABLES)
WORDS = ["shop", "cloud", "mail", "pay", "cdn", "login", "secure", "app", "online", "update", "soft",
         "net", "web", "host", "data", "files", "media", "tech", "group", "store", "bank", "auth",
         "portal", "support", "service", "verify", "docs", "drive", "sync", "track", "link", "go"]
SUBLABELS = ["www", "mail", "cdn", "api", "login", "m", "static", "dl", "ns1", "update", "secure",
             "portal", "app", "files", "img", "panel", "gw", "edge", "auth", "my", "account", "web"]
TLDS = ["com"] * 8 + ["net"] * 3 + ["org"] * 2 + [
    "info", "biz", "xyz", "top", "online", "site", "ru", "cn", "io", "co", "me", "club", "shop",
    "live", "icu", "de", "br", "in", "pw", "cc", "su", "tk", "vip", "work", "fun", "space"]


def _syllabic(u):
    """Bijective base-NSYL numeral of u >= 0 written with syllables (u=0 -> one syllable)."""
    out = []
    u += 1
    while u:
        u, d = divmod(u - 1, NSYL)
        out.append(SYLLABLES[d])
    return "".join(out)


class DomainGen:
    """Domains of 2-4 labels. The registered label (second from the right) is

        syllabic(perm(n)) [+ one consonant] [+ "-" + word]

    and can be read back to perm(n): cut at "-", drop a trailing consonant if the length is odd.
    So it is unique per n, and so is the whole name whatever TLD or sub-labels surround it.
    """

    def __init__(self, rng, total):
        self.rng = rng
        bits = max(16, (max(total, 1) * 4).bit_length())
        self.perm = Perm(bits, rng)
        self.n = 0

    def registered(self):
        """Unique registered label (without TLD)."""
        rng = self.rng
        label = _syllabic(self.perm(self.n))
        self.n += 1
        r = rng.random()
        if r < 0.3:
            label += CONSONANTS[rng.randrange(len(CONSONANTS))]
        if 0.15 < r < 0.45:
            label += "-" + WORDS[rng.randrange(len(WORDS))]
        return label

    def next(self):
        rng = self.rng
        labels = [self.registered(), TLDS[rng.randrange(len(TLDS))]]
        r = rng.random()
        if r < 0.5:
            labels.insert(0, SUBLABELS[rng.randrange(len(SUBLABELS))])
            if r < 0.15:
                labels.insert(0, _syllabic(rng.getrandbits(12)))
        return ".".join(labels)


def free_domain(rng):
    """A random (not necessarily unique) host name for URLs."""
    labels = [_syllabic(rng.getrandbits(20)), TLDS[rng.randrange(len(TLDS))]]
    if rng.random() < 0.4:
        labels.insert(0, SUBLABELS[rng.randrange(len(SUBLABELS))])
    return ".".join(labels)


B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
PATH_WORDS = ["wp-content", "wp-includes", "uploads", "admin", "images", "js", "css", "files",
              "download", "dl", "gate", "panel", "api", "v1", "v2", "update", "bin", "tmp", "inc",
              "docs", "invoice", "shared", "cgi-bin", "static", "plugins", "themes", "2027", "03"]
EXTS = [".php", ".php", ".exe", ".zip", ".js", ".html", ".bin", ".dll", ".doc", ""]


class UrlGen:
    """URLs scheme://host/seg[/seg[/seg]][?q=...]. The last path segment starts with an 8-character
    base-36 token of perm(n) (perm over 2**41 < 36**8); no other part contains '/' after the path
    starts, and the query holds no '/', so the token, and hence the URL, is unique per n.
    """

    def __init__(self, rng):
        self.rng = rng
        self.perm = Perm(41, rng)
        self.n = 0

    def next(self):
        rng = self.rng
        x = self.perm(self.n)
        self.n += 1
        tok = []
        for _ in range(8):
            x, d = divmod(x, 36)
            tok.append(B36[d])
        host = free_domain(rng) if rng.random() < 0.9 else "%d.%d.%d.%d" % (
            rng.randint(11, 99), rng.randrange(256), rng.randrange(256), rng.randint(1, 254))
        nseg = rng.randint(1, 3)
        segs = [PATH_WORDS[rng.randrange(len(PATH_WORDS))] for _ in range(nseg - 1)]
        segs.append("".join(tok) + EXTS[rng.randrange(len(EXTS))])
        url = ("https://" if rng.random() < 0.6 else "http://") + host + "/" + "/".join(segs)
        if rng.random() < 0.2:
            url += "?q=" + _syllabic(rng.getrandbits(16))
        return url


class HashGen:
    """Hex of a permutation of 2**160 (SHA-1) or 2**256 (SHA-256): unique per n and per length."""

    def __init__(self, rng):
        self.p1 = Perm(160, rng)
        self.p256 = Perm(256, rng)
        self.n1 = 0
        self.n256 = 0
        self.i = 0

    def sha1(self):
        self.n1 += 1
        return "%040x" % self.p1(self.n1 - 1)

    def sha256(self):
        self.n256 += 1
        return "%064x" % self.p256(self.n256 - 1)

    def next(self):
        self.i += 1
        return self.sha1() if self.i & 1 else self.sha256()


# --------------------------------------------------------------------------------------- tags
PUBLISHERS = [
    # publisher, possible sources, is Vision One (may carry SOS / scan action)
    ("Trend Vision One Threat Intelligence", ["Trend Vision One Threat Intelligence"], True),
    ("Trend Vision One Threat Intelligence", ["Trend Vision One Threat Intelligence"], True),
    ("Deep Discovery Director", ["ddd01.corp.example", "ddd02.corp.example"], False),
    ("Deep Discovery Analyzer", ["ddan01.lab.example", "ddan02.lab.example"], False),
    ("Deep Discovery Inspector", ["ddi-edge03.corp.example", "ddi-dc1.corp.example"], False),
    ("Apex Central", ["apexcentral.corp.example"], False),
]
SEVERITIES = [",Trend Micro Severity,High"] * 3 + [",Trend Micro Severity,Medium"] * 4 + \
    [",Trend Micro Severity,Low"] * 3
DETECTIONS = [",Trend Micro Detection Category,Suspicious Object"] * 3 + \
    [",Trend Micro Detection Category,C&C Callback Address"] * 2
DET_SO = ",Trend Micro Detection Category,Suspicious Object"
SOS_VALUES = [",Trend Micro Suspicious Object Source,UDSO",
              ",Trend Micro Suspicious Object Source,VASO",
              ",Trend Micro Suspicious Object Source,VASO"]
ACTIONS = [",Trend Micro Scan Action,log", ",Trend Micro Scan Action,block",
           ",Trend Micro Scan Action,block"]
OPTIONAL = ("pub", "src", "act", "sos", "ttl")
# All choices of 1-3 optional categories; sizes weighted 3:4:3.
COMBOS = []
for _size, _weight in ((1, 3), (2, 4), (3, 3)):
    _sets = []
    for _m in range(1 << len(OPTIONAL)):
        if bin(_m).count("1") == _size:
            _sets.append(tuple(o for i, o in enumerate(OPTIONAL) if _m >> i & 1))
    # weight sizes evenly: repeat each set so that every size has the same total share x weight
    COMBOS += [s for s in _sets for _ in range(_weight * 10 // len(_sets) or 1)]


class Tagger:
    def __init__(self, rng):
        self.rng = rng

    def tags(self, is_hash):
        rng = self.rng
        rand = rng.random
        out = (DET_SO if is_hash else DETECTIONS[int(rand() * 5)]) + SEVERITIES[int(rand() * 10)]
        pub, sources, v1 = PUBLISHERS[int(rand() * 6)]
        for o in COMBOS[int(rand() * len(COMBOS))]:
            if o == "pub":
                out += ",Trend Micro Publisher," + pub
            elif o == "src":
                out += ",Trend Micro Source," + sources[int(rand() * len(sources))]
            elif o == "act":
                out += ACTIONS[int(rand() * 3)]
            elif o == "sos":
                out += SOS_VALUES[int(rand() * 3)]
            else:
                r = rng.getrandbits(32)
                out += ",Reputation Entries TTL,%d-%02d-%02d %02d:%02d:00 UTC" % (
                    2027 + r % 3, 1 + (r >> 2) % 12, 1 + (r >> 6) % 28, (r >> 11) % 24,
                    15 * ((r >> 16) % 4))
        return out


# --------------------------------------------------------------------------------------- main
def generate(count, seed, kind, plain, out):
    rng = random.Random(seed)
    block = BLOCKS[kind]
    per_block_dom = block.count("dom")
    dom = DomainGen(rng, count * per_block_dom // 10 + 10)
    hashes = HashGen(rng)
    gens = {
        "v4": Ipv4Gen(rng).next,
        "cidr4": Cidr4Gen(rng).next,
        "v6": Ipv6Gen(rng).next,
        "dom": dom.next,
        "url": UrlGen(rng).next,
        "hash": hashes.next,
        "sha1": hashes.sha1,
        "sha256": hashes.sha256,
    }
    tagger = Tagger(rng)
    shuffle = rng.shuffle
    order = list(block)
    buf = []
    written = 0
    while written < count:
        shuffle(order)
        for k in order[: count - written]:
            value = gens[k]()
            if not plain:
                value += tagger.tags(k in ("hash", "sha1", "sha256"))
            buf.append(value)
        written += min(len(order), count - written)
        if len(buf) >= 20000:
            buf.append("")
            out.write("\n".join(buf))
            buf = []
    if buf:
        buf.append("")
        out.write("\n".join(buf))


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Write N distinct reputation entries in SMS CSV import format.")
    ap.add_argument("--count", type=int, required=True, help="number of lines to write")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--out", required=True, help="output file, '-' for standard output")
    ap.add_argument("--plain", action="store_true", help="addresses only, no tags")
    ap.add_argument("--kind", choices=KINDS, default="mixed",
                    help="only this kind (ipv4 = 80%% addresses, 20%% CIDRs; hash = SHA-1 and "
                         "SHA-256); default: the mixed benchmark proportions")
    args = ap.parse_args(argv)
    if args.count < 0:
        ap.error("--count must not be negative")
    try:
        if args.out == "-":
            generate(args.count, args.seed, args.kind, args.plain, sys.stdout)
        else:
            with open(args.out, "w", encoding="ascii", newline="\n", buffering=1 << 20) as f:
                generate(args.count, args.seed, args.kind, args.plain, f)
    except (OSError, OverflowError) as e:
        print("gen_dataset: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
